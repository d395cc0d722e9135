#!/usr/bin/env bash
# On the GPU machine: build, run the whole suite (GPU tests included), then the JIT latency and op benches.
#   bench/device_check.sh [build-dir]
# Output lands in $OUT when set (the device tool returns it), else in the build dir.
set -u
B=${1:-build-gpu}
O=${OUT:-$B}
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DMOEJIT_WERROR=OFF > "$O/cmake.log" 2>&1 || { tail -30 "$O/cmake.log"; exit 1; }
cmake --build "$B" -j"$(nproc)" 2>&1 | grep -E "warning|error" | head -20
(cd "$B" && ctest --output-on-failure -j4 2>&1 | tee "$O/ctest.log" | grep -vE "^\[ +(OK|RUN) +\]" | tail -40)
"$B/bench/bench_jit" 2>&1 | tee "$O/bench_jit.txt"
"$B/bench/bench_ops" 2>&1 | tee "$O/bench_ops.txt"

#!/usr/bin/env bash
# On the GPU machine: build, run the whole suite (GPU tests included), the route probes, the op
# benchmark and the runtime benchmark. Logs go to $OUT (the device tool returns them), else to the
# build dir.   bench/device_check.sh [build-dir] [--no-tests] [--no-probes]
set -u
B=${1:-build-gpu}; shift || true
O=${OUT:-$B}; mkdir -p "$O"
tests=1; probes=1
for a in "$@"; do case $a in --no-tests) tests=0;; --no-probes) probes=0;; esac; done
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DMOEJIT_WERROR=OFF > "$O/cmake.log" 2>&1 || { tail -30 "$O/cmake.log"; exit 1; }
cmake --build "$B" -j"$(nproc)" 2>&1 | grep -E "warning|error" | head -20
export MOEJIT_CACHE_DIR=${MOEJIT_CACHE_DIR:-/tmp/moejit-device-cache}
if [ $tests = 1 ]; then
  (cd "$B" && ctest -V -j4 > "$O/ctest.log" 2>&1)
  grep -E "tests passed|Test +#|FAILED|PASSED|SKIPPED|ERROR|largest relative" "$O/ctest.log" | grep -vE "^\S+: \[ +(OK|RUN)" | tail -40
fi
if [ $probes = 1 ]; then
  for dt in f32 bf16; do
    for s in "--model deepseek-v3" "--model kimi-k2" "--model qwen3-moe" "--model qwen3-next" "--model gpt-oss" \
             "--experts 512 --topk 8 --score sigmoid --renormalize"; do
      "$B/bench/route_probe" $s --dtype $dt --tokens 1,16,128,1024,4096,8192,16384
    done
  done > "$O/probe.txt" 2>&1
  awk '/T=(1|128|16384) /{print $1, $2, $3, $4, $5, $7, $9}' "$O/probe.txt"; grep "floor (empty" "$O/probe.txt" | head -1
  "$B/bench/bench_ops" 2>&1 | tee "$O/bench_ops.txt"
  "$B/bench/bench_runtime" 2>&1 | tee "$O/bench_runtime.txt"
fi

#!/usr/bin/env bash
# The GPU part of RELIABILITY.md, on a machine with one or more GPUs (CI has none):
#   tests/gpu_reliability.sh [build-dir]           logs in $OUT (else <build-dir>/reliability)
# 1. test_gpu_concurrency as is: 32 threads x 20 route shapes from a cold cache, and one process
#    driving two GPUs when the machine has two (it skips that part with one).
# 2. compute-sanitizer memcheck and racecheck over the GPU sweep of every op (test_gpu_* and
#    test_rows), thinned by MOEJIT_TEST_QUICK=1, kernels compiled with -lineinfo so reports name
#    template lines. Exit status 1 if anything failed or reported an error.
set -u
B=${1:-build-gpu}
O=${OUT:-$B/reliability}
mkdir -p "$O"
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOEJIT_WERROR=OFF > "$O/cmake.log" 2>&1 || { tail -30 "$O/cmake.log"; exit 1; }
cmake --build "$B" -j"$(nproc)" > "$O/build.log" 2>&1 || { tail -30 "$O/build.log"; exit 1; }
CS=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
MOEJIT_CACHE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/moejit-gpu-reliability-XXXXXX")
export MOEJIT_CACHE_DIR MOEJIT_LOG=warn
fail=0

echo "== test_gpu_concurrency ($(nvidia-smi -L 2>/dev/null | wc -l) GPUs visible)"
"$B/tests/test_gpu_concurrency" > "$O/concurrency.log" 2>&1 || fail=1
grep -E "figures|PASSED|FAILED|SKIPPED|ERROR" "$O/concurrency.log"

echo "== compute-sanitizer ($CS)"
export MOEJIT_TEST_QUICK=1 MOEJIT_EXTRA_NVRTC_FLAGS=${MOEJIT_EXTRA_NVRTC_FLAGS:--lineinfo}
for t in "$B"/tests/test_gpu_* "$B/tests/test_rows"; do
  n=$(basename "$t")
  for tool in memcheck racecheck; do
    "$CS" --tool "$tool" --error-exitcode 99 --target-processes all "$t" > "$O/$n.$tool.log" 2>&1
    rc=$?
    printf '%-24s %-10s exit %-3d %s | %s\n' "$n" "$tool" "$rc" \
      "$(grep -E '(ERROR|RACECHECK) SUMMARY' "$O/$n.$tool.log" | tail -1)" \
      "$(grep -E '^\[  (PASSED|FAILED|SKIPPED)' "$O/$n.$tool.log" | tr '\n' ' ')"
    [ "$rc" = 0 ] || fail=1
  done
done
rm -rf "$MOEJIT_CACHE_DIR"
exit $fail

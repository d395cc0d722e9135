#!/usr/bin/env bash
# The GPU part of RELIABILITY.md, on a machine with one or more GPUs (CI has none), within one
# device call (under 10 minutes):
#   tests/gpu_reliability.sh [build-dir]     table.txt and logs.tgz in $OUT (else <build-dir>/reliability)
# 1. test_gpu_concurrency as is: 32 threads x 20 route shapes from a cold cache, and one process
#    driving two GPUs when the machine has two (that test skips with one).
# 2. compute-sanitizer memcheck and racecheck over every GPU suite (test_gpu_*, test_rows' GPU part
#    and the two examples), all at once (the machine has the cores; each job is bounded by
#    $SANITIZER_TIMEOUT seconds), sweeps thinned by MOEJIT_TEST_QUICK=1 (every code path, fewer
#    shapes and tokens), kernels compiled with -lineinfo so reports name template lines.
# A table of every job (exit status, sanitizer summary, cmocka summary, seconds) ends the output.
# Exit status 1 if anything failed, reported an error or timed out.
set -u
B=${1:-build-gpu}
R=${OUT:-$B/reliability}
O=$(mktemp -d) # every log; packed into $R/logs.tgz at the end (the device tool returns 8 files)
mkdir -p "$R"
if [ ! -x "$B/tests/test_gpu_route" ]; then
  cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$O/cmake.log" 2>&1 || { tail -30 "$O/cmake.log"; exit 1; }
  cmake --build "$B" -j"$(nproc)" > "$O/build.log" 2>&1 || { tail -30 "$O/build.log"; exit 1; }
fi
CS=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
LIMIT=${SANITIZER_TIMEOUT:-420}
export MOEJIT_LOG=warn
fail=0

echo "== test_gpu_concurrency ($(nvidia-smi -L 2>/dev/null | wc -l) GPUs visible)"
MOEJIT_CACHE_DIR=$(mktemp -d) "$B/tests/test_gpu_concurrency" > "$O/concurrency.log" 2>&1 || fail=1
grep -E "figures|PASSED|FAILED|SKIPPED|ERROR" "$O/concurrency.log"

echo "== compute-sanitizer ($CS), every job at once, at most $LIMIT s each"
export MOEJIT_TEST_QUICK=1 MOEJIT_EXTRA_NVRTC_FLAGS=${MOEJIT_EXTRA_NVRTC_FLAGS:--lineinfo}
jobs=()
for t in "$B"/tests/test_gpu_* "$B/tests/test_rows"; do jobs+=("$(basename "$t")|$t"); done
jobs+=("route_batch|$B/examples/route_batch --experts 384 --topk 8 --tokens 64")
jobs+=("moe_layer|$B/examples/moe_layer --model deepseek-v3 --tokens 48 --hidden 256")
run_job() { # name tool command…: one sanitizer run, its own cache; writes name.tool.{log,rc,sec}
  local name=$1 tool=$2; shift 2
  local start=$SECONDS cache
  cache=$(mktemp -d)
  MOEJIT_CACHE_DIR=$cache timeout "$LIMIT" "$CS" --tool "$tool" --error-exitcode 99 --target-processes all "$@" \
    > "$O/$name.$tool.log" 2>&1
  echo $? > "$O/$name.$tool.rc"
  echo $((SECONDS - start)) > "$O/$name.$tool.sec"
  rm -rf "$cache"
}
for j in "${jobs[@]}"; do
  name=${j%%|*} cmd=${j#*|}
  for tool in memcheck racecheck; do
    # shellcheck disable=SC2086 # cmd is a command line
    run_job "$name" "$tool" $cmd &
  done
done
wait

{
printf '%-22s %-10s %-5s %-6s %-40s %s\n' job tool exit sec sanitizer cmocka
for j in "${jobs[@]}"; do
  name=${j%%|*}
  for tool in memcheck racecheck; do
    rc=$(cat "$O/$name.$tool.rc") sec=$(cat "$O/$name.$tool.sec")
    summary=$(grep -E '(ERROR|RACECHECK|LEAK) SUMMARY' "$O/$name.$tool.log" | tail -1 | sed 's/^========= //')
    cases=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ test' "$O/$name.$tool.log" | tr -s ' ' | tr '\n' ' ')
    [ "$rc" = 124 ] && summary="TIMED OUT after $LIMIT s"
    printf '%-22s %-10s %-5s %-6s %-40s %s\n' "$name" "$tool" "$rc" "$sec" "$summary" "$cases"
    [ "$rc" = 0 ] || echo "FAILED" > "$O/failed"
  done
done
} | tee "$R/table.txt"
[ -e "$O/failed" ] && fail=1
tar -czf "$R/logs.tgz" -C "$O" . && rm -rf "$O"
exit $fail

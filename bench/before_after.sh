#!/usr/bin/env bash
# The same benchmarks on two trees in one run on the GPU machine, interleaved, so that a change
# that must not move the numbers (a refactor) can be seen not to:
#   bench/before_after.sh BASELINE_SRC_DIR      (a copy of the old tree: git archive REV | tar -x -C DIR)
# Builds both (Release; route_probe and bench_ops), then runs route_probe twice per side in the
# order before, after, before, after, and bench_ops once per side. Prints route's per-launch times
# side by side (the lower of the two runs of each side) and both bench_ops tables; logs in $OUT.
set -u
BASE=${1:?usage: bench/before_after.sh BASELINE_SRC_DIR}
O=${OUT:-/tmp/before-after}
mkdir -p "$O"
build() { # src build-dir label
  if ! { cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DMOEJIT_WERROR=OFF &&
         cmake --build "$2" -j"$(nproc)" --target route_probe bench_ops; } > "$O/build-$3.log" 2>&1; then
    tail -30 "$O/build-$3.log"
    exit 1
  fi
}
build "$BASE" build-before before
build . build-after after
export MOEJIT_CACHE_DIR=${MOEJIT_CACHE_DIR:-$(mktemp -d)}
probe() { # build-dir → route lines
  for m in deepseek-v3 kimi-k2 qwen3-moe qwen3-next gpt-oss; do
    for dt in f32 bf16; do "$1/bench/route_probe" --model $m --dtype $dt --tokens 1,128,16384; done
  done
}
for round in 1 2; do
  for side in before after; do probe "build-$side" > "$O/probe-$side-$round.txt" 2>&1; done
done
for side in before after; do "build-$side/bench/bench_ops" > "$O/ops-$side.txt" 2>&1; done

echo "route, per launch in a CUDA graph (µs; the lower of two runs each side)"
awk '
  /T=/ { key = $1 " " $2 " " $3; us = $4 + 0
         if (FILENAME ~ /before/) { if (!(key in b) || us < b[key]) b[key] = us }
         else if (!(key in a) || us < a[key]) a[key] = us
         if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
  END { printf "%-72s %8s %8s %7s\n", "kernel dtype T", "before", "after", "ratio"
        for (i = 0; i < n; i++) { k = order[i]
          printf "%-72s %8.2f %8.2f %7.3f\n", k, b[k], a[k], a[k] / b[k] } }
' "$O"/probe-before-*.txt "$O"/probe-after-*.txt
grep -h "floor (empty" "$O/probe-before-1.txt" | head -1
for side in before after; do
  echo
  echo "bench_ops ($side)"
  cat "$O/ops-$side.txt"
done

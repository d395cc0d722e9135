#!/usr/bin/env bash
# The main job, end to end: prewarm kernels for the H100 (no GPU needed), list the cache, show a
# generated kernel, and route a real batch when a GPU is present.
#   examples/quickstart.sh [build-dir]
set -euo pipefail
B=${1:-build}
moejit="$B/tools/moejit"

echo "== prewarm (sm_90a, no GPU needed)"
"$moejit" prewarm --arch sm_90a --experts 384 --topk 8 --score sigmoid --dtype bf16,f32 --renormalize
"$moejit" prewarm --arch sm_90a --experts 60,160 --topk 4,6 --dtype bf16

echo; echo "== the cache"
"$moejit" cache ls

echo; echo "== generated source of one kernel (its last lines: the shape and the entry point)"
"$moejit" source --experts 384 --topk 8 --score sigmoid --dtype bf16 --renormalize | tail -24

echo; echo "== route a batch"
"$B/examples/route_batch" --experts 384 --topk 8 --score sigmoid --dtype bf16 --renormalize --tokens 16

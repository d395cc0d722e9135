#!/usr/bin/env bash
# Deployment figures (no GPU needed; run on the 16-core GPU host for the issue's numbers):
#   prewarm throughput — every preset, three dtypes, sm_90a, --jobs 1, 2 and 16, empty cache each time
#   cache at scale     — `cache ls`, `cache gc` and a miss-then-hit with 10,000 entries in the cache
#   bench/bench_deploy.sh [build-dir]
set -euo pipefail
B=${1:-build}; M="$B/tools/moejit"
models=$("$M" prewarm --list-models | awk 'NR > 1 {print $1}' | paste -sd, -)
t() { local s=$(date +%s.%N); "$@" > /dev/null; awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { print b - a }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { print a / b }'; }
echo "prewarm throughput: --model $models --dtype f32,bf16,f16 --arch sm_90a ($(nproc) cores)"
for j in 1 2 16; do
  d=$(mktemp -d)
  s=$(t "$M" prewarm --arch sm_90a --model "$models" --dtype f32,bf16,f16 --jobs $j --cache-dir "$d" --progress lines)
  n=$(find "$d" -name '*.mjc' | wc -l)
  printf "  --jobs %-3d %3d kernels in %6.2f s = %6.1f kernels/s\n" $j $n $s $(div $n $s)
  [ $j = 1 ] && base=$s
  [ $j != 1 ] && printf "             speed-up over --jobs 1: %.1fx\n" $(div $base $s)
  rm -rf "$d"
done
echo "cache at scale (10,000 entries)"
d=$(mktemp -d)
"$M" prewarm --arch sm_90a --experts 64 --topk 4 --cache-dir "$d" > /dev/null
python3 - "$d" <<'PY'
import os, random, sys, glob
root = sys.argv[1]
blob = open(glob.glob(os.path.join(root, "v1", "*", "*.mjc"))[0], "rb").read()
rng = random.Random(1)
for i in range(9999):  # copies under other names: ls and gc read headers only
    key = "%032x" % rng.getrandbits(128)
    os.makedirs(os.path.join(root, "v1", key[:2]), exist_ok=True)
    with open(os.path.join(root, "v1", key[:2], key[2:] + ".mjc"), "wb") as f:
        f.write(blob)
PY
printf "  entries: %d\n" $(find "$d" -name '*.mjc' | wc -l)
printf "  cache ls:              %.3f s\n" $(t "$M" cache --cache-dir "$d" ls)
printf "  miss (compile+publish) %.3f s\n" $(t "$M" prewarm --arch sm_90a --experts 96 --topk 6 --cache-dir "$d")
printf "  hit:                   %.3f s\n" $(t "$M" prewarm --arch sm_90a --experts 96 --topk 6 --cache-dir "$d")
size=$(du -sb "$d/v1" | cut -f1)
printf "  cache gc to half:      %.3f s\n" $(t "$M" cache --cache-dir "$d" gc --max-bytes $((size / 2)))
printf "  entries after gc: %d\n" $(find "$d" -name '*.mjc' | wc -l)
rm -rf "$d"

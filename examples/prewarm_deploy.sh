#!/usr/bin/env bash
# Deploying prewarmed kernels: what an operator runs when building a GPU serving image, and how the
# serving process then runs without ever compiling.
#
#   examples/prewarm_deploy.sh [BUILD_DIR] [CACHE_DIR]
#
# Image build time — any build box, no GPU or driver needed:
#   1. `moejit prewarm` the kernels the server uses (model presets and a manifest) for every GPU
#      arch the image may meet, into a cache directory that is part of the image;
#   2. check the result: in strict mode nothing may be missing (`MOEJIT_NO_COMPILE=1 moejit prewarm`
#      compiles nothing and fails on any miss), and every entry verifies.
# Run time — the GPU host, the image read-only:
#   MOEJIT_CACHE_DIR=<that dir> MOEJIT_CACHE=ro MOEJIT_NO_COMPILE=1 <server>
#   Every kernel loads from the image; one that was not prewarmed is an error naming its key and
#   shape (MOEJIT_ERR_CACHE_MISS), never a compile on the serving path.
#
# What to prewarm (environment): MODELS ("kimi-k2 qwen3-moe"), ARCHS ("sm_90a sm_100a"),
# DTYPES ("bf16"), HIDDEN (7168: the hidden size for the permute / combine kernels of moe_layer),
# BLOCK (16: the block size of moe_layer's align, one align kernel per model's expert count).
# CACHE_DIR defaults to a temporary directory, removed at the end.
set -euo pipefail
B=${1:-build}
MODELS=${MODELS:-kimi-k2 qwen3-moe}
ARCHS=${ARCHS:-sm_90a sm_100a}
DTYPES=${DTYPES:-bf16}
HIDDEN=${HIDDEN:-7168}
BLOCK=${BLOCK:-16}
moejit=${MOEJIT:-$B/tools/moejit}
work=$(mktemp -d "${TMPDIR:-/tmp}/moejit-deploy-XXXXXX")
trap 'rm -rf "$work"' EXIT
CACHE=${2:-$work/image/opt/moejit-cache}

# The manifest an image would keep under version control: the route kernels of the models, the
# align, permute and combine kernels of the layer. Field names are those of the spec structs (moejit.h).
json_list() { local out="" x; for x in "$@"; do out+="${out:+, }\"$x\""; done; printf '[%s]' "$out"; }
read -r -a models <<<"$MODELS"
read -r -a dtypes <<<"$DTYPES"
manifest=$work/kernels.json
{
  echo '{"kernels": ['
  for m in "${models[@]}"; do
    # align is sized by the model's expert count: the E=… column of --list-models
    experts=$("$moejit" prewarm --list-models | awk -v m="$m" '$1 == m { for (i = 2; i <= NF; i++) if ($i ~ /^E=/) print substr($i, 3) }')
    [ -n "$experts" ] || { echo "unknown model $m (moejit prewarm --list-models)"; exit 2; }
    echo "  {\"model\": \"$m\", \"dtype\": $(json_list "${dtypes[@]}")},"
    echo "  {\"op\": \"align\", \"num_experts\": $experts, \"block_size\": $BLOCK},"
  done
  echo "  {\"op\": \"permute\", \"hidden\": $HIDDEN, \"dtype\": $(json_list "${dtypes[@]}"), \"has_scale\": true},"
  echo "  {\"op\": \"combine\", \"hidden\": $HIDDEN, \"dtype\": $(json_list "${dtypes[@]}")}"
  echo ']}'
} >"$manifest"
arch_flags=()
for a in $ARCHS; do arch_flags+=(--arch "$a"); done

echo "== image build: prewarm into $CACHE"
cat "$manifest"
"$moejit" prewarm --cache-dir "$CACHE" "${arch_flags[@]}" --manifest "$manifest"

echo; echo "== image build: check (strict, read-only: every kernel must be a hit) and verify"
MOEJIT_NO_COMPILE=1 MOEJIT_CACHE=ro "$moejit" prewarm --cache-dir "$CACHE" "${arch_flags[@]}" --manifest "$manifest"
"$moejit" cache --cache-dir "$CACHE" verify
"$moejit" cache --cache-dir "$CACHE" ls

echo; echo "== run time: MOEJIT_CACHE=ro MOEJIT_NO_COMPILE=1 (the GPU part runs where there is a GPU)"
for m in "${models[@]}"; do
  for d in "${dtypes[@]}"; do
    MOEJIT_CACHE_DIR="$CACHE" MOEJIT_CACHE=ro MOEJIT_NO_COMPILE=1 \
      "$B/examples/moe_layer" --model "$m" --hidden "$HIDDEN" --dtype "$d" --tokens 256 --block "$BLOCK"
  done
done

echo; echo "== run time: a kernel that was not prewarmed is an error, not a compile"
first_arch=${ARCHS%% *}
if out=$(MOEJIT_NO_COMPILE=1 MOEJIT_CACHE=ro "$moejit" prewarm --cache-dir "$CACHE" --arch "$first_arch" \
           --op combine --hidden 123 --dtype bf16 2>&1); then
  echo "$out"; echo "expected a cache miss"; exit 1
fi
grep -q MOEJIT_ERR_CACHE_MISS <<<"$out" || { echo "$out"; echo "expected MOEJIT_ERR_CACHE_MISS"; exit 1; }
grep MOEJIT_ERR_CACHE_MISS <<<"$out" | cut -c1-160
echo "deploy example passed"

#!/usr/bin/env bash
# Temporary: layout experiments on the GPU machine (route_probe per shape, two layouts).
B=${1:-build-gpu}
shapes=("--model deepseek-v3" "--model qwen3-moe" "--model kimi-k2" "--model qwen3-next" "--model gpt-oss" "--experts 512 --topk 8 --score sigmoid --renormalize")
for lanes in 32 16 8; do
  for dt in f32 bf16; do
    for s in "${shapes[@]}"; do
      MOEJIT_EXTRA_NVRTC_FLAGS=$([ $lanes = 32 ] || echo "-DMOEJIT_EXPERIMENT_LANES=$lanes") \
        "$B/bench/route_probe" $s --dtype $dt --tokens 1,128,1024,4096,8192,16384 | sed "s/^/L$lanes /" | grep -v "floor (empty"
    done
  done
done
"$B/bench/route_probe" --model deepseek-v3 --tokens 1 | grep "floor (empty"

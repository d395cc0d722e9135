#!/usr/bin/env bash
# On the GPU machine, in two calls that each fit the device tool's 10 minutes:
#   bench/device_round.sh tests   build, every GPU ctest suite, the Python package's GPU tests,
#                                 the expert-parallel example (world size = the GPUs present)
#   bench/device_round.sh bench   route's serving options, PDL on/off, the op benchmarks, the peers
#   bench/device_round.sh train   the training ops beside PyTorch eager and torch.compile
#                                 (bench_backward.py, f32 with the losses, and bf16), route_probe
#                                 --backward and --losses, bench_ops rows (permute/combine backward)
# A summary is printed; every log goes into one archive, $OUT/logs-<what>.tgz (the device tool
# brings back at most 8 files), or ./logs-<what>.tgz without $OUT.
set -u
what=${1:-tests}
B=${B:-build-dev}
O=/tmp/device-logs-$what; rm -rf "$O"; mkdir -p "$O"
export MOEJIT_CACHE_DIR=${MOEJIT_CACHE_DIR:-/tmp/moejit-device-cache}
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release > "$O/cmake.log" 2>&1 || { tail -30 "$O/cmake.log"; exit 1; }
cmake --build "$B" -j"$(nproc)" 2>&1 | grep -E "warning|error" | head -20
export MOEJIT_LIBRARY=$PWD/$B/libmoejit.so

if [ "$what" = tests ]; then
  (cd "$B" && ctest -R 'gpu|example|test_rows|test_route|test_align|test_dispatch' -j6 --output-on-failure \
      > "$O/ctest.log" 2>&1)
  grep -E "tests passed|Test +#|\[  (PASSED|FAILED) \]|largest relative|ERROR:" "$O/ctest.log" | tail -40
  python3 -m pytest -q -rs -x python/tests > "$O/pytest.log" 2>&1
  tail -5 "$O/pytest.log"
  MOEJIT_TORCH_REGISTRATION=custom_op python3 -m pytest -q python/tests/test_serving_gpu.py \
      python/tests/test_ops_gpu.py > "$O/pytest_custom_op.log" 2>&1
  tail -2 "$O/pytest_custom_op.log"
  n=$(nvidia-smi -L | wc -l)
  NCCL_NVLS_ENABLE=0 timeout 300 torchrun --nproc-per-node "$n" examples/ep_moe.py > "$O/ep_moe.log" 2>&1
  echo "ep_moe with $n GPU(s): exit $?"; tail -4 "$O/ep_moe.log"
  if [ "$n" -gt 1 ]; then
    NCCL_NVLS_ENABLE=0 timeout 300 torchrun --nproc-per-node "$n" examples/ep_moe.py --redundant 2 --dtype bf16 \
        > "$O/ep_moe_redundant.log" 2>&1
    echo "ep_moe --redundant 2 --dtype bf16 with $n GPUs: exit $?"; tail -2 "$O/ep_moe_redundant.log"
  fi
elif [ "$what" = train ]; then
  "$B/bench/route_probe" --backward --dtype f32 > "$O/route_probe_backward.txt" 2>&1
  "$B/bench/route_probe" --backward --dtype bf16 >> "$O/route_probe_backward.txt" 2>&1
  for m in deepseek-v3 kimi-k2 qwen3-moe; do
    "$B/bench/route_probe" --losses --model $m --dtype f32 --tokens 1,1024,16384
  done > "$O/route_probe_losses.txt" 2>&1
  "$B/bench/bench_ops" rows > "$O/bench_ops_rows.txt" 2>&1
  python3 bench/bench_backward.py --dtype f32 --losses > "$O/backward_f32.txt" 2>&1
  python3 bench/bench_backward.py --dtype bf16 --rows-tokens "" > "$O/backward_bf16.txt" 2>&1
  cat "$O/route_probe_backward.txt" "$O/route_probe_losses.txt" "$O/bench_ops_rows.txt" "$O/backward_f32.txt" \
      "$O/backward_bf16.txt"
else
  for m in deepseek-v3 kimi-k2; do for dt in f32 bf16; do
    "$B/bench/route_probe" --serving --model $m --dtype $dt --tokens 1,128,16384
  done; done > "$O/serving.txt" 2>&1
  for m in deepseek-v3 kimi-k2 qwen3-moe gpt-oss; do
    "$B/bench/route_probe" --model $m --dtype bf16 --tokens 1,128,16384 --pdl-both
  done > "$O/pdl.txt" 2>&1
  "$B/bench/bench_ops" --pdl-both > "$O/bench_ops.txt" 2>&1
  tail -3 "$O/serving.txt"; grep -cE "us" "$O/pdl.txt"
  if [ -d .peers ] && [ "${PEERS:-1}" = 1 ]; then
    mkdir -p "$O/peers"
    OUT="$O/peers" timeout 400 bash .peers/run.sh --tokens 1,16,128,1024,4096,16384 > "$O/peers.txt" 2>&1
  fi
  tail -60 "$O/peers.txt" 2>/dev/null
fi
tar czf "${OUT:-.}/logs-$what.tgz" -C "$O" . 2>/dev/null

#!/usr/bin/env bash
# The GPU path in one prepared run (issue 13): at most ~8 minutes on one H100/H200-class GPU.
#   1. local generation, Phi-2 architecture at random weights in bf16, greedy, 256-token prompts, 256 new
#      tokens, batch 1/8/32/64: eager (dynamic KV cache, what LocalBackend runs today) and transformers' static
#      KV cache + torch.compile, each against the memory-bandwidth bound (every decode step streams ~5.6 GB of
#      weights plus the KV cache so far);
#   2. LoRA SFT with the `train` defaults at sequence 1,024: tokens/s (TRL trainer and a bare loop) and peak
#      memory; target >= 6,000 tokens/s.
#
#   bash bench/gpu_check.sh            # on the GPU machine; prints JSON lines and the training report
#   SMOKE=1 bash bench/gpu_check.sh    # on CPU with tiny shapes: proves the script runs end to end
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [ "${SMOKE:-0}" = 1 ]; then
  timeout 600 "$PY" bench/local_bench.py --part gpu --device cpu --tiny --gpu-batches 1,2 --gpu-prompt 16 \
    --gpu-new-tokens 8 --bandwidth 2e10 --threads 1
  timeout 600 "$PY" bench/train_bench.py --phi2 --layers 1 --seq-len 64 --steps 2 --batch-size 1
  exit 0
fi
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$GPU" in  # bytes/s of HBM and dense bf16 FLOP/s, from the vendor's sheets (SXM parts)
  *H200*) BW=4.8e12; PEAK=989e12 ;;
  *H100*) BW=3.35e12; PEAK=989e12 ;;
  *A100*) BW=2.0e12; PEAK=312e12 ;;
  *) BW=2.0e12; PEAK=312e12; echo "unknown GPU '$GPU': assuming A100-class figures" ;;
esac
echo "GPU: $GPU (bandwidth $BW B/s, peak $PEAK FLOP/s)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
timeout 330 "$PY" bench/local_bench.py --part gpu --gpu-batches 1,8,32,64 --gpu-prompt 256 --gpu-new-tokens 256 \
  --bandwidth "$BW" --modes eager,compiled || echo "local generation: stopped (timeout or error: $?)"
timeout 150 "$PY" bench/train_bench.py --phi2 --seq-len 1024 --batch-size 8 --steps 20 --peak-flops "$PEAK" \
  || echo "training: stopped (timeout or error: $?)"

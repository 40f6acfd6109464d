#!/usr/bin/env bash
# The GPU benchmark: train step and inference of HRNet-W32 at 256x192 and 384x288, bf16 and fp32,
# batch 64 per device, on every local GPU. One JSON line per run goes to $OUT (default
# benchmarks/gpu_results.jsonl); add --append to also add rows to BENCHMARKS.md.
#
#   bash benchmarks/gpu.sh [--append]      # PEAK_TFLOPS=989 (H100 SXM dense bf16) for MFU
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
out=${OUT:-benchmarks/gpu_results.jsonl}
peak=${PEAK_TFLOPS:-989}
batch=${BATCH_PER_DEVICE:-64}
for config in configs/w32_256x192.py configs/w32_384x288.py; do
  for dtype in bf16 fp32; do
    "$python" -m benchmarks.train_step --config="$config" --batch_per_device="$batch" \
      --dtype="$dtype" --steps=10 --peak_tflops="$peak" "$@" | tail -n 1 | tee -a "$out"
    "$python" -m benchmarks.inference --config="$config" --batch="$batch" --dtype="$dtype" \
      --steps=10 "$@" | tail -n 1 | tee -a "$out"
  done
done

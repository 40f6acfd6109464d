#!/usr/bin/env bash
# The GPU benchmark: train step and inference of HRNet-W32 at 256x192 and 384x288, bf16 and fp32,
# batch 64 per device, on every local GPU, then the largest per-GPU training batch that fits (no
# deviceless compile exists for GPUs, unlike TPUs: benchmarks/aot.py). One JSON line per run goes
# to $OUT (default benchmarks/gpu_results.jsonl); add --append to also add rows to BENCHMARKS.md.
# Other arguments (e.g. --config.model.remat=full) reach every run, the batch search's included.
#
#   bash benchmarks/gpu.sh [--append]      # PEAK_TFLOPS=989 (H100 SXM dense bf16) for MFU
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
out=${OUT:-benchmarks/gpu_results.jsonl}
peak=${PEAK_TFLOPS:-989}
batch=${BATCH_PER_DEVICE:-64}
step=${BATCH_STEP:-8}  # the search's resolution, in images per GPU
probe_args=()
for arg in "$@"; do [ "$arg" = --append ] || probe_args+=("$arg"); done

# fits CONFIG DTYPE BATCH: a training step at BATCH per GPU runs; exits the script on another error.
fits() {
  local log
  log=$(mktemp)
  if "$python" -m benchmarks.train_step --config="$1" --dtype="$2" --batch_per_device="$3" \
    --steps=1 ${probe_args[@]+"${probe_args[@]}"} >"$log" 2>&1; then
    rm -f "$log"
    return 0
  fi
  if grep -qiE 'RESOURCE_EXHAUSTED|out of memory' "$log"; then
    rm -f "$log"
    return 1
  fi
  echo "batch $3 failed for another reason than memory:" >&2
  tail -n 20 "$log" >&2
  exit 1
}

# max_batch CONFIG DTYPE: doubles from $step until a step fails, then bisects to $step.
max_batch() {
  local lo=0 hi=$step mid
  while [ "$hi" -le 4096 ] && fits "$1" "$2" "$hi"; do
    lo=$hi
    hi=$((hi * 2))
  done
  while [ $((hi - lo)) -gt "$step" ]; do
    mid=$(((lo + hi) / 2 / step * step))
    if fits "$1" "$2" "$mid"; then lo=$mid; else hi=$mid; fi
  done
  echo "{\"config\": \"$1\", \"dtype\": \"$2\", \"max_batch_per_device\": $lo}"
}

for config in configs/w32_256x192.py configs/w32_384x288.py; do
  for dtype in bf16 fp32; do
    "$python" -m benchmarks.train_step --config="$config" --batch_per_device="$batch" \
      --dtype="$dtype" --steps=10 --peak_tflops="$peak" "$@" | tail -n 1 | tee -a "$out"
    "$python" -m benchmarks.inference --config="$config" --batch="$batch" --dtype="$dtype" \
      --steps=10 "$@" | tail -n 1 | tee -a "$out"
    max_batch "$config" "$dtype" | tee -a "$out"
  done
done

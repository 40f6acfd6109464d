#!/usr/bin/env bash
# N training processes on this machine, each with its own CPU devices: multi-host training, locally.
#
#   launch/local.sh N [--config=configs/demo.py] [--workdir=/tmp/hrnet_local] [more main.py flags]
#
# Process 0 writes logs, metrics and evaluation results; all processes write checkpoints. Stop the
# run with Ctrl-C (every process is stopped).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: launch/local.sh NUM_PROCESSES [main.py flags]}
shift
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
port=${PORT:-$((20000 + RANDOM % 20000))}
devices=${CPU_DEVICES_PER_PROCESS:-$((8 / n > 0 ? 8 / n : 1))}
args=("$@")
[[ " $* " == *" --config="* ]] || args=(--config=configs/demo.py "${args[@]}")
[[ " $* " == *" --workdir="* ]] || args=(--workdir=/tmp/hrnet_local "${args[@]}")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM EXIT
for ((i = n - 1; i >= 0; i--)); do
  JAX_PLATFORMS=cpu "$python" -m hrnet_jax.main "${args[@]}" \
    --coordinator_address="localhost:$port" --num_processes="$n" --process_id="$i" \
    --cpu_devices="$devices" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
trap - INT TERM EXIT
exit "$status"

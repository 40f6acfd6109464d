#!/usr/bin/env bash
# Runs on every worker of a TPU VM slice: install, then train; jax.distributed finds its peers.
#
#   gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=all \
#     --command="bash ~/hrnet_jax/launch/tpu_vm.sh --config=configs/w32_384x288.py \
#                --workdir=/mnt/bucket/runs/w32 --config.data.root=/mnt/bucket/coco \
#                --config.data.format=tfds --config.data.tfds_data_dir=/mnt/bucket/tfds"
#
# Copy the repository to every worker first (gcloud ... scp --recurse --worker=all). The workdir
# and the data are local paths that every worker sees: a bucket mounted with gcsfuse at the same
# path on each worker, or a shared persistent disk. Data: the TFDS data set (ArrayRecord files)
# (python -m hrnet_jax.data.pack) read better from a bucket than 118k small JPEGs; the COCO
# annotation JSONs stay under data.root (evaluation reads them).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -c requirements/constraints.txt -e '.[tpu]'
fi
exec .venv/bin/python -m hrnet_jax.main --distributed "$@"

"""Training-pipeline throughput on real COCO JPEGs, per CPU core, augmentation on.

    python -m benchmarks.pipeline --config=configs/w32_384x288.py [--reduced_decode=false] [--append]

Reads the coco_mini images (../shared/data/coco_mini) repeated; one core: no worker processes and one
reader thread, so samples/s is what each worker process of a real run adds.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from benchmarks import common
from hrnet_jax import config_lib
from hrnet_jax.data import coco, pipeline

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_DATA = flags.DEFINE_string(
    "data",
    str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"),
    "A COCO-layout folder with annotations/person_keypoints_mini.json and images/.",
)
_BATCHES = flags.DEFINE_integer("batches", 20, "Batches to time (after one warm-up batch).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_REDUCED = flags.DEFINE_bool("reduced_decode", True, "Decode JPEGs at reduced size where allowed.")
_APPEND = flags.DEFINE_bool("append", False, "Append the result to BENCHMARKS.md.")


def main(argv):
    del argv
    config = config_lib.validate(_CONFIG.value)
    config.data.reduced_decode = _REDUCED.value
    root = pathlib.Path(_DATA.value)
    instances, _ = coco.gt_instances(
        root / "annotations" / "person_keypoints_mini.json",
        root / "images",
        aspect_ratio=config.input_size[1] / config.input_size[0],
    )
    total = (_BATCHES.value + 1) * _BATCH.value
    instances = instances.select(np.arange(total) % len(instances))
    iterator = pipeline.train_iterator(
        instances,
        pipeline.make_sampler(config, train=True),
        seed=0,
        global_batch_size=_BATCH.value,
        num_epochs=1,
        options=pipeline.DataOptions(num_workers=0, num_threads=1, prefetch_buffer_size=1),
    )
    next(iterator)  # warm-up
    start = time.perf_counter()
    for _ in range(_BATCHES.value):
        next(iterator)
    seconds = time.perf_counter() - start
    common.report(
        {
            "input_size": list(config.input_size),
            "reduced_decode": _REDUCED.value,
            "samples_per_s_per_core": round(_BATCHES.value * _BATCH.value / seconds, 1),
        },
        _APPEND.value,
    )


if __name__ == "__main__":
    app.run(main)

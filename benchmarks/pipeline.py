"""Training-pipeline throughput on real COCO JPEGs, per CPU core, augmentation on.

    python -m benchmarks.pipeline --config=configs/w32_384x288.py [--reduced_decode=false]
        [--tfds_data_dir=D] [--append]

Reads the coco_mini images (../shared/data/coco_mini) repeated. "Per core" is measured on one core:
the process is pinned to a single CPU, OpenCV runs one thread (as in each of a run's worker
processes) and grain reads in the calling thread, so samples/s is what each worker adds. The figure
is the median of `--repeats` timed passes, each after a warm-up batch; CPU time per sample is
reported beside it because a shared machine's wall clock varies by ~10% between passes, and
`record_us`, the time to fetch a record with its encoded image (the one step the sources do
differently), because that variation hides differences of a few percent. With
`--tfds_data_dir` the same instances come from the TFDS data set built from them (built there first
if missing), and the result also gives its bytes per instance.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import time

import cv2
from absl import flags

from benchmarks import common
from hrnet_jax import cli, config_lib
from hrnet_jax.data import pipeline, sources, tfds_builder
from hrnet_jax.data.samples import TopDownSampler

_CONFIG = cli.ConfigFlag()
_DATA = flags.DEFINE_string(
    "data",
    str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"),
    "A COCO-layout folder with annotations/person_keypoints_mini.json and images/.",
)
_BATCHES = flags.DEFINE_integer(
    "batches", 20, "Batches to time per pass (after one warm-up batch)."
)
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed passes; the median is reported.")
_REDUCED = flags.DEFINE_bool("reduced_decode", True, "Decode JPEGs at reduced size where allowed.")
_TFDS = flags.DEFINE_string("tfds_data_dir", None, "Read the TFDS data set built there instead.")
_APPEND = flags.DEFINE_bool("append", False, "Append the result to BENCHMARKS.md.")


class _Repeated:
    """The first `n` records of a source read cyclically (a grain random-access source)."""

    def __init__(self, source, n: int):
        self._source, self._n = source, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int):
        return self._source[i % len(self._source)]


def _pin_to_one_core() -> bool:
    """Restricts this process to one CPU (Linux); False where the OS offers no affinity call."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    return True


def _timed_pass(instances, sampler, num_batches: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for `num_batches` batches after a warm-up one."""
    iterator = pipeline.train_iterator(
        instances,
        sampler,
        seed=0,
        global_batch_size=_BATCH.value,
        num_epochs=1,
        options=pipeline.DataOptions(num_workers=0, num_threads=0, prefetch_buffer_size=0),
    )
    next(iterator)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(num_batches):
        next(iterator)
    return time.perf_counter() - wall, time.process_time() - cpu


def _record_us(instances, reads: int = 2000) -> float:
    """Median microseconds to fetch a record with its image's encoded bytes: the only part of a
    sample that differs between the sources (the folder source reads the file, TFDS carries the
    bytes in the record)."""

    def fetch(i: int) -> bytes:
        record = instances[i % len(instances)]
        data = record.get("image_bytes")
        return data if data is not None else pathlib.Path(record["image_file"]).read_bytes()

    times = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(reads):
            fetch(i)
        times.append((time.perf_counter() - start) / reads)
    return 1e6 * statistics.median(times)


def main():
    config = _CONFIG.value.as_configdict()
    config.data.reduced_decode = _REDUCED.value
    config.data.root = _DATA.value
    config.data.annotation_file = "annotations/person_keypoints_mini.json"
    config.data.image_dir = "images"
    config.data.train_split = config.data.val_split = "mini"
    extra = {}
    if _TFDS.value:
        config.data.format, config.data.tfds_data_dir = "tfds", _TFDS.value
        built = tfds_builder.builder(config, _TFDS.value)
        built.download_and_prepare()
        files = pathlib.Path(built.data_dir).glob("*.array_record-*")
        extra["bytes_per_instance"] = round(
            sum(f.stat().st_size for f in files) / built.info.splits["mini"].num_examples
        )
    config = config_lib.check(config)
    instances, _ = sources.load_instances(config, "mini", train=True)
    total = (_BATCHES.value + 1) * _BATCH.value
    instances = _Repeated(instances, total)
    pinned = _pin_to_one_core()
    cv2.setNumThreads(1)
    sampler = TopDownSampler.from_config(config, train=True)
    passes = [_timed_pass(instances, sampler, _BATCHES.value) for _ in range(_REPEATS.value)]
    samples = _BATCHES.value * _BATCH.value
    common.report(
        {
            "input_size": list(config.input_size),
            "reduced_decode": _REDUCED.value,
            "pinned_to_one_core": pinned,
            "samples_per_s_per_core": round(samples / statistics.median(w for w, _ in passes), 1),
            "passes_samples_per_s": [round(samples / w, 1) for w, _ in passes],
            "cpu_ms_per_sample": round(1e3 * statistics.median(c for _, c in passes) / samples, 3),
            "record_us": round(_record_us(instances), 1),
            "source": "tfds" if _TFDS.value else "folder",
            **extra,
        },
        _APPEND.value,
    )


if __name__ == "__main__":
    cli.run(main, config=_CONFIG)

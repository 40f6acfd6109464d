"""grain pipelines: the deterministic training stream and the padded evaluation stream.

Training batch b of the whole run is a pure function of (seed, b): epoch e draws a fresh permutation of
all records from (seed, e), global batch b takes the next `global_batch_size` of them, process p takes
its contiguous slice, and each record is augmented with an RNG seeded by (seed, e, record index). So a
batch does not depend on the number of worker processes nor on the number of JAX processes, and the
iterator's whole state is the index of the next batch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Iterator
from typing import Any

import cv2
import grain
import ml_collections
import numpy as np

from hrnet_jax.data.samples import TopDownSampler


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_records: int) -> np.ndarray:
    """The order of all records in `epoch`: the global shuffle every process agrees on."""
    return np.random.default_rng([seed, epoch]).permutation(num_records)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the g-th sample of a process comes from: global batch, position within it."""

    num_records: int
    global_batch_size: int
    process_index: int = 0
    process_count: int = 1

    @property
    def local_batch_size(self) -> int:
        return self.global_batch_size // self.process_count

    def position(self, g: int) -> tuple[int, int]:
        """Process-local sample g → (global batch index, position in the global order of its pass)."""
        batch, r = divmod(g, self.local_batch_size)
        return (
            batch,
            batch * self.global_batch_size + self.process_index * self.local_batch_size + r,
        )


@dataclasses.dataclass(frozen=True)
class TrainElement:
    """Process-local sample g of the training stream (picklable for grain's worker processes)."""

    source: Any  # random access: len() and [i] → record dict
    sampler: TopDownSampler
    layout: Layout
    seed: int

    @property
    def batches_per_epoch(self) -> int:
        return self.layout.num_records // self.layout.global_batch_size

    def __call__(self, g: int) -> dict:
        batch, position = self.layout.position(g)
        epoch = batch // self.batches_per_epoch
        position -= epoch * self.batches_per_epoch * self.layout.global_batch_size
        record = int(epoch_permutation(self.seed, epoch, self.layout.num_records)[position])
        rng = np.random.default_rng([self.seed, epoch, record])
        return {**self.sampler(self.source[record], rng), "index": np.int64(record)}


@dataclasses.dataclass(frozen=True)
class EvalElement:
    """Process-local sample g of the evaluation pass; positions past the end are padding."""

    source: Any
    sampler: TopDownSampler
    layout: Layout

    def __call__(self, g: int) -> dict:
        _, position = self.layout.position(g)
        if position >= self.layout.num_records:
            return {**self.sampler.placeholder(self.source[0]), "index": np.int64(-1)}
        return {**self.sampler(self.source[position]), "index": np.int64(position)}


class BatchIterator(Iterator[dict]):
    """Batches [start, end) of a grain MapDataset of batches, with a checkpointable position.

    The state is the index of the next batch (the same on every process), so a run resumes on any
    number of processes and workers.
    """

    def __init__(self, batches: grain.MapDataset, options: DataOptions, fingerprint: dict):
        self._batches = batches
        self._options = options
        self._fingerprint = fingerprint
        self._next = 0
        self._iterator = None

    def __len__(self) -> int:
        return len(self._batches)

    def __next__(self) -> dict:
        if self._next >= len(self._batches):
            raise StopIteration
        if self._iterator is None:
            self._iterator = iter(self._options.apply(self._batches[self._next :]))
        batch = next(self._iterator)
        self._next += 1
        return batch

    def get_state(self) -> dict:
        return {"next_batch": self._next, **self._fingerprint}

    def set_state(self, state: dict) -> None:
        for key, value in self._fingerprint.items():
            if state.get(key) != value:
                raise ValueError(
                    f"data iterator state does not fit this data set: {key} is {state.get(key)!r} "
                    f"in the checkpoint and {value!r} now"
                )
        self.close()
        self._next = int(state["next_batch"])

    def close(self) -> None:
        if self._iterator is not None and hasattr(self._iterator, "close"):
            self._iterator.close()
        self._iterator = None


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """grain's threads, prefetching and worker processes (none of which changes the batches)."""

    num_workers: int = 0
    num_threads: int = 8
    prefetch_buffer_size: int = 64
    worker_buffer_size: int = 2

    @classmethod
    def from_config(cls, data: ml_collections.ConfigDict) -> DataOptions:
        workers = data.num_workers if data.num_workers >= 0 else max(1, (os.cpu_count() or 2) - 1)
        return cls(workers, data.num_threads, data.prefetch_buffer_size, data.worker_buffer_size)

    def apply(self, batches: grain.MapDataset) -> grain.IterDataset:
        ds = batches.to_iter_dataset(
            grain.ReadOptions(
                num_threads=self.num_threads, prefetch_buffer_size=self.prefetch_buffer_size
            )
        )
        if self.num_workers > 0:
            ds = ds.mp_prefetch(
                grain.MultiprocessingOptions(
                    num_workers=self.num_workers, per_worker_buffer_size=self.worker_buffer_size
                ),
                worker_init_fn=_init_worker,
            )
        return ds


def _init_worker(worker_index: int, worker_count: int) -> None:
    """Each worker process is one core's worth of work: OpenCV's own thread pool would oversubscribe."""
    del worker_index, worker_count
    cv2.setNumThreads(1)


def train_iterator(
    source: Any,
    sampler: TopDownSampler,
    *,
    seed: int,
    global_batch_size: int,
    num_epochs: int,
    options: DataOptions,
    process_index: int = 0,
    process_count: int = 1,
) -> BatchIterator:
    """The training stream: `num_epochs` passes, dropping each epoch's last partial global batch."""
    if global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by {process_count} processes"
        )
    if len(source) < global_batch_size:
        raise ValueError(
            f"the training set has {len(source)} instances, fewer than one global batch "
            f"({global_batch_size})"
        )
    layout = Layout(len(source), global_batch_size, process_index, process_count)
    element = TrainElement(source, sampler, layout, seed)
    num_samples = num_epochs * element.batches_per_epoch * layout.local_batch_size
    batches = grain.MapDataset.range(num_samples).map(element)
    batches = batches.batch(layout.local_batch_size, drop_remainder=True)
    fingerprint = {"num_records": len(source), "global_batch_size": global_batch_size, "seed": seed}
    return BatchIterator(batches, options, fingerprint)


def eval_iterator(
    source: Any,
    sampler: TopDownSampler,
    *,
    global_batch_size: int,
    options: DataOptions,
    process_index: int = 0,
    process_count: int = 1,
) -> BatchIterator:
    """One pass over all records in order, padded to whole global batches (`valid` marks real ones)."""
    layout = Layout(len(source), global_batch_size, process_index, process_count)
    num_batches = math.ceil(len(source) / global_batch_size)
    element = EvalElement(source, sampler, layout)
    batches = grain.MapDataset.range(num_batches * layout.local_batch_size).map(element)
    batches = batches.batch(layout.local_batch_size, drop_remainder=True)
    return BatchIterator(batches, options, {"num_records": len(source)})

"""Person instances packed as ArrayRecord shards: one record per instance (group_size 1, so random
access reads one record), each a small JSON header with the instance's fields followed by its image's
JPEG bytes. No pickle, so packed data is safe to read from anywhere."""

from __future__ import annotations

import json
import pathlib
import struct
from typing import Any

import grain
import numpy as np
from absl import logging
from array_record.python import array_record_module

from hrnet_jax.data import coco

_HEADER = struct.Struct("<I")  # length of the JSON header that precedes the image bytes


def encode_record(record: dict[str, Any], image_bytes: bytes) -> bytes:
    """An instance record and its image as one ArrayRecord record."""
    header = {k: np.asarray(v).tolist() for k, v in record.items() if k != "image_bytes"}
    blob = json.dumps(header).encode()
    return _HEADER.pack(len(blob)) + blob + image_bytes


def decode_record(data: bytes) -> dict[str, Any]:
    """The record dict that the sampler reads, with `image_bytes` in place of a file to open."""
    (size,) = _HEADER.unpack_from(data)
    header = json.loads(data[_HEADER.size : _HEADER.size + size])
    record = {k: np.asarray(v, _DTYPES.get(k)) for k, v in header.items()}
    record["image_bytes"] = data[_HEADER.size + size :]
    return record


_DTYPES = {
    "center": np.float32,
    "scale": np.float32,
    "joints": np.float32,
    "joints_vis": np.float32,
    "score": np.float32,
    "area": np.float32,
    "image_size": np.int32,
    "image_id": np.int64,
    "ann_id": np.int64,
}


def pack(instances: coco.Instances, out_pattern: str, num_shards: int) -> list[str]:
    """Writes instances round-robin into `num_shards` files named by `out_pattern` % shard."""
    paths = [out_pattern % (s, num_shards) for s in range(num_shards)]
    for path in paths:
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    writers = [array_record_module.ArrayRecordWriter(p, "group_size:1") for p in paths]
    try:
        for i in range(len(instances)):
            record = instances[i]
            image_bytes = pathlib.Path(str(record["image_file"])).read_bytes()
            writers[i % num_shards].write(encode_record(record, image_bytes))
            if i % 10_000 == 0:
                logging.info("packed %d / %d instances", i, len(instances))
    finally:
        for w in writers:
            w.close()
    return paths


class PackedInstances:
    """Instance records from ArrayRecord shards written by `pack` (a grain random-access source)."""

    def __init__(self, paths: list[str]):
        self._source = grain.sources.ArrayRecordDataSource(paths)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return decode_record(self._source[i])

    def __repr__(self) -> str:
        return f"PackedInstances({self._source!r})"

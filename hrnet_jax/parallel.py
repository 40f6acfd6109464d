"""Data parallelism over every device of every process: one mesh axis, `data`.

The same code runs on one CPU, 8 GPUs, a TPU slice and many hosts: a batch's leading axis is split
over the `data` axis, the train state is replicated, and each process supplies only its own rows.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices: list | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh over all devices (all processes'), in jax.devices() order.

    Axes are Auto (classic jit data parallelism); jax.make_mesh would default to Explicit.
    """
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(local_batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, Any]:
    """Assembles the global batch from each process's rows (process p holds rows p*n .. (p+1)*n)."""
    sharding = data_sharded(mesh)
    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in local_batch.items()
    }


def local_rows(array: jax.Array) -> np.ndarray:
    """This process's rows of a `data`-sharded array, in global order (the rows it supplied)."""
    shards = {s.index[0].start or 0: s.data for s in array.addressable_shards}
    return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)])

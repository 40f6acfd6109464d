"""Starting JAX's distributed runtime when a run spans several processes (hosts).

Under SLURM (`srun`) and on multi-host TPU VM slices jax.distributed finds its peers itself; elsewhere
the coordinator's address, the number of processes and this process's id come from flags or the
environment (HRNET_COORDINATOR_ADDRESS, HRNET_NUM_PROCESSES, HRNET_PROCESS_ID).
"""

from __future__ import annotations

import os

import jax
from absl import logging

from hrnet_jax.errors import UserError


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def cluster_detected() -> bool:
    """SLURM with several tasks, or a TPU VM slice with several workers."""
    if (_env_int("SLURM_NTASKS") or 1) > 1:
        return True
    workers = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in workers or bool(os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"))


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    cpu_devices_per_process: int | None = None,
    heartbeat_timeout_seconds: int = 100,
    force: bool = False,
) -> bool:
    """Initialises jax.distributed if this run has several processes; returns whether it did.

    Must run before anything touches a JAX backend. `heartbeat_timeout_seconds` bounds how long
    the survivors wait before failing when a process dies.
    """
    coordinator_address = coordinator_address or os.environ.get("HRNET_COORDINATOR_ADDRESS")
    num_processes = num_processes or _env_int("HRNET_NUM_PROCESSES")
    if process_id is None:
        process_id = _env_int("HRNET_PROCESS_ID")
    if cpu_devices_per_process:
        jax.config.update("jax_num_cpu_devices", cpu_devices_per_process)
    explicit = coordinator_address is not None
    if not (explicit or force or cluster_detected()):
        return False
    if explicit and (num_processes is None or process_id is None):
        raise UserError(
            "--coordinator_address needs --num_processes and --process_id (or HRNET_NUM_PROCESSES "
            "and HRNET_PROCESS_ID)"
        )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        heartbeat_timeout_seconds=heartbeat_timeout_seconds,
    )
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True

"""Trains (and evaluates) HRNet from a config file.

    python -m hrnet_jax.main --config=configs/w32_384x288.py --workdir=/tmp/w32 [--config.key=value ...]

Rerunning with the same workdir resumes from its latest complete checkpoint. Several processes
(hosts) train together under SLURM, on TPU VM slices, or with --coordinator_address,
--num_processes and --process_id (see launch/README.md).
"""

from absl import flags

from hrnet_jax import cli, distributed, runtime, train_loop

_CONFIG = cli.ConfigFlag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for multi-process runs."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "CPU devices per process (jax_num_cpu_devices), for CPU-only runs."
)
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout_seconds", 100, "Seconds after which a silent process fails the run."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() even if no cluster is detected."
)


def main() -> None:
    config = _CONFIG.value
    runtime.configure(config.xla)
    distributed.initialize(
        _COORDINATOR.value,
        _NUM_PROCESSES.value,
        _PROCESS_ID.value,
        cpu_devices_per_process=_CPU_DEVICES.value,
        heartbeat_timeout_seconds=_HEARTBEAT.value,
        force=_DISTRIBUTED.value,
    )
    train_loop.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main, config=_CONFIG, required=["workdir"])

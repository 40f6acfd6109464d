"""Trains (and evaluates) HRNet from a config file.

    python -m hrnet_jax.main --config=configs/w32_384x288.py --workdir=/tmp/w32 [--config.key=value ...]

Rerunning with the same workdir resumes from its latest complete checkpoint.
"""

from absl import app, flags
from ml_collections import config_flags

from hrnet_jax import metrics, train_loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    metrics.quiet_library_logs()
    train_loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)

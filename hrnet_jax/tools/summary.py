"""Model summary: parameters, convolution GMACs (as HRNet's README counts them) and XLA GFLOPs.

    python -m hrnet_jax.tools.summary --config=configs/w32_384x288.py

prints one JSON line: {"params", "gmacs", "xla_gflops", "input_size", "heatmap_size"}.
"""

import json

from absl import app
from ml_collections import config_flags

from hrnet_jax import config_lib
from hrnet_jax.models import summary

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file.", lock_config=True
)


def main(argv):
    del argv
    print(json.dumps(summary.summarize(config_lib.validate(_CONFIG.value))))


if __name__ == "__main__":
    app.run(main)

"""Model summary: parameters, convolution GMACs (as HRNet's README counts them) and XLA GFLOPs.

    python -m hrnet_jax.tools.summary --config=configs/w32_384x288.py

prints one JSON line: {"params", "gmacs", "xla_gflops", "input_size", "heatmap_size"}.
"""

import json

from hrnet_jax import cli
from hrnet_jax.models import summary

_CONFIG = cli.ConfigFlag()


def main() -> None:
    print(json.dumps(summary.summarize(_CONFIG.value)))


if __name__ == "__main__":
    cli.run(main, config=_CONFIG)

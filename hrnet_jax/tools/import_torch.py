"""Imports official PyTorch HRNet weights into the Flax model and writes an orbax checkpoint.

    python -m hrnet_jax.tools.import_torch --src=hrnet_w32-36af842e.pth --kind=imagenet \
        --config=configs/w32_384x288.py --out=/tmp/w32_imagenet
    python -m hrnet_jax.tools.import_torch --src=pose_hrnet_w32_384x288.pth --kind=pose \
        --config=configs/w32_384x288.py --out=/tmp/w32_pose

`--kind=imagenet` loads the backbone of the ImageNet classifier as the reference initialises pose
training; `--kind=pose` loads a whole pose network (docs/import_torch.md, tools/torch_weights.py).
"""

import pathlib

from absl import flags

from hrnet_jax import cli
from hrnet_jax.tools import torch_weights

_SRC = flags.DEFINE_string("src", None, "PyTorch .pth/.pt or .safetensors file.")
_KIND = flags.DEFINE_enum("kind", None, torch_weights.KINDS, "imagenet: the backbone; pose: all.")
_OUT = flags.DEFINE_string("out", None, "Output directory (gets checkpoints/).")
_TRUST = flags.DEFINE_bool("trust_pickle", False, "Unpickle a .pth file's non-tensor objects.")
_CONFIG = cli.ConfigFlag()


def main() -> None:
    report = torch_weights.import_file(
        _SRC.value, _KIND.value, _CONFIG.value, _OUT.value, trust_pickle=_TRUST.value
    )
    print(
        f"{report.kind} ({report.layout} layout): {len(report.used)} tensors loaded, "
        f"{len(report.unused)} unused by design, {len(report.missing)} leaves kept from the "
        f"initialisation; wrote {pathlib.Path(_OUT.value) / 'checkpoints'} and import_report.json"
    )


if __name__ == "__main__":
    cli.run(main, config=_CONFIG, required=["src", "kind", "out"])

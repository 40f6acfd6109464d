"""Packs a split's person instances (JPEG bytes + annotation) into ArrayRecord shards.

    python -m hrnet_jax.data.pack --config=configs/w32_384x288.py --split=train2017 --out=/data/packed

then train with `--config.data.format=array_record --config.data.packed_dir=/data/packed`. Written
with array_record directly: a TFDS builder would need TensorFlow to build, while array_record and
grain read and write without it.
"""

import pathlib

from absl import flags, logging

from hrnet_jax import cli
from hrnet_jax.data import packed, sources

_CONFIG = cli.ConfigFlag()
_SPLIT = flags.DEFINE_string("split", None, "Split to pack (default: the config's train split).")
_OUT = flags.DEFINE_string("out", None, "Output directory (the config's data.packed_dir).")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 16, "ArrayRecord files to write.")


def main() -> None:
    config = _CONFIG.value
    split = _SPLIT.value or config.data.train_split
    train = split == config.data.train_split
    instances, _ = sources.folder_instances(config, split, train=train)
    pattern = str(pathlib.Path(_OUT.value) / f"{split}.array_record-%05d-of-%05d")
    paths = packed.pack(instances, pattern, _NUM_SHARDS.value)
    logging.info("wrote %d instances into %d files: %s ...", len(instances), len(paths), paths[0])


if __name__ == "__main__":
    cli.run(main, config=_CONFIG, required=["out"])

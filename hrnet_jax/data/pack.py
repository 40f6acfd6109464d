"""Builds a config's keypoint set as a TensorFlow Datasets data set (ArrayRecord).

    python -m hrnet_jax.data.pack --config=configs/w32_384x288.py --data_dir=/data/tfds [--split=val]

builds the config's `data.train_split` and `data.val_split` (with `--split`, repeatable, only
`train` or `val`); then train and evaluate from it with `--config.data.format=tfds
--config.data.tfds_data_dir=/data/tfds` (hrnet_jax/data/tfds_builder.py). An interrupted build
starts its splits again; a finished one is reused as it is, so a split left out cannot be added to
it later: build into a new data_dir. TensorFlow is not needed.
"""

from absl import flags, logging

from hrnet_jax import cli
from hrnet_jax.data import sources, tfds_builder

_CONFIG = cli.ConfigFlag()
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir to build into.")
_SPLIT = flags.DEFINE_multi_enum(
    "split", ["train", "val"], ["train", "val"], "Which of the config's splits to build."
)


def main() -> None:
    config = _CONFIG.value
    sources.ensure_synthetic(config)
    built = tfds_builder.builder(config, _DATA_DIR.value, roles=_SPLIT.value)
    built.download_and_prepare()
    info = built.info
    wanted = {"train": config.data.train_split, "val": config.data.val_split}
    missing = [wanted[role] for role in _SPLIT.value if wanted[role] not in info.splits]
    if missing:
        raise FileExistsError(
            f"{info.full_name} in {built.data_dir} was built before without split(s) "
            f"{', '.join(missing)}: build all the splits you need into a new --data_dir"
        )
    logging.info(
        "%s in %s: %s; skipped (data.strict=False): %s images, %s persons",
        info.full_name,
        built.data_dir,
        ", ".join(f"{name} {split.num_examples}" for name, split in info.splits.items()),
        info.metadata.get("skipped_images", 0),
        info.metadata.get("skipped_instances", 0),
    )


if __name__ == "__main__":
    cli.run(main, config=_CONFIG, required=["data_dir"])

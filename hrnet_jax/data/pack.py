"""Builds a config's keypoint set as a TensorFlow Datasets data set (ArrayRecord), both splits.

    python -m hrnet_jax.data.pack --config=configs/w32_384x288.py --data_dir=/data/tfds

then train and evaluate from it with `--config.data.format=tfds --config.data.tfds_data_dir=/data/tfds`
(hrnet_jax/data/tfds_builder.py). An interrupted build starts its splits again; a finished one is
reused. TensorFlow is not needed.
"""

from absl import flags, logging

from hrnet_jax import cli
from hrnet_jax.data import sources, tfds_builder

_CONFIG = cli.ConfigFlag()
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir to build into.")


def main() -> None:
    config = _CONFIG.value
    sources.ensure_synthetic(config)
    built = tfds_builder.builder(config, _DATA_DIR.value)
    built.download_and_prepare()
    info = built.info
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

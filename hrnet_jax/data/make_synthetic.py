"""Generates the synthetic COCO-format person keypoint set (the demo's built-in data) by hand.

    python -m hrnet_jax.data.make_synthetic --out=DIR [--num_images=1000] [--num_val_images=64]
        [--seed=0] [--image_height=192] [--image_width=256]

Training generates it by itself from `data.synthetic.*` (configs/demo.py); see data/synthetic.py.
"""

import time

from absl import flags, logging

from hrnet_jax import cli
from hrnet_jax.data import synthetic

_OUT = flags.DEFINE_string("out", None, "Folder to write images/ and annotations/ into.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 1000, "Train images.")
_NUM_VAL_IMAGES = flags.DEFINE_integer("num_val_images", 64, "Val images.")
_SEED = flags.DEFINE_integer("seed", 0, "The same seed writes the same bytes.")
_HEIGHT = flags.DEFINE_integer("image_height", 192, "Image height in pixels.")
_WIDTH = flags.DEFINE_integer("image_width", 256, "Image width in pixels.")


def main() -> None:
    start = time.perf_counter()
    root = synthetic.generate(
        _OUT.value,
        num_train_images=_NUM_IMAGES.value,
        num_val_images=_NUM_VAL_IMAGES.value,
        seed=_SEED.value,
        image_size=(_HEIGHT.value, _WIDTH.value),
    )
    count = _NUM_IMAGES.value + _NUM_VAL_IMAGES.value
    logging.info("wrote %d images to %s in %.1f s", count, root, time.perf_counter() - start)


if __name__ == "__main__":
    cli.run(main, required=["out"])

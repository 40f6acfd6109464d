"""Runs a trained model on person boxes of one image and draws the skeletons with joint scores.

    python -m hrnet_jax.predict --workdir=DIR --image=IMG.jpg [--box=x,y,w,h ...] --out=OUT.png

The model and its config come from DIR's latest checkpoint (or --step, or --best); without --box
the whole image is one person box. Prints the keypoints (image x, y, score) as JSON.
"""

import json

import cv2
import numpy as np
from absl import flags

from hrnet_jax import cli, visualize
from hrnet_jax.data import pipeline
from hrnet_jax.errors import UserError
from hrnet_jax.predictor import Predictor, box_instances, parse_boxes

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory holding checkpoints/.")
_IMAGE = flags.DEFINE_string("image", None, "Image file.")
_BOXES = flags.DEFINE_multi_string("box", [], "Person box x,y,w,h in pixels (repeatable).")
_OUT = flags.DEFINE_string("out", None, "Output PNG.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Use the best-AP checkpoint (checkpoints_best/).")


def main() -> None:
    image = cv2.imread(_IMAGE.value)
    if image is None:
        raise UserError(f"cannot read image {_IMAGE.value}")
    boxes = parse_boxes(_BOXES.value, width=image.shape[1], height=image.shape[0])
    predictor = Predictor.from_checkpoint(
        _WORKDIR.value,
        _STEP.value,
        best=_BEST.value,
        data_options=pipeline.DataOptions(num_threads=2),
    )
    instances = box_instances(predictor.config, _IMAGE.value, image.shape[:2], boxes)
    keypoints = predictor.predict(instances)["keypoints"]
    visualize.save_png(
        _OUT.value, visualize.draw_skeletons(image, keypoints, predictor.spec, with_scores=True)
    )
    print(
        json.dumps(
            {"out": _OUT.value, "keypoints": np.round(keypoints.astype(np.float64), 2).tolist()}
        )
    )


if __name__ == "__main__":
    cli.run(main, required=["workdir", "image", "out"])

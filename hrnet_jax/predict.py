"""Runs a trained model on person boxes of one image and draws the skeletons with joint scores.

    python -m hrnet_jax.predict --workdir=DIR --image=IMG.jpg [--box=x,y,w,h ...] --out=OUT.png

The model and its config come from DIR's latest checkpoint (or --step); without --box the whole
image is one person box.
"""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags

from hrnet_jax import checkpoint, config_lib, evaluate, models, parallel, visualize
from hrnet_jax.data import coco

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory holding checkpoints/.")
_IMAGE = flags.DEFINE_string("image", None, "Image file.")
_BOXES = flags.DEFINE_multi_string("box", [], "Person box x,y,w,h in pixels (repeatable).")
_OUT = flags.DEFINE_string("out", None, "Output PNG.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")


def load_run(workdir: str, step: int | None = None):
    """The config the run was trained with and its params/BN statistics, on this process's devices."""
    step = checkpoint.require_step(workdir, step)
    checkpoints = checkpoint.Checkpoints(workdir, use_async=False)
    try:
        saved = checkpoints.manager.restore(
            step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
        )
        config = config_lib.from_saved(saved.config)
        mesh = parallel.make_mesh()
        model = models.create_model(config.model)
        variables, _ = evaluate.restore_replicated(checkpoints, config, model, mesh, step)
    finally:
        checkpoints.close()
    return config, model, variables, mesh


def predict_boxes(config, model, variables, mesh, image_file: str, boxes: np.ndarray) -> np.ndarray:
    """Keypoints (N, 17, 3) in image pixels for the (N, 4) x, y, w, h person boxes."""
    header = cv2.imread(image_file)
    if header is None:
        raise ValueError(f"cannot read image {image_file}")
    height, width = header.shape[:2]
    aspect = config.input_size[1] / config.input_size[0]
    center, scale = coco.box_to_center_scale(boxes, aspect, config.data.bbox_padding)
    n = len(boxes)
    instances = coco.Instances(
        image_file=np.array([image_file] * n),
        image_id=np.zeros(n, np.int64),
        ann_id=np.full(n, -1, np.int64),
        image_size=np.tile([height, width], (n, 1)).astype(np.int32),
        center=center,
        scale=scale,
        joints=np.zeros((n, 17, 2), np.float32),
        joints_vis=np.zeros((n, 17), np.float32),
        score=np.ones(n, np.float32),
        area=np.zeros(n, np.float32),
    )
    config.data.num_workers = 0
    return evaluate.predict(config, model, variables, instances, mesh)["keypoints"]


def parse_boxes(values: list[str], width: int, height: int) -> np.ndarray:
    """`--box` values "x,y,w,h" → (N, 4) boxes; none → the whole image as one person box."""
    if not values:
        return np.array([[0.0, 0.0, float(width), float(height)]])
    boxes = []
    for value in values:
        try:
            box = [float(v) for v in value.split(",")]
        except ValueError:
            box = []
        if len(box) != 4 or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"--box takes finite x,y,w,h with w, h > 0; got {value!r}")
        boxes.append(box)
    return np.array(boxes)


def main(argv):
    del argv
    try:
        config, model, variables, mesh = load_run(_WORKDIR.value, _STEP.value)
        image = cv2.imread(_IMAGE.value)
        if image is None:
            raise ValueError(f"cannot read image {_IMAGE.value}")
        boxes = parse_boxes(_BOXES.value, width=image.shape[1], height=image.shape[0])
        keypoints = predict_boxes(config, model, variables, mesh, _IMAGE.value, boxes)
    except (FileNotFoundError, ValueError, KeyError) as e:
        sys.exit(f"error: {e}")
    visualize.save_png(_OUT.value, visualize.draw_skeletons(image, keypoints, with_scores=True))
    print(json.dumps({"out": _OUT.value, "keypoints": np.round(keypoints, 2).tolist()}))


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir", "image", "out"])
    app.run(main)

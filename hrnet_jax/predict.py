"""Runs a trained or exported model on person boxes in images or a video and draws the skeletons.

    python -m hrnet_jax.predict --workdir=DIR --image=IMG.jpg [--box=x,y,w,h ...] --out=OUT.png
    python -m hrnet_jax.predict --workdir=DIR --images=DIR_OR_GLOB [--detections=DETS.json] --out=OUT
    python -m hrnet_jax.predict --model=FILE.onnx --video=CLIP.mp4 [--detections=DETS.json] --out=OUT

The model is DIR's checkpoint (latest, --step or --best) run by JAX (`--backend=jax`), or a file
from `hrnet_jax.export` (`--model`; `--backend=onnx` or `stablehlo`, by default the file's own).
Person boxes come from --box, else from --detections (a detector's COCO results: image_id, or
file_name, bbox, score; a video's image_id is its frame index from 0), else the whole image or
frame is one box. --image writes OUT.png and prints the keypoints as JSON; --images writes
OUT/<name>.png and OUT/keypoints_results.json (COCO keypoint results after the evaluator's
rescoring and OKS NMS, which `hrnet_jax.evaluate --results` scores); --video writes OUT/<name>.mp4
and OUT/keypoints_results.json with one list of results per frame.
"""

from __future__ import annotations

import json
import pathlib

import cv2
import numpy as np
from absl import flags
from tqdm import tqdm

from hrnet_jax import cli, coco_metric, deploy, detections, visualize
from hrnet_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory holding checkpoints/ (jax backend).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Use the best-AP checkpoint (checkpoints_best/).")
_MODEL = flags.DEFINE_string("model", None, "An exported model file (python -m hrnet_jax.export).")
_BACKEND = flags.DEFINE_enum(
    "backend",
    None,
    ["jax", *deploy.BACKENDS],
    "Default: jax with --workdir, the file's own with --model.",
)
_IMAGE = flags.DEFINE_string("image", None, "One image file.")
_IMAGES = flags.DEFINE_string("images", None, "A folder of images, or a glob pattern.")
_VIDEO = flags.DEFINE_string("video", None, "A video file (anything OpenCV reads).")
_BOXES = flags.DEFINE_multi_string("box", [], "Person box x,y,w,h in pixels (with --image).")
_DETECTIONS = flags.DEFINE_string("detections", None, "COCO detection results json (person boxes).")
_OUT = flags.DEFINE_string("out", None, "--image: output PNG; --images/--video: output folder.")
_BATCH = flags.DEFINE_integer(
    "batch_size", 32, "Person crops per call of an exported model (a checkpoint: its eval batch)."
)


def _estimator() -> deploy.PoseEstimator:
    """The model named by --workdir or --model, behind one interface."""
    if (_WORKDIR.value is None) == (_MODEL.value is None):
        raise UserError("give either --workdir (a checkpoint) or --model (an exported file)")
    if _MODEL.value:
        if _BACKEND.value == "jax":
            raise UserError("--backend=jax runs a checkpoint: give --workdir instead of --model")
        return deploy.load(_MODEL.value, _BACKEND.value, batch_size=_BATCH.value)
    if _BACKEND.value not in (None, "jax"):
        raise UserError(f"--backend={_BACKEND.value} runs an exported file: give --model")
    from hrnet_jax.predictor import Predictor  # JAX only for this backend

    predictor = Predictor.from_checkpoint(_WORKDIR.value, _STEP.value, best=_BEST.value)
    return deploy.PoseEstimator(
        predictor.config,
        lambda crops: np.asarray(predictor.heatmaps(crops)),
        batch_size=predictor.batch_size,
        pad_batches=True,
        step=predictor.step,
    )


def _detections(estimator: deploy.PoseEstimator) -> detections.Detections | None:
    if not _DETECTIONS.value:
        return None
    return detections.Detections(_DETECTIONS.value, estimator.config.eval.det_score_threshold)


def predict_one_image(
    estimator: deploy.PoseEstimator,
    path: pathlib.Path,
    image_hw: tuple[int, int],
    boxes: np.ndarray | None,
) -> None:
    height, width = image_hw
    dets, scores = _detections(estimator), None
    if boxes is None and dets is not None:
        dets.check_covers([(detections.image_id(path, 0), path.name)], "images")
        boxes, scores = dets.for_image(detections.image_id(path, 0), path.name)
    elif boxes is None:
        boxes = detections.whole_image(width, height)
    instances = detections.box_instances(
        estimator.config, str(path), (height, width), boxes, scores
    )
    keypoints = estimator.predict(instances)["keypoints"]
    image = cv2.imread(str(path))
    drawn = visualize.draw_skeletons(image, keypoints, estimator.spec, with_scores=True)
    visualize.save_png(_OUT.value, drawn)
    rounded = np.round(keypoints.astype(np.float64), 2).tolist()
    print(json.dumps({"out": _OUT.value, "keypoints": rounded}))


def predict_images(estimator: deploy.PoseEstimator, out: pathlib.Path) -> None:
    files = detections.image_files(_IMAGES.value)
    dets = _detections(estimator)
    ids = [detections.image_id(p, i) for i, p in enumerate(files)]
    if dets is not None:
        dets.check_covers([(i, p.name) for i, p in zip(ids, files, strict=True)], "images")
    results = []
    for path, image_id in zip(tqdm(files, unit="image"), ids, strict=True):
        height, width = detections.image_size(path)
        if dets is None:
            boxes, scores = detections.whole_image(width, height), None
        else:
            boxes, scores = dets.for_image(image_id, path.name)
        instances = detections.box_instances(
            estimator.config, str(path), (height, width), boxes, scores, image_id
        )
        found = estimator.results(estimator.predict(instances)) if len(boxes) else []
        results += found
        keypoints = np.array([r["keypoints"] for r in found]).reshape(len(found), -1, 3)
        drawn = visualize.draw_skeletons(cv2.imread(str(path)), keypoints, estimator.spec)
        visualize.save_png(out / f"{path.stem}.png", drawn)
    coco_metric.write_results(out / "keypoints_results.json", results)
    print(json.dumps({"out": str(out), "images": len(files), "persons": len(results)}))


def predict_video(estimator: deploy.PoseEstimator, out: pathlib.Path) -> None:
    path = pathlib.Path(_VIDEO.value)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"OpenCV cannot open the video {path}")
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    dets = _detections(estimator)
    if dets is not None and frames > 0:
        dets.check_covers([(i,) for i in range(frames)], "frames")
    writer, per_frame = None, []
    try:
        with tqdm(total=frames or None, unit="frame") as progress:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                index = len(per_frame)
                if dets is None:
                    boxes, scores = detections.whole_image(frame.shape[1], frame.shape[0]), None
                else:
                    boxes, scores = dets.for_image(index)
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                preds = estimator.predict_image(rgb, boxes, scores, image_id=index)
                found = estimator.results(preds)
                per_frame.append(found)
                keypoints = np.array([r["keypoints"] for r in found]).reshape(len(found), -1, 3)
                if writer is None:
                    writer = _video_writer(out / f"{path.stem}.mp4", fps, frame.shape[1::-1])
                writer.write(visualize.draw_skeletons(frame, keypoints, estimator.spec))
                progress.update()
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if not per_frame:
        raise UserError(f"{path} has no frame that OpenCV can decode")
    (out / "keypoints_results.json").write_text(json.dumps(per_frame))
    print(json.dumps({"out": str(out), "frames": len(per_frame)}))


def _video_writer(path: pathlib.Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise UserError(f"OpenCV cannot write the video {path}")
    return writer


def _existing(path: pathlib.Path) -> pathlib.Path:
    if not path.is_file():
        raise FileNotFoundError(f"cannot read {path}: it does not exist")
    return path


def main() -> None:
    inputs = [f for f in (_IMAGE, _IMAGES, _VIDEO) if f.value]
    if len(inputs) != 1:
        raise UserError("give one of --image, --images or --video")
    if _BOXES.value and not _IMAGE.value:
        raise UserError("--box goes with --image; give --detections for --images and --video")
    if _BOXES.value and _DETECTIONS.value:
        raise UserError("give --box or --detections, not both")
    # The inputs are checked before the model loads.
    if _IMAGES.value:
        detections.image_files(_IMAGES.value)
    else:
        _existing(pathlib.Path(_IMAGE.value or _VIDEO.value))
    image_hw, boxes = None, None
    if _IMAGE.value:  # read once, here: a corrupt image fails before the model loads
        image_hw = detections.image_size(pathlib.Path(_IMAGE.value))
    if _BOXES.value:
        boxes = detections.parse_boxes(_BOXES.value, width=image_hw[1], height=image_hw[0])
    estimator = _estimator()
    if _IMAGE.value:
        predict_one_image(estimator, pathlib.Path(_IMAGE.value), image_hw, boxes)
        return
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    if _IMAGES.value:
        predict_images(estimator, out)
    else:
        predict_video(estimator, out)


if __name__ == "__main__":
    cli.run(main, required=["out"])

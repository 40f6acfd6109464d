"""COCO person keypoint annotations → person-instance records (the reference's COCODataset._get_db).

Train instances come from GT boxes (non-crowd, with keypoints, clean boxes); val instances from GT boxes
or from a person-detector results file. Every instance carries the crop's center and scale as the
reference computes them (box aspect ratio fixed to the input's, padded by 1.25, in units of 200 px).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import pathlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from hrnet_jax.data.heatmaps import PIXEL_STD
from hrnet_jax.errors import UserError


class AnnotationError(UserError, ValueError):
    """A bad annotation; the message names the file and annotation id."""


@dataclasses.dataclass
class Instances:
    """Person instances as columns (cheap to pickle into worker processes)."""

    image_file: np.ndarray  # (N,) str: path of the image file
    image_id: np.ndarray  # (N,) int64
    ann_id: np.ndarray  # (N,) int64; -1 for detector boxes
    image_size: np.ndarray  # (N, 2) int32 (h, w)
    center: np.ndarray  # (N, 2) float32 (x, y) in pixels
    scale: np.ndarray  # (N, 2) float32 (w, h) / PIXEL_STD, padded
    joints: np.ndarray  # (N, K, 2) float32 (x, y) in pixels
    joints_vis: np.ndarray  # (N, K) float32, 0 or 1
    score: np.ndarray  # (N,) float32: detector score, 1 for GT boxes
    area: np.ndarray  # (N,) float32: GT segmentation area (0 for detector boxes)

    def __len__(self) -> int:
        return len(self.image_id)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {f.name: getattr(self, f.name)[i] for f in dataclasses.fields(self)}

    def __repr__(self) -> str:  # grain checkpoints name their source by repr
        return f"Instances(n={len(self)})"

    def select(self, index: np.ndarray) -> Instances:
        return Instances(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})


@dataclasses.dataclass
class LoadReport:
    """What the loader kept and what it left out, and why, so nothing is dropped silently."""

    kept: int = 0
    left_out: Counter = dataclasses.field(default_factory=Counter)
    errors: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        parts = ", ".join(f"{n} {why}" for why, n in sorted(self.left_out.items())) or "none"
        return f"{self.kept} instances kept; left out: {parts}"


def box_to_center_scale(
    box: np.ndarray, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, w, h) boxes → centers and scales, aspect ratio w/h fixed by growing one side.

    Vectorised over a leading axis. The reference's `_xywh2cs`.
    """
    box = np.asarray(box, np.float64).reshape(-1, 4)
    x, y, w, h = box.T
    center = np.stack([x + w * 0.5, y + h * 0.5], -1)
    wider = w > aspect_ratio * h
    w, h = np.where(wider, w, h * aspect_ratio), np.where(wider, w / aspect_ratio, h)
    scale = np.stack([w, h], -1) / PIXEL_STD * padding
    return center.astype(np.float32), scale.astype(np.float32)


def load_coco(path: str | pathlib.Path) -> COCO:
    """pycocotools' COCO, quietly, with an error naming the file when it is missing or not JSON."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: not a valid COCO annotation JSON file ({e})") from e
    except (KeyError, TypeError) as e:
        raise AnnotationError(f"{path}: not a COCO annotation file (missing {e})") from e


def _parsed(annotations: COCO | str | pathlib.Path, name) -> tuple[COCO, str]:
    """A parsed annotation set and the name its errors give (the file, unless `name` says)."""
    if isinstance(annotations, COCO):
        return annotations, str(name or "annotations")
    return load_coco(annotations), str(name or annotations)


def gt_instances(
    annotations: COCO | str | pathlib.Path,
    image_dir: str | pathlib.Path,
    *,
    aspect_ratio: float,
    padding: float = 1.25,
    strict: bool = True,
    name: str | pathlib.Path | None = None,
    fields: Sequence[tuple[str, str, int, int]] = (),
) -> tuple[Instances, LoadReport]:
    """One record per non-crowd person with keypoints and a clean box (the reference's GT db).

    `annotations` is an annotation file or a COCO object parsed from `name`. `fields` (a keypoint
    spec's) say which annotation arrays hold the joints, concatenated in order (COCO-WholeBody's
    body, foot, face and hands); by default `keypoints`, with as many joints as the person category
    names. A set without segmentation areas (CrowdPose, AIC) gets its boxes' areas."""
    coco, annotation_file = _parsed(annotations, name)
    num_joints = fields[-1][3] if fields else category_joint_count(coco, annotation_file)
    arrays = [field for _, field, _, _ in fields] or ["keypoints"]
    report = LoadReport()
    rows = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        width, height = info["width"], info["height"]
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)):
            if ann.get("category_id") != 1:
                report.left_out["not a person"] += 1
                continue
            if ann.get("iscrowd", 0):
                report.left_out["crowd"] += 1
                continue
            where = f"{annotation_file}: annotation id {ann.get('id')} (image {image_id})"
            try:
                keypoints = np.concatenate([np.asarray(ann[f], np.float32) for f in arrays])
                if keypoints.shape != (num_joints * 3,):
                    raise AnnotationError(
                        f"{where}: keypoints has {keypoints.size} numbers, expected "
                        f"{num_joints * 3} ({num_joints} joints)"
                    )
                box = _clean_box(ann["bbox"], width, height, where)
            except (AnnotationError, KeyError, ValueError, TypeError) as e:
                err = e if isinstance(e, AnnotationError) else AnnotationError(f"{where}: {e!r}")
                if strict:
                    raise err from e
                report.left_out["bad annotation"] += 1
                report.errors.append(str(err))
                continue
            keypoints = keypoints.reshape(num_joints, 3)
            if not np.any(keypoints > 0):
                report.left_out["no keypoints"] += 1
                continue
            area = float(ann.get("area", box[2] * box[3] if box is not None else 0.0))
            if box is None or area <= 0:
                report.left_out["empty box"] += 1
                continue
            rows.append((info, ann, box, keypoints, area))
    report.kept = len(rows)
    if not rows:
        return _empty(num_joints), report
    image_dir = pathlib.Path(image_dir)
    center, scale = box_to_center_scale(np.stack([r[2] for r in rows]), aspect_ratio, padding)
    keypoints = np.stack([r[3] for r in rows])
    return Instances(
        image_file=np.array([str(image_dir / r[0]["file_name"]) for r in rows]),
        image_id=np.array([r[0]["id"] for r in rows], np.int64),
        ann_id=np.array([r[1]["id"] for r in rows], np.int64),
        image_size=np.array([(r[0]["height"], r[0]["width"]) for r in rows], np.int32),
        center=center,
        scale=scale,
        joints=keypoints[:, :, :2].copy(),
        joints_vis=np.minimum(keypoints[:, :, 2], 1.0),
        score=np.ones(len(rows), np.float32),
        area=np.array([r[4] for r in rows], np.float32),
    ), report


def _clean_box(bbox, width: int, height: int, where: str) -> np.ndarray | None:
    """The reference's box sanitising: clip to the image, drop the inclusive-end pixel.

    A box that lies entirely outside its image is a bad annotation; one whose cleaned corners cross
    is left out as the reference does.
    """
    x, y, w, h = (float(v) for v in bbox)
    if x >= width or y >= height or x + w <= 0 or y + h <= 0 or w < 0 or h < 0:
        raise AnnotationError(f"{where}: box {list(bbox)} lies outside its {width}x{height} image")
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], np.float64)


def detection_instances(
    det_file: str | pathlib.Path,
    annotations: COCO | str | pathlib.Path,
    image_dir: str | pathlib.Path,
    *,
    aspect_ratio: float,
    padding: float = 1.25,
    score_threshold: float = 0.0,
    name: str | pathlib.Path | None = None,
    num_joints: int | None = None,
) -> tuple[Instances, LoadReport]:
    """One record per person box of a detector's COCO results file with score >= threshold."""
    det_file = pathlib.Path(det_file)
    if not det_file.is_file():
        raise FileNotFoundError(f"person detection results file {det_file} does not exist")
    try:
        dets = json.loads(det_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{det_file}: not a valid JSON file ({e})") from e
    if not isinstance(dets, list):
        raise AnnotationError(f"{det_file}: expected a list of COCO detection results")
    coco, annotation_file = _parsed(annotations, name)
    num_joints = num_joints or category_joint_count(coco, annotation_file)
    report = LoadReport()
    rows = []
    for i, det in enumerate(dets):
        try:
            category, image_id, box, score = (
                det["category_id"],
                det["image_id"],
                det["bbox"],
                float(det["score"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise AnnotationError(f"{det_file}: detection #{i} is malformed ({e!r})") from e
        if category != 1:
            report.left_out["not a person"] += 1
        elif score < score_threshold:
            report.left_out[f"score < {score_threshold}"] += 1
        elif image_id not in coco.imgs:
            raise AnnotationError(
                f"{det_file}: detection #{i} is for image {image_id}, not in {annotation_file}"
            )
        else:
            rows.append((coco.imgs[image_id], np.asarray(box, np.float64), score))
    report.kept = len(rows)
    if not rows:
        raise AnnotationError(
            f"{det_file}: no person boxes with score >= {score_threshold} "
            f"({len(dets)} detections, left out: {dict(report.left_out)})"
        )
    center, scale = box_to_center_scale(np.stack([r[1] for r in rows]), aspect_ratio, padding)
    n = len(rows)
    image_dir = pathlib.Path(image_dir)
    return Instances(
        image_file=np.array([str(image_dir / r[0]["file_name"]) for r in rows]),
        image_id=np.array([r[0]["id"] for r in rows], np.int64),
        ann_id=np.full(n, -1, np.int64),
        image_size=np.array([(r[0]["height"], r[0]["width"]) for r in rows], np.int32),
        center=center,
        scale=scale,
        joints=np.zeros((n, num_joints, 2), np.float32),
        joints_vis=np.zeros((n, num_joints), np.float32),
        score=np.array([r[2] for r in rows], np.float32),
        area=np.zeros(n, np.float32),
    ), report


def category_joint_count(coco: COCO, name) -> int:
    """How many joints the annotation set's person category names."""
    for category in coco.dataset.get("categories", []):
        if category.get("keypoints"):
            return len(category["keypoints"])
    raise AnnotationError(f"{name}: no category lists its keypoints (names of the joints)")


def _empty(num_joints: int) -> Instances:
    return Instances(
        image_file=np.array([], str),
        image_id=np.zeros(0, np.int64),
        ann_id=np.zeros(0, np.int64),
        image_size=np.zeros((0, 2), np.int32),
        center=np.zeros((0, 2), np.float32),
        scale=np.zeros((0, 2), np.float32),
        joints=np.zeros((0, num_joints, 2), np.float32),
        joints_vis=np.zeros((0, num_joints), np.float32),
        score=np.zeros(0, np.float32),
        area=np.zeros(0, np.float32),
    )


def log_report(name: str, report: LoadReport) -> None:
    logging.info("%s: %s", name, report)
    for err in report.errors[:20]:
        logging.warning("skipped: %s", err)

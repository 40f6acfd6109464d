"""Where persons are, for prediction: boxes typed on the command line, a detector's COCO results
file, or the whole image; and the person-instance records the evaluator's sampler reads for them."""

from __future__ import annotations

import glob
import json
import pathlib
from collections.abc import Sequence

import cv2
import ml_collections
import numpy as np
import simplejpeg

from hrnet_jax.data import coco
from hrnet_jax.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def parse_boxes(values: Sequence[str], width: int, height: int) -> np.ndarray:
    """Box strings "x,y,w,h" → (N, 4) boxes; none → the whole image as one person box."""
    if not values:
        return whole_image(width, height)
    boxes = []
    for value in values:
        try:
            box = [float(v) for v in value.split(",")]
        except ValueError:
            box = []
        if len(box) != 4 or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
            raise UserError(f"--box takes finite x,y,w,h with w, h > 0; got {value!r}")
        boxes.append(box)
    return np.array(boxes)


def whole_image(width: int, height: int) -> np.ndarray:
    """The whole image as one (1, 4) x, y, w, h person box."""
    return np.array([[0.0, 0.0, float(width), float(height)]])


class Detections:
    """A detector's COCO results file (a list of {image_id or file_name, bbox, score,
    category_id}): person boxes with score >= `score_threshold` per image id or file name."""

    def __init__(self, path: str | pathlib.Path, score_threshold: float = 0.0):
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"detections file {self.path} does not exist")
        try:
            entries = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{self.path}: not a valid JSON file ({e})") from e
        if not isinstance(entries, list):
            raise UserError(f"{self.path}: expected a list of COCO detection results")
        self.boxes: dict[int | str, list[tuple[list[float], float]]] = {}
        for i, det in enumerate(entries):
            try:
                key = det["file_name"] if "file_name" in det else int(det["image_id"])
                box, score = [float(v) for v in det["bbox"]], float(det.get("score", 1.0))
                person = det.get("category_id", 1) == 1
            except (KeyError, TypeError, ValueError) as e:
                raise UserError(f"{self.path}: detection #{i} is malformed ({e!r})") from e
            if len(box) != 4 or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
                raise UserError(
                    f"{self.path}: detection #{i} has bbox {det['bbox']}, not x, y, w, h"
                )
            if person and score >= score_threshold:
                self.boxes.setdefault(key, []).append((box, score))

    def for_image(
        self, image_id: int, file_name: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) boxes and (N,) scores of one image (by file name when the file gives names)."""
        found = self.boxes.get(file_name, []) if file_name is not None else []
        found = found or self.boxes.get(image_id, [])
        return np.array([b for b, _ in found]).reshape(-1, 4), np.array([s for _, s in found])

    def check_covers(self, items: Sequence[tuple[int | str, ...]], what: str) -> None:
        """Fails, naming a few of each side, when the file has boxes for none of `items` (each
        item's keys: an image's id and file name, or a frame's index)."""
        if self.boxes and not any(key in self.boxes for item in items for key in item):
            theirs = ", ".join(sorted(map(str, self.boxes))[:5])
            ours = ", ".join("/".join(map(str, item)) for item in items[:5])
            raise UserError(
                f"{self.path} has boxes for none of the {len(items)} {what} (it names {theirs}"
                f"{', ...' if len(self.boxes) > 5 else ''}; the {what} are {ours}"
                f"{', ...' if len(items) > 5 else ''})"
            )


def image_files(pattern: str) -> list[pathlib.Path]:
    """The images of a folder, or of a glob pattern, sorted by name."""
    folder = pathlib.Path(pattern)
    paths = folder.iterdir() if folder.is_dir() else map(pathlib.Path, glob.glob(pattern))
    found = sorted(p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise FileNotFoundError(f"--images={pattern} names no {'/'.join(IMAGE_SUFFIXES)} files")
    return found


def image_id(path: pathlib.Path, index: int) -> int:
    """COCO's convention: an image's id is its numeric file name (000000000785.jpg → 785); other
    names count from 0 in order."""
    return int(path.stem) if path.stem.isdigit() else index


def image_size(path: pathlib.Path) -> tuple[int, int]:
    """(h, w) of an image file, from the JPEG header where it is one."""
    data = path.read_bytes()
    if data[:2] == b"\xff\xd8":
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            return height, width
        except ValueError as e:
            raise UserError(f"corrupt JPEG {path}: {e}") from e
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"not a readable image: {path}")
    return image.shape[:2]


def box_instances(
    config: ml_collections.ConfigDict,
    image_file: str,
    image_hw: tuple[int, int],
    boxes: np.ndarray,
    scores: np.ndarray | None = None,
    image_id: int = 0,
) -> coco.Instances:
    """Person instances for (N, 4) x, y, w, h boxes of one image, cropped as the config crops."""
    aspect = config.input_size[1] / config.input_size[0]
    center, scale = coco.box_to_center_scale(boxes, aspect, config.data.bbox_padding)
    n, k = len(boxes), config.model.num_joints
    return coco.Instances(
        image_file=np.array([image_file] * n),
        image_id=np.full(n, image_id, np.int64),
        ann_id=np.full(n, -1, np.int64),
        image_size=np.tile(image_hw, (n, 1)).astype(np.int32),
        center=center,
        scale=scale,
        joints=np.zeros((n, k, 2), np.float32),
        joints_vis=np.zeros((n, k), np.float32),
        score=np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32),
        area=np.zeros(n, np.float32),
    )

"""A synthetic COCO-format person keypoint data set: the demo's built-in data, made on first use.

    python -m hrnet_jax.data.make_synthetic --out=DIR [--num_images=1000] [--seed=0]
        [--num_val_images=64] [--image_height=192] [--image_width=256]

writes DIR/images/{train,val}/<12-digit image id>.jpg and DIR/annotations/person_keypoints_{split}.json
as COCO 2017 lays them out, so the set goes through the same loader and evaluation as real COCO.

Each image holds 1-4 articulated figures (limbs as thick anti-aliased lines, torso a polygon, head an
ellipse with eyes, nose and ears) in random poses, sizes and positions over a textured background,
some cut by the image border or covered by nearer figures and objects. Conventions, COCO's where
COCO has one:
- Keypoints are in cv2's pixel coordinates (pixel centers at integers), rounded to 0.01 px. v=2:
  visible; v=1: covered by a person drawn later (nearer) or by an occluding object; v=0: not
  labelled (outside the image), written as x=y=0.
- Left and right: figures face the camera, so a figure's left side is on the image right when it
  stands upright. Left limbs are drawn in warm hues and right ones in cool hues, which tells the
  two sides apart; but training flips images and swaps the labels, after which hue says nothing
  about the side. So limbs also carry a shaded stripe on a handed side (see `draw_person`), a
  cue that survives the flip. (Figures seen from the back, whose sides only their heads give
  away, were tried: a small network did not learn them in the demo's few minutes.)
- `bbox` and `area` are of the whole silhouette inside the image, occluded parts included (amodal),
  so every labelled joint lies within half a pixel of its box.
- A few images hold a small far figure without keypoints (num_keypoints 0), as COCO does.
- An image depends only on (seed, image id, image size): train ids are 1..N, val ids start after
  VAL_ID_OFFSET, so the val set does not change with the number of train images.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile

import cv2
import numpy as np

from hrnet_jax.data import keypoints
from hrnet_jax.data.figures import (
    SHIFT,
    draw_person,
    fixed_point,
    random_look,
    rotation,
    sample_pose,
    textured_background,
)
from hrnet_jax.errors import UserError

JOINTS = keypoints.COCO.num_joints  # a figure's points: COCO's joints, then two head points
CATEGORY = {
    "id": 1,
    "name": "person",
    "supercategory": "person",
    "keypoints": list(keypoints.COCO.joint_names),
    "skeleton": [[a + 1, b + 1] for a, b in keypoints.COCO.skeleton],  # 1-based, as COCO's files
}
SPLITS = ("train", "val")
VAL_ID_OFFSET = 1_000_000  # val image ids are VAL_ID_OFFSET + 1, ...; train ids stay below it
JPEG_QUALITY = 90
UNLABELLED_PERSON_PROB = 0.05
OCCLUDER_PROB = 0.25  # images with 1-2 objects drawn over the persons


def _inside(xy: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    h, w = image_hw
    return (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return float(inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter))


def _place(rng, body, height, image_hw, boxes) -> np.ndarray:
    """A body's image points: turned, scaled to `height` px and moved to where at least 4 joints
    are in the image and its box overlaps those of `boxes` little (appends its box)."""
    if rng.random() < 0.06:  # lying
        theta = rng.choice([-1, 1]) * rng.uniform(np.deg2rad(70), np.deg2rad(110))
    else:
        theta = rng.normal(0, np.deg2rad(7))
    local = height * body @ rotation(theta).T
    lo, hi = local.min(0) - 0.05 * height, local.max(0) + 0.05 * height
    size, half = np.array(image_hw[::-1], float), (hi - lo) / 2
    for _ in range(30):
        if rng.random() < 0.7:  # wholly inside where it fits
            center = rng.uniform(np.minimum(half, size / 2), np.maximum(size - half, size / 2))
        else:  # anywhere: cut by the border
            center = rng.uniform(0, size)
        points = local + center - (lo + hi) / 2
        box = np.concatenate([points.min(0), points.max(0)])
        enough = _inside(points[:JOINTS], image_hw).sum() >= 4
        if enough and all(_iou(box, other) < 0.3 for other in boxes):
            break
    else:  # a crowded image: the last place will do if enough of the body is in the image
        if not enough:
            points = local + (size - lo - hi) / 2
            box = np.concatenate([points.min(0), points.max(0)])
    boxes.append(box)
    return points


def _occlude(rng: np.random.Generator, image: np.ndarray, figures: list) -> np.ndarray:
    """Draws 0-2 boxes or ellipses over random joints of the figures; returns their mask."""
    mask = np.zeros(image.shape[:2], np.uint8)
    for _ in range(rng.integers(1, 3) if rng.random() < OCCLUDER_PROB else 0):
        points = figures[rng.integers(len(figures))][0]
        extent = rng.uniform(0.12, 0.3) * np.ptp(points[:, 1])
        center = points[rng.integers(JOINTS)] + rng.normal(0, 0.3 * extent, 2)
        box = (tuple(center), (extent * rng.uniform(0.3, 1), extent), rng.uniform(0, 180))
        corners = [np.array(fixed_point(cv2.boxPoints(box)), np.int32)]
        rectangle, color = rng.random() < 0.5, tuple(int(c) for c in rng.integers(0, 256, 3))
        for im, c in ((image, color), (mask, 255)):
            if rectangle:
                cv2.fillPoly(im, corners, c, cv2.LINE_AA, SHIFT)
            else:
                cv2.ellipse(im, box, c, -1, cv2.LINE_AA)
    return mask


def _annotation(points, labelled: bool, mask, nearer, image_hw) -> dict:
    """A person's COCO fields; `nearer` marks the pixels where something in front covers it."""
    h, w = image_hw
    xy = np.round(points[:JOINTS], 2)
    v = np.where(_inside(xy, image_hw) & labelled, 2, 0)
    pixel = np.clip(np.round(xy).astype(int), 0, [w - 1, h - 1])
    v[(v == 2) & nearer[pixel[:, 1], pixel[:, 0]]] = 1
    xy[v == 0] = 0
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [cv2.approxPolyDP(c, 1.0, True) for c in contours]
    x0, y0, bw, bh = cv2.boundingRect(mask)
    return {
        "bbox": [float(x0), float(y0), float(bw), float(bh)],
        "area": float(cv2.countNonZero(mask)),
        "keypoints": [n for p, k in zip(xy.tolist(), v.tolist(), strict=True) for n in (*p, k)],
        "num_keypoints": int((v > 0).sum()),
        "segmentation": [p.ravel().tolist() for p in polygons if len(p) >= 3],
    }


def render_image(
    rng: np.random.Generator, image_hw: tuple[int, int]
) -> tuple[np.ndarray, list[dict]]:
    """One BGR image and its persons' annotations (keypoints, bbox, area, segmentation; no ids)."""
    h, w = image_hw
    image = textured_background(rng, h, w)
    far = [True] if rng.random() < UNLABELLED_PERSON_PROB else []
    figures, boxes = [], []  # in drawing order, which is depth order: far ones first
    for unlabelled in far + [False] * int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1]) + 1):
        height = h * (rng.uniform(0.15, 0.3) if unlabelled else rng.uniform(0.35, 0.95))
        points = _place(rng, sample_pose(rng), height, image_hw, boxes)
        figures.append((points, height, not unlabelled))
    front = np.full((h, w), -1, np.int16)  # the index of the nearest figure at each pixel
    masks = []
    for i, (points, height, _) in enumerate(figures):
        masks.append(draw_person(image, points, random_look(rng), height))
        front[masks[-1] > 0] = i
    front[_occlude(rng, image, figures) > 0] = len(figures)
    return image, [
        _annotation(points, labelled, mask, front > i, image_hw)
        for i, ((points, _, labelled), mask) in enumerate(zip(figures, masks, strict=True))
    ]


def _write_split(root: pathlib.Path, split: str, num_images: int, seed: int, image_hw) -> None:
    h, w = image_hw
    first = VAL_ID_OFFSET + 1 if split == "val" else 1
    images_dir = root / "images" / split
    images_dir.mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(first, first + num_images):
        rng = np.random.default_rng([seed, image_id])  # per image: independent of the order
        image, persons = render_image(rng, image_hw)
        name = f"{image_id:012d}.jpg"
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"cv2 could not encode {images_dir / name}")
        (images_dir / name).write_bytes(jpeg.tobytes())
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for k, person in enumerate(persons):
            ids = {"id": image_id * 10 + k, "image_id": image_id, "category_id": 1, "iscrowd": 0}
            annotations.append(ids | person)
    info = {
        "description": "hrnet_jax synthetic person keypoints: generated figures, not COCO photos",
        "generator": "hrnet_jax.data.synthetic",
        "seed": seed,
        "split": split,
        "image_size": [h, w],
    }
    coco = {"info": info, "licenses": [], "images": images, "annotations": annotations}
    path = root / "annotations" / f"person_keypoints_{split}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(coco | {"categories": [CATEGORY]}, separators=(",", ":")))


def exists(out_dir: str | os.PathLike) -> bool:
    """Whether `out_dir` holds a generated set: both annotation files, which are written last."""
    root = pathlib.Path(out_dir)
    return all((root / "annotations" / f"person_keypoints_{s}.json").is_file() for s in SPLITS)


def settings(out_dir: str | os.PathLike) -> dict:
    """What a generated set was made with: image counts, seed and image size (h, w)."""
    found = {}
    for split, key in zip(SPLITS, ("num_train_images", "num_val_images"), strict=True):
        path = pathlib.Path(out_dir) / "annotations" / f"person_keypoints_{split}.json"
        data = json.loads(path.read_text())
        info = data.get("info", {})
        found[key] = len(data.get("images", []))
        found["seed"] = info.get("seed")
        found["image_size"] = tuple(info.get("image_size", ()))
    return found


def generate(
    out_dir: str | os.PathLike,
    *,
    num_train_images: int,
    num_val_images: int,
    seed: int,
    image_size: tuple[int, int] = (192, 256),
) -> pathlib.Path:
    """Writes the set (image_size is (h, w)) into `out_dir`, a missing or empty folder or one
    without images/ and annotations/, and returns its path.

    The set is built in a temporary sibling folder and moved in at the end, annotations last, so
    an interrupted run leaves nothing that `exists` takes for a set.
    """
    h, w = (int(n) for n in image_size)
    if min(h, w) < 48:
        raise UserError(f"image_size {tuple(image_size)} is too small for the figures: use >= 48")
    if not (0 <= num_train_images < VAL_ID_OFFSET and num_val_images >= 0 and seed >= 0):
        raise UserError(
            f"need 0 <= num_train_images < {VAL_ID_OFFSET}, num_val_images >= 0 and seed >= 0, got "
            f"{num_train_images}, {num_val_images} and {seed}"
        )
    root = pathlib.Path(out_dir)
    taken = [str(root / name) for name in ("images", "annotations") if (root / name).exists()]
    if taken:
        raise FileExistsError(f"{' and '.join(taken)} already exist: generate into another folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(".partial", f".{root.name}.", root.parent))
    try:
        for split, n in zip(SPLITS, (num_train_images, num_val_images), strict=True):
            _write_split(tmp, split, n, seed, (h, w))
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        if root.exists():  # a folder with other things in it: move ours in
            (tmp / "images").rename(root / "images")
            (tmp / "annotations").rename(root / "annotations")
        else:
            tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root

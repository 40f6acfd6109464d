"""A synthetic COCO-format person keypoint data set: the demo's built-in data, made on first use.

    python -m hrnet_jax.data.synthetic --out DIR [--num_images 1000] [--seed 0]
        [--num_val_images 64] [--image_height 192] [--image_width 256]

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

import colorsys
import json
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Sequence

import cv2
import numpy as np
from absl import app, flags, logging

KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# COCO's 19 skeleton links, 1-based.
SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip
CATEGORY = {
    "id": 1,
    "name": "person",
    "supercategory": "person",
    "keypoints": list(KEYPOINT_NAMES),
    "skeleton": [list(link) for link in SKELETON],
}
SPLITS = ("train", "val")
VAL_ID_OFFSET = 1_000_000  # val image ids are VAL_ID_OFFSET + 1, ...; train ids stay below it
JPEG_QUALITY = 90
SHIFT = 4  # cv2's fractional bits: figures are drawn at 1/16 px precision
ONE = 1 << SHIFT

# Body proportions in units of standing height, roughly an adult's. Body frame: origin at the hip
# center, x towards the figure's left (the image right for a figure facing the camera), y down.
TORSO, NECK, SHOULDER_HALF_WIDTH, HIP_HALF_WIDTH = 0.29, 0.105, 0.115, 0.055
HEAD_RADII = (0.052, 0.064)  # across, along the neck
UPPER_ARM, FOREARM, THIGH, SHIN = 0.165, 0.145, 0.245, 0.245
# (joint, joint, thickness) of legs then arms, each side's upper segment first.
LIMBS = (
    (11, 13, 0.085), (13, 15, 0.065), (12, 14, 0.085), (14, 16, 0.065),
    (5, 7, 0.055), (7, 9, 0.045), (6, 8, 0.055), (8, 10, 0.045),
)  # fmt: skip
UNLABELLED_PERSON_PROB = 0.05
OCCLUDER_PROB = 0.25  # images with 1-2 objects drawn over the persons


def _rot(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _segment(side: int, angle: float, length: float) -> np.ndarray:
    """A segment `angle` radians away from straight down, positive away from the body's midline."""
    return length * np.array([side * np.sin(angle), np.cos(angle)])


def sample_pose(rng: np.random.Generator) -> np.ndarray:
    """A random body in its own frame: 19 points (the 17 joints, head center, head top), in units
    of standing height."""
    deg, u = np.deg2rad, rng.uniform
    p = np.zeros((19, 2))
    lean = rng.normal(0, deg(8)) if rng.random() < 0.9 else u(-deg(35), deg(35))
    up, pelvis = _rot(lean), _rot(rng.normal(0, deg(4)))
    hip, torso, shoulder = u(0.9, 1.15, 3) * [HIP_HALF_WIDTH, TORSO, SHOULDER_HALF_WIDTH]
    p[11], p[12] = pelvis @ [hip, 0], pelvis @ [-hip, 0]
    neck = up @ [0, -torso]
    p[5], p[6] = neck + up @ [shoulder, 0], neck - up @ [shoulder, 0]
    for side, (s, e, w) in ((1, (5, 7, 9)), (-1, (6, 8, 10))):
        r = rng.random()  # relaxed, raised or across the body
        a = deg(u(*((5, 60) if r < 0.6 else (60, 160) if r < 0.85 else (-30, 5))))
        bend = rng.normal(0, deg(25)) if rng.random() < 0.6 else u(-deg(120), deg(120))
        short = u(0.65, 1.0) if rng.random() < 0.3 else 1.0  # pointing out of the image plane
        p[e] = p[s] + up @ _segment(side, a, UPPER_ARM * short)
        p[w] = p[e] + up @ _segment(side, a + bend, FOREARM * short)
    for side, (s, k, a_) in ((1, (11, 13, 15)), (-1, (12, 14, 16))):
        r = rng.random()  # standing, walking or running, kicking or sitting
        a = deg(u(*((0, 12) if r < 0.65 else (-10, 40) if r < 0.95 else (40, 90))))
        bend = rng.normal(0, deg(10)) if rng.random() < 0.75 else u(-deg(70), deg(70))
        short = u(0.5, 1.0) if rng.random() < 0.25 else 1.0
        p[k] = p[s] + pelvis @ _segment(side, a, THIGH * short)
        p[a_] = p[k] + pelvis @ _segment(side, a + bend, SHIN * short)
    head_up = _rot(lean + rng.normal(0, deg(12)))
    rx, ry = np.array(HEAD_RADII) * u(0.9, 1.1)
    p[17] = neck + head_up @ [0, -NECK]
    p[18] = p[17] + head_up @ [0, -ry]
    yaw = u(-0.35, 0.35) * rx  # a turned head: the face moves across it
    face = [(1.2 * yaw, 0.2 * ry), (0.4 * rx + yaw, -0.1 * ry), (-0.4 * rx + yaw, -0.1 * ry)]
    face += [(0.97 * rx + 0.2 * yaw, 0.0), (-0.97 * rx + 0.2 * yaw, 0.0)]  # nose, eyes, ears
    p[:5] = p[17] + np.asarray(face) @ head_up.T
    return p


def _bgr(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(s, 1.0), min(v, 1.0))
    return int(255 * b), int(255 * g), int(255 * r)


def _look(rng: np.random.Generator) -> dict[str, tuple[int, int, int]]:
    """A figure's colours: warm left limbs, cool right limbs, muted torso, skin, hair, shoes."""
    u = rng.uniform
    look = {}
    for side, hue in (("left", u(-0.08, 0.14)), ("right", u(0.45, 0.7))):
        s, v = u(0.55, 1.0), u(0.55, 1.0)
        look[side], look[side + "_lower"] = _bgr(hue, s, v), _bgr(hue, 0.6 * s, 1.15 * v)
        look[side + "_shade"], look[side + "_joint"] = _bgr(hue, s, 0.7 * v), _bgr(hue, s, 0.45 * v)
    look["torso"] = _bgr(u(0, 1), u(0, 0.35), u(0.25, 0.9))
    look["skin"] = _bgr(u(0.03, 0.1), u(0.25, 0.6), u(0.35, 0.95))
    look["ear"] = tuple(int(0.8 * c) for c in look["skin"])
    look["hair"] = _bgr(u(0.02, 0.12), u(0.2, 0.8), u(0.05, 0.45))
    look["shoe"] = _bgr(u(0, 1), u(0, 0.5), u(0.05, 0.5))
    return look


def _fixed(points) -> list[tuple[int, int]]:
    """Points as cv2's fixed-point integer pairs."""
    return [tuple(q) for q in np.round(np.reshape(points, (-1, 2)) * ONE).astype(int).tolist()]


def draw_person(image: np.ndarray, points: np.ndarray, look: dict, height: float) -> np.ndarray:
    """Draws a figure (the 19 image points of `sample_pose`) onto `image` in place and returns its
    silhouette: a uint8 mask of the same shapes drawn without anti-aliasing."""
    mask = np.zeros(image.shape[:2], np.uint8)
    q = _fixed(points)
    thick = {(a, b): max(2, round(t * height)) for a, b, t in LIMBS}

    def paint(draw, color, silhouette=True):  # draw(target, color, line_type)
        draw(image, color, cv2.LINE_AA)
        if silhouette:
            draw(mask, 255, cv2.LINE_8)

    def disc(j, radius, color, silhouette=True):  # radius in units of height
        r = max(ONE, round(radius * height * ONE))
        paint(lambda im, c, lt: cv2.circle(im, q[j], r, c, -1, lt, SHIFT), color, silhouette)

    def limbs(first, last):
        for a, b, _ in LIMBS[first:last]:
            side = "left" if a % 2 else "right"  # left joints have odd indices
            color = look[side if a in (5, 6, 11, 12) else side + "_lower"]
            t = thick[a, b]
            paint(lambda im, c, lt, a=a, b=b, t=t: cv2.line(im, q[a], q[b], c, t, lt, SHIFT), color)
            # A shaded stripe along the limb, a quarter turn counter-clockwise (as displayed)
            # from its direction away from the body on left limbs, clockwise on right ones. A
            # mirror flip that swaps the labels keeps this rule (it does not keep hues), so the
            # stripe tells left from right locally, even for crossed limbs.
            along = points[b] - points[a]
            normal = np.array([along[1], -along[0]]) / max(np.linalg.norm(along), 1e-6)
            ends = _fixed(points[[a, b]] + normal * (t / 4 if a % 2 else -t / 4))
            cv2.line(image, *ends, look[side + "_shade"], max(1, t // 2), cv2.LINE_AA, SHIFT)
        for a, b, _ in LIMBS[first:last:2]:  # darker discs mark shoulders, elbows, hips, knees
            color = look[("left" if a % 2 else "right") + "_joint"]
            disc(a, thick[a, b] / 3 / height, color, False)
            disc(b, thick[a, b] / 3 / height, color, False)

    limbs(0, 4)
    disc(15, 0.032, look["shoe"])
    disc(16, 0.032, look["shoe"])
    across = points[5] - points[6]
    across /= max(np.linalg.norm(across), 1e-6)
    corners = [points[5] + across * thick[5, 7] / 2, points[6] - across * thick[6, 8] / 2]
    corners += [points[12] - across * thick[12, 14] / 2, points[11] + across * thick[11, 13] / 2]
    torso = np.array(_fixed(corners), np.int32)
    paint(lambda im, c, lt: cv2.fillPoly(im, [torso], c, lt, SHIFT), look["torso"])
    limbs(4, 8)
    disc(9, 0.028, look["skin"])
    disc(10, 0.028, look["skin"])
    neck, width = _fixed((points[5] + points[6]) / 2)[0], max(2, round(0.05 * height))
    paint(lambda im, c, lt: cv2.line(im, neck, q[17], c, width, lt, SHIFT), look["skin"])
    disc(3, 0.018, look["ear"])
    disc(4, 0.018, look["ear"])
    up = points[18] - points[17]
    angle, ry = float(np.degrees(np.arctan2(up[0], -up[1]))), float(np.linalg.norm(up))
    axes = (max(1, round(ry * HEAD_RADII[0] / HEAD_RADII[1] * ONE)), max(1, round(ry * ONE)))
    skin = look["skin"]
    paint(lambda im, c, lt: cv2.ellipse(im, q[17], axes, angle, 0, 360, c, -1, lt, SHIFT), skin)
    # A hair cap above the eyes, dark eyes and a reddish nose.
    cap, cap_axes = _fixed(points[17] + 0.3 * up)[0], (axes[0] + ONE // 2, axes[1] * 3 // 4)
    cv2.ellipse(image, cap, cap_axes, angle, 180, 360, look["hair"], -1, cv2.LINE_AA, SHIFT)
    for j, color in ((1, (30, 30, 30)), (2, (30, 30, 30)), (0, (40, 50, 150))):
        disc(j, 0.011, color, False)
    return mask


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A gradient with smooth blobs, sometimes stripes, random shapes and noise (vectorised)."""
    gh, gw = rng.integers(2, 7, 2)  # the gradient and the blobs: a small grid, resized
    gy, gx = np.mgrid[0 : 1 : gh * 1j, 0 : 1 : gw * 1j]
    phi = rng.uniform(0, 2 * np.pi)
    t = (gx * np.cos(phi) + gy * np.sin(phi) + 1) / 2
    c0, c1 = rng.uniform(0, 255, (2, 3))
    grid = c0 + (c1 - c0) * t[..., None] + rng.uniform(0, 60) * rng.uniform(-1, 1, (gh, gw, 3))
    image = cv2.resize(grid.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.4:
        y, x = np.ogrid[0:h, 0:w]
        psi, period = rng.uniform(0, np.pi), rng.uniform(4, 40)
        wave = np.sin(2 * np.pi * (x * np.cos(psi) + y * np.sin(psi)) / period + rng.uniform(0, 6))
        image += wave[..., None].astype(np.float32) * rng.uniform(-50, 50, 3).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(0, 8)):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        a, b = _fixed(rng.uniform(-0.1, 1.1, (2, 2)) * [w, h])
        kind, thick = rng.integers(3), int(rng.choice([-1, 1, 2, 4, 8]))
        if kind == 0:
            cv2.rectangle(image, a, b, color, thick, cv2.LINE_AA, SHIFT)
        elif kind == 1:
            axes, angle = _fixed(rng.uniform(0.03, 0.3, 2) * [w, h])[0], rng.uniform(0, 180)
            cv2.ellipse(image, a, axes, angle, 0, 360, color, thick, cv2.LINE_AA, SHIFT)
        else:
            cv2.line(image, a, b, color, max(1, thick), cv2.LINE_AA, SHIFT)
    noise = rng.standard_normal((h, w, 1), np.float32) * np.float32(rng.uniform(0, 12))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


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
    local = height * body @ _rot(theta).T
    lo, hi = local.min(0) - 0.05 * height, local.max(0) + 0.05 * height
    size, half = np.array(image_hw[::-1], float), (hi - lo) / 2
    for _ in range(30):
        if rng.random() < 0.7:  # wholly inside where it fits
            center = rng.uniform(np.minimum(half, size / 2), np.maximum(size - half, size / 2))
        else:  # anywhere: cut by the border
            center = rng.uniform(0, size)
        points = local + center - (lo + hi) / 2
        box = np.concatenate([points.min(0), points.max(0)])
        enough = _inside(points[:17], image_hw).sum() >= 4
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
        center = points[rng.integers(17)] + rng.normal(0, 0.3 * extent, 2)
        box = (tuple(center), (extent * rng.uniform(0.3, 1), extent), rng.uniform(0, 180))
        corners = [np.array(_fixed(cv2.boxPoints(box)), np.int32)]
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
    xy = np.round(points[:17], 2)
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
    image = _background(rng, h, w)
    far = [True] if rng.random() < UNLABELLED_PERSON_PROB else []
    figures, boxes = [], []  # in drawing order, which is depth order: far ones first
    for unlabelled in far + [False] * int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1]) + 1):
        height = h * (rng.uniform(0.15, 0.3) if unlabelled else rng.uniform(0.35, 0.95))
        points = _place(rng, sample_pose(rng), height, image_hw, boxes)
        figures.append((points, height, not unlabelled))
    front = np.full((h, w), -1, np.int16)  # the index of the nearest figure at each pixel
    masks = []
    for i, (points, height, _) in enumerate(figures):
        masks.append(draw_person(image, points, _look(rng), height))
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
        "generator": "python -m hrnet_jax.data.synthetic",
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
        raise ValueError(f"image_size {tuple(image_size)} is too small for the figures: use >= 48")
    if not (0 <= num_train_images < VAL_ID_OFFSET and num_val_images >= 0 and seed >= 0):
        raise ValueError(
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


def main(argv: Sequence[str]) -> None:
    """The CLI: `generate` with the flags' values (defined below, only when run as a script)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f, start = flags.FLAGS, time.perf_counter()
    root = generate(
        f.out,
        num_train_images=f.num_images,
        num_val_images=f.num_val_images,
        seed=f.seed,
        image_size=(f.image_height, f.image_width),
    )
    count = f.num_images + f.num_val_images
    logging.info("wrote %d images to %s in %.1f s", count, root, time.perf_counter() - start)


if __name__ == "__main__":
    # Not at import: training imports this module and has flags of its own.
    flags.DEFINE_string("out", None, "Folder to write images/ and annotations/ into.")
    flags.DEFINE_integer("num_images", 1000, "Train images.")
    flags.DEFINE_integer("num_val_images", 64, "Val images.")
    flags.DEFINE_integer("seed", 0, "The same seed writes the same bytes.")
    flags.DEFINE_integer("image_height", 192, "Image height in pixels.")
    flags.DEFINE_integer("image_width", 256, "Image width in pixels.")
    flags.mark_flags_as_required(["out"])
    app.run(main)

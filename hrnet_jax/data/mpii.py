"""MPII Human Pose: the converted json the official HRNet code and mmpose read, and PCKh.

The json is a list of persons {image, center, scale, joints (16 x 2), joints_vis}, in MPII's
1-based (Matlab) pixel coordinates, `scale` x 200 being the person's height. As the official
`mpii.py` (_get_db), the center moves down by 15 x scale and the box grows x1.25 (so limbs are
not cut), and everything shifts to 0-based pixels. PCKh is the official `mpii.evaluate`: a joint
is correct within `threshold` x the head size, which is 0.6 (SC_BIAS) x the diagonal of the
annotated head box (gt_valid.mat's `headboxes_src`); pelvis and thorax are left out of the mean.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import simplejpeg

from hrnet_jax.data import coco

SC_BIAS = 0.6  # official mpii.evaluate: head size = 0.6 x head-box diagonal
# PCKh groups of MPII's joints (official mpii.evaluate), as (name, joint ids).
GROUPS = (
    ("Head", (9,)),
    ("Shoulder", (12, 13)),
    ("Elbow", (11, 14)),
    ("Wrist", (10, 15)),
    ("Hip", (2, 3)),
    ("Knee", (1, 4)),
    ("Ankle", (0, 5)),
)
LEFT_OUT_OF_MEAN = (6, 7)  # pelvis, thorax
METRIC_NAMES = ("PCKh", *(name for name, _ in GROUPS), "PCKh@0.1")


def load_instances(
    annotation_file: str | pathlib.Path, image_dir: str | pathlib.Path
) -> coco.Instances:
    """Persons of an MPII json as instances (image sizes from the JPEG headers)."""
    annotation_file, image_dir = pathlib.Path(annotation_file), pathlib.Path(image_dir)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"MPII annotation file {annotation_file} does not exist")
    try:
        persons = json.loads(annotation_file.read_text())
        center = np.array([p["center"] for p in persons], np.float64)
        scale = np.array([p["scale"] for p in persons], np.float64)
        joints = np.array([p["joints"] for p in persons], np.float64)
        vis = np.array([p["joints_vis"] for p in persons], np.float32)
        files = [str(image_dir / p["image"]) for p in persons]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise coco.AnnotationError(f"{annotation_file}: not an MPII person list ({e!r})") from e
    center, scale = official_center_scale(center, scale)
    sizes, ids = {}, {}
    for f in files:
        if f not in sizes:
            try:
                h, w, _, _ = simplejpeg.decode_jpeg_header(pathlib.Path(f).read_bytes())
            except (OSError, ValueError) as e:
                raise coco.AnnotationError(f"cannot read the JPEG header of {f}: {e}") from e
            sizes[f], ids[f] = (h, w), len(ids) + 1
    n = len(persons)
    return coco.Instances(
        image_file=np.array(files),
        image_id=np.array([ids[f] for f in files], np.int64),
        ann_id=np.arange(n, dtype=np.int64),
        image_size=np.array([sizes[f] for f in files], np.int32).reshape(n, 2),
        center=center.astype(np.float32),
        scale=scale.astype(np.float32),
        joints=(joints - 1.0).astype(np.float32),  # 1-based -> 0-based pixels
        joints_vis=np.minimum(vis, 1.0),
        score=np.ones(n, np.float32),
        area=np.prod(scale * 200.0, axis=1).astype(np.float32),
    )


def official_center_scale(center: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official mpii.py adjustment: center y + 15 x scale, scale x 1.25 (where the center is
    known, x != -1), then 0-based; scale becomes (w, h) = (s, s) in units of 200 px."""
    center = np.array(center, np.float64).reshape(-1, 2)
    s = np.repeat(np.asarray(scale, np.float64).reshape(-1, 1), 2, axis=1)
    known = center[:, 0] != -1
    center[known, 1] += 15 * s[known, 1]
    s[known] *= 1.25
    return center - 1.0, s


def head_sizes_from_mat(path: str | pathlib.Path) -> np.ndarray:
    """SC_BIAS x the head-box diagonal of each person, from the official gt_valid.mat."""
    from scipy.io import loadmat

    boxes = loadmat(str(path))["headboxes_src"]  # (2 corners, 2 coords, N)
    return np.linalg.norm(boxes[1] - boxes[0], axis=0) * SC_BIAS


def head_sizes_from_joints(joints: np.ndarray) -> np.ndarray:
    """Without gt_valid.mat: the upper-neck to head-top distance (an approximation)."""
    return np.linalg.norm(np.asarray(joints)[:, 9] - np.asarray(joints)[:, 8], axis=-1)


def pckh(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    head_sizes: np.ndarray,
    threshold: float = 0.5,
) -> dict[str, float]:
    """PCKh (percent) per group and their joint-count-weighted mean, as the official evaluate.

    pred, gt: (N, 16, 2) pixels; visible: (N, 16); head_sizes: (N,) normalisers."""
    visible = np.asarray(visible) > 0
    error = (
        np.linalg.norm(np.asarray(pred, np.float64) - gt, axis=-1) / np.asarray(head_sizes)[:, None]
    )
    correct = (error <= threshold) & visible
    count = visible.sum(0)  # per joint
    per_joint = 100.0 * correct.sum(0) / np.maximum(count, 1)
    result = {name: float(np.mean(per_joint[list(ids)])) for name, ids in GROUPS}
    weight = count.astype(np.float64)
    weight[list(LEFT_OUT_OF_MEAN)] = 0.0
    result["Mean"] = float(np.sum(per_joint * weight) / max(weight.sum(), 1.0))
    return result

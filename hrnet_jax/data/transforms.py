"""Top-down crop geometry and the official augmentations (the reference's JointsDataset.__getitem__).

Coordinates are in pixels with the reference's conventions: a crop maps the box center to the center
of the output, (W/2, H/2), rotates about it, and scales the box width `scale[0] * 200` to the output
width; a horizontal flip maps x to `width - x - 1`. UDP's crop (Huang et al. 2020) instead maps the
box onto the output's pixel centres 0 .. W - 1, so that it commutes with that flip.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from hrnet_jax.data.heatmaps import PIXEL_STD


def affine_matrix(
    center: np.ndarray,
    scale: np.ndarray,
    rotation: float,
    output_size: tuple[int, int],
    inverse: bool = False,
    udp: bool = False,
) -> np.ndarray:
    """The 2x3 matrix of the reference's get_affine_transform(center, scale, rot, output_size).

    `output_size` is (h, w). The map is a rotation by `rotation` degrees (counter-clockwise in the
    image as displayed) about the center, then a zoom of output_w / (scale_w * 200) that puts the
    center at (w/2, h/2). With `udp`, UDP's unbiased crop (mmpose's get_udp_warp_matrix): zooms
    of (w - 1) / (scale_w * 200) and (h - 1) / (scale_h * 200) put the center at
    ((w - 1)/2, (h - 1)/2), so the box spans the outer pixel centres and the crop of a mirrored
    image is the mirrored crop. (mmpose's UDP matrix turns the other way; its rotations are drawn
    symmetric, so it trains alike.)
    """
    out_h, out_w = output_size
    theta = np.deg2rad(rotation)
    cos, sin = np.cos(theta), np.sin(theta)
    if udp:
        box = np.asarray(scale, np.float64) * PIXEL_STD
        zoom = (np.array([[out_w], [out_h]]) - 1.0) / box[:, None]
        target = (np.array([[out_w], [out_h]]) - 1.0) / 2
    else:
        zoom = out_w / (float(scale[0]) * PIXEL_STD)
        target = np.array([[out_w / 2], [out_h / 2]])
    linear = zoom * np.array([[cos, sin], [-sin, cos]])
    cx, cy = float(center[0]), float(center[1])
    matrix = np.concatenate([linear, target - linear @ [[cx], [cy]]], axis=1)
    return cv2.invertAffineTransform(matrix) if inverse else matrix


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of `outer ∘ inner` (apply inner first)."""
    return outer[:, :2] @ np.vstack([inner, [0.0, 0.0, 1.0]])[:2] + np.hstack(
        [np.zeros((2, 2)), outer[:, 2:]]
    )


def hflip_matrix(width: int) -> np.ndarray:
    """x → width - x - 1: the reference's horizontal flip of an image `width` pixels wide."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Applies a 2x3 affine matrix to (..., 2) points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Bilinear crop of `image` to (h, w) = output_size, zeros outside (the reference's warpAffine)."""
    out_h, out_w = output_size
    return cv2.warpAffine(image, matrix, (int(out_w), int(out_h)), flags=cv2.INTER_LINEAR)


def flip_joints(
    joints: np.ndarray, vis: np.ndarray, width: int, flip_perm: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Mirrors joints of an image `width` wide and swaps left/right by the keypoint set's flip
    permutation (the reference's fliplr_joints)."""
    joints = transform_points(joints, hflip_matrix(width))
    perm = np.asarray(flip_perm)
    return joints[perm] * (vis[perm, None] > 0), vis[perm]


def half_body(
    joints: np.ndarray,
    vis: np.ndarray,
    rng: np.random.Generator,
    *,
    upper_body_ids: Sequence[int],
    upper_prob: float,
    aspect_ratio: float,
    padding: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Center and scale of the upper or the lower body's visible joints (None if too few).

    The reference picks the upper body when `randn() < 0.5` (probability 0.69, `upper_prob`) and it
    has more than 2 visible joints, else the lower body if it has more than 2, else the upper.
    """
    visible = vis > 0
    is_upper = np.isin(np.arange(len(joints)), upper_body_ids)
    upper, lower = joints[visible & is_upper], joints[visible & ~is_upper]
    if rng.random() < upper_prob and len(upper) > 2:
        selected = upper
    else:
        selected = lower if len(lower) > 2 else upper
    if len(selected) < 2:
        return None
    center = selected.mean(axis=0)
    w, h = selected.max(axis=0) - selected.min(axis=0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center.astype(np.float32), (np.array([w, h]) / PIXEL_STD * padding).astype(np.float32)


def random_scale_rotation(
    rng: np.random.Generator, scale_factor: float, rotation_factor: float, rotation_prob: float
) -> tuple[float, float]:
    """Scale multiplier in [1 - sf, 1 + sf] and rotation in [-2 rf, 2 rf] (0 w.p. 1 - rotation_prob)."""
    s = float(np.clip(rng.standard_normal() * scale_factor + 1, 1 - scale_factor, 1 + scale_factor))
    r = float(
        np.clip(rng.standard_normal() * rotation_factor, -2 * rotation_factor, 2 * rotation_factor)
    )
    return s, r if rng.random() < rotation_prob else 0.0

"""Draws predicted skeletons on images, with a keypoint set's limbs; left joints and limbs in one
colour, right ones in another."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np

from hrnet_jax.data.keypoints import KeypointSpec

LEFT, RIGHT, CENTER = (255, 128, 0), (0, 128, 255), (0, 220, 0)  # BGR


def _sides(spec: KeypointSpec) -> list[tuple[int, int, int]]:
    """Each joint's colour, from its name ("left_knee", "Right Hip", "l_ankle", ...)."""

    def side(name: str):
        name = name.lower().replace(" ", "_")
        if name.startswith(("left", "l_")):
            return LEFT
        return RIGHT if name.startswith(("right", "r_")) else CENTER

    return [side(n) for n in spec.joint_names]


def draw_skeletons(
    image_bgr: np.ndarray,
    keypoints: np.ndarray,
    spec: KeypointSpec,
    threshold: float = 0.2,
    with_scores: bool = False,
) -> np.ndarray:
    """Draws (N, K, 3) keypoints (x, y, score): limbs and joints scoring above `threshold`."""
    canvas = image_bgr.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 300))
    sides = _sides(spec)
    for person in np.asarray(keypoints, np.float64):
        visible = person[:, 2] > threshold
        for a, b in spec.skeleton:
            if visible[a] and visible[b]:
                pa, pb = (tuple(int(round(v)) for v in person[j, :2]) for j in (a, b))
                cv2.line(canvas, pa, pb, sides[b], thickness + 1, cv2.LINE_AA)
        for j in np.flatnonzero(visible):
            point = tuple(int(round(v)) for v in person[j, :2])
            cv2.circle(canvas, point, thickness + 2, sides[j], -1, cv2.LINE_AA)
            if with_scores:
                cv2.putText(
                    canvas, f"{person[j, 2]:.2f}", (point[0] + 4, point[1] - 4),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.3 * thickness, (255, 255, 255), 1, cv2.LINE_AA,
                )  # fmt: skip
    return canvas


def save_png(path: str | pathlib.Path, image_bgr: np.ndarray) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image_bgr):
        raise OSError(f"could not write {path}")

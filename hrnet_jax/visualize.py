"""Draws predicted COCO skeletons on images."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np

# COCO's 19 limbs (0-based joint indices), as in the person category's `skeleton`.
SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
LEFT, RIGHT, CENTER = (255, 128, 0), (0, 128, 255), (0, 220, 0)  # BGR


def _side(joint: int) -> tuple[int, int, int]:
    return CENTER if joint == 0 else LEFT if joint % 2 else RIGHT


def draw_skeletons(
    image_bgr: np.ndarray,
    keypoints: np.ndarray,
    threshold: float = 0.2,
    with_scores: bool = False,
) -> np.ndarray:
    """Draws (N, 17, 3) keypoints (x, y, score): limbs and joints scoring above `threshold`."""
    canvas = image_bgr.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 300))
    for person in np.asarray(keypoints, np.float64):
        visible = person[:, 2] > threshold
        for a, b in SKELETON:
            if visible[a] and visible[b]:
                pa, pb = (tuple(int(round(v)) for v in person[j, :2]) for j in (a, b))
                cv2.line(canvas, pa, pb, _side(b), thickness + 1, cv2.LINE_AA)
        for j in np.flatnonzero(visible):
            point = tuple(int(round(v)) for v in person[j, :2])
            cv2.circle(canvas, point, thickness + 2, _side(j), -1, cv2.LINE_AA)
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

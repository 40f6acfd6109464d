"""Articulated stick figures with COCO's 17 joints, drawn with cv2: the synthetic set's persons.

A pose is sampled in a body frame (hip center at the origin, x towards the figure's left, y down,
lengths in units of standing height) and drawn as anti-aliased limbs, a torso polygon and a head
with eyes, nose and ears; `synthetic.py` places the figures in images and writes the annotations.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

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


def rotation(angle: float) -> np.ndarray:
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
    up, pelvis = rotation(lean), rotation(rng.normal(0, deg(4)))
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
    head_up = rotation(lean + rng.normal(0, deg(12)))
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


def random_look(rng: np.random.Generator) -> dict[str, tuple[int, int, int]]:
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


def fixed_point(points) -> list[tuple[int, int]]:
    """Points as cv2's fixed-point integer pairs."""
    return [tuple(q) for q in np.round(np.reshape(points, (-1, 2)) * ONE).astype(int).tolist()]


def draw_person(image: np.ndarray, points: np.ndarray, look: dict, height: float) -> np.ndarray:
    """Draws a figure (the 19 image points of `sample_pose`) onto `image` in place and returns its
    silhouette: a uint8 mask of the same shapes drawn without anti-aliasing."""
    mask = np.zeros(image.shape[:2], np.uint8)
    q = fixed_point(points)
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
            ends = fixed_point(points[[a, b]] + normal * (t / 4 if a % 2 else -t / 4))
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
    torso = np.array(fixed_point(corners), np.int32)
    paint(lambda im, c, lt: cv2.fillPoly(im, [torso], c, lt, SHIFT), look["torso"])
    limbs(4, 8)
    disc(9, 0.028, look["skin"])
    disc(10, 0.028, look["skin"])
    neck, width = fixed_point((points[5] + points[6]) / 2)[0], max(2, round(0.05 * height))
    paint(lambda im, c, lt: cv2.line(im, neck, q[17], c, width, lt, SHIFT), look["skin"])
    disc(3, 0.018, look["ear"])
    disc(4, 0.018, look["ear"])
    up = points[18] - points[17]
    angle, ry = float(np.degrees(np.arctan2(up[0], -up[1]))), float(np.linalg.norm(up))
    axes = (max(1, round(ry * HEAD_RADII[0] / HEAD_RADII[1] * ONE)), max(1, round(ry * ONE)))
    skin = look["skin"]
    paint(lambda im, c, lt: cv2.ellipse(im, q[17], axes, angle, 0, 360, c, -1, lt, SHIFT), skin)
    # A hair cap above the eyes, dark eyes and a reddish nose.
    cap, cap_axes = fixed_point(points[17] + 0.3 * up)[0], (axes[0] + ONE // 2, axes[1] * 3 // 4)
    cv2.ellipse(image, cap, cap_axes, angle, 180, 360, look["hair"], -1, cv2.LINE_AA, SHIFT)
    for j, color in ((1, (30, 30, 30)), (2, (30, 30, 30)), (0, (40, 50, 150))):
        disc(j, 0.011, color, False)
    return mask


def textured_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
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
        a, b = fixed_point(rng.uniform(-0.1, 1.1, (2, 2)) * [w, h])
        kind, thick = rng.integers(3), int(rng.choice([-1, 1, 2, 4, 8]))
        if kind == 0:
            cv2.rectangle(image, a, b, color, thick, cv2.LINE_AA, SHIFT)
        elif kind == 1:
            axes, angle = fixed_point(rng.uniform(0.03, 0.3, 2) * [w, h])[0], rng.uniform(0, 180)
            cv2.ellipse(image, a, axes, angle, 0, 360, color, thick, cv2.LINE_AA, SHIFT)
        else:
            cv2.line(image, a, b, color, max(1, thick), cv2.LINE_AA, SHIFT)
    noise = rng.standard_normal((h, w, 1), np.float32) * np.float32(rng.uniform(0, 12))
    return np.clip(image + noise, 0, 255).astype(np.uint8)

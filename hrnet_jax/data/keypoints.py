"""What a keypoint data set says about its joints: one small spec that every module reads.

Joint names, left/right flip pairs (and the one flip permutation they define), skeleton links for
drawing, OKS sigmas, the upper-body joints of half-body augmentation, and how OKS scales (the GT
segmentation area, or the box area where a set has no segmentations). Presets carry each number's
source:
  COCO = pycocotools / the COCO keypoints task (names, skeleton, kpt_oks_sigmas),
  HRN  = the official HRNet code (flip pairs, upper_body_ids),
  CP   = CrowdPose's crowdposetools and HRN-style loaders (14 joints, sigmas, crowdIndex),
  AIC  = AI Challenger's keypoint_eval.py (sigmas: its delta / 2; OKS scale = box area),
  MMP  = mmpose's dataset_info files (flip pairs, upper bodies of CrowdPose and AIC),
  WB   = COCO-WholeBody (jin-s13/COCO-WholeBody: the 133-joint layout, its evaluation's sigmas).
A custom set is described in its config (`data.custom_keypoints`), names and skeleton falling back
to its annotation file's `categories`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import ml_collections
import numpy as np

from hrnet_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class KeypointSpec:
    """One keypoint set's joint facts; invalid ids or counts fail at construction."""

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]  # 0-based joint pairs drawn as limbs
    sigmas: tuple[float, ...]  # OKS per-joint falloff
    upper_body_ids: tuple[int, ...]  # half-body augmentation's upper half
    use_area: bool = True  # OKS scale: GT `area` (True) or box width x height (False)
    crowd_index: bool = False  # also report AP by the images' crowdIndex (CrowdPose)
    # Where a set stores its joints: (part, annotation field, first joint, end) in joint order;
    # one field "keypoints" for COCO-style sets, five for COCO-WholeBody (reported per part too).
    parts: tuple[tuple[str, str, int, int], ...] = ()
    metric: str = "coco_ap"  # or "pckh" (MPII: head-normalised distances; no OKS sigmas)

    def __post_init__(self):
        k, where = len(self.joint_names), f"keypoint spec {self.name!r}"
        if self.metric not in ("coco_ap", "pckh"):
            raise ConfigError(f"{where}: metric {self.metric!r} is not 'coco_ap' or 'pckh'")
        if self.metric == "coco_ap" and len(self.sigmas) != k:
            raise ConfigError(f"{where}: {len(self.sigmas)} sigmas for {k} joints")
        used = [j for pair in (*self.flip_pairs, *self.skeleton) for j in pair]
        bad = sorted({j for j in (*used, *self.upper_body_ids) if not 0 <= j < k})
        if bad:
            raise ConfigError(f"{where}: joints {bad} are outside 0..{k - 1}")
        if any(len(p) != 2 for p in (*self.flip_pairs, *self.skeleton)):
            raise ConfigError(f"{where}: flip pairs and skeleton links are pairs of joint ids")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def fields(self) -> tuple[tuple[str, str, int, int], ...]:
        """The annotation fields that hold the joints, with their joint ranges."""
        return self.parts or (("body", "keypoints", 0, self.num_joints),)

    @property
    def flip_permutation(self) -> np.ndarray:
        """Joint j of a mirrored person is joint perm[j] of the original."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


def _links(names: tuple[str, ...], pairs) -> tuple[tuple[int, int], ...]:
    return tuple((names.index(a), names.index(b)) for a, b in pairs)


_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# COCO's person category `skeleton`, 0-based.
_COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
# pycocotools' kpt_oks_sigmas.
_COCO_SIGMAS = tuple(
    s / 10 for s in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89)
)  # fmt: skip
COCO = KeypointSpec(
    name="coco",
    joint_names=_COCO_NAMES,
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),  # HRN
    skeleton=_COCO_SKELETON,
    sigmas=_COCO_SIGMAS,
    upper_body_ids=tuple(range(11)),  # HRN upper_body_ids: nose .. wrists
)

_CROWDPOSE_NAMES = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
)  # fmt: skip
# CrowdPose's files repeat COCO's 17-joint skeleton; these are its 14 joints' limbs (MMP).
_CROWDPOSE_LIMBS = (
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"),
    ("right_elbow", "right_wrist"), ("head", "neck"), ("neck", "left_shoulder"),
    ("neck", "right_shoulder"),
)  # fmt: skip
# crowdposetools' sigmas.
_CROWDPOSE_SIGMAS = tuple(
    s / 10 for s in (.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79)
)  # fmt: skip
CROWDPOSE = KeypointSpec(
    name="crowdpose",
    joint_names=_CROWDPOSE_NAMES,  # CP annotation files' category
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),  # CP / MMP
    skeleton=_links(_CROWDPOSE_NAMES, _CROWDPOSE_LIMBS),
    sigmas=_CROWDPOSE_SIGMAS,
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),  # MMP: arms, head, neck
    use_area=False,  # CP evaluates with box areas (its files have no segmentation area)
    crowd_index=True,
)

_AIC_NAMES = (
    "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top",
    "neck",
)  # fmt: skip
# AIC annotation files' category skeleton, 0-based.
_AIC_SKELETON = (
    (2, 1), (1, 0), (0, 13), (13, 3), (3, 4), (4, 5), (8, 7), (7, 6), (6, 9), (9, 10), (10, 11),
    (12, 13), (0, 6), (3, 9),
)  # fmt: skip
# AIC keypoint_eval.py's delta / 2.
_AIC_SIGMAS = (
    0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642,
    0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173,
)  # fmt: skip
AIC = KeypointSpec(
    name="aic",
    joint_names=_AIC_NAMES,  # AIC's joint order (its files: "Right Shoulder", ...)
    flip_pairs=((0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11)),  # MMP
    skeleton=_AIC_SKELETON,
    sigmas=_AIC_SIGMAS,
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),  # MMP
    use_area=False,  # AIC: OKS scale is the box area
)

# OCHuman: COCO's 17 joints on heavily occluded persons; an evaluation-only set.
OCHUMAN = dataclasses.replace(COCO, name="ochuman")


# WB: the official evaluation's (myeval_wholebody.py) sigmas of the foot, the face and each hand.
_WB_FOOT = (
    0.068, 0.066, 0.066, 0.092, 0.094, 0.094,
)  # fmt: skip
_WB_FACE = (
    0.042, 0.043, 0.044, 0.043, 0.04, 0.035, 0.031, 0.025, 0.02, 0.023, 0.029, 0.032, 0.037,
    0.038, 0.043, 0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013,
    0.015, 0.009, 0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.01, 0.017, 0.011, 0.009,
    0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.01, 0.034, 0.008, 0.008, 0.009, 0.008,
    0.008, 0.007, 0.01, 0.008, 0.009, 0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008,
    0.008, 0.01, 0.008,
)  # fmt: skip
_WB_HAND = (
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026,
    0.017, 0.021, 0.021, 0.032, 0.02, 0.019, 0.022, 0.031,
)  # fmt: skip


def _wholebody() -> KeypointSpec:
    """COCO-WholeBody's 133 joints: COCO's 17, 6 foot, 68 face (iBUG order), 21 per hand
    (WB = jin-s13/COCO-WholeBody, its evaluation/myeval_wholebody.py sigmas; MMP flip pairs)."""
    fingers = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")
    hand = ("hand_root", *(f"{f}{i}" for f in fingers for i in range(1, 5)))
    feet = ("big_toe", "small_toe", "heel")
    names = (
        *_COCO_NAMES,
        *(f"left_{n}" for n in feet),
        *(f"right_{n}" for n in feet),
        *(f"face-{i}" for i in range(68)),
        *(f"left_{n}" for n in hand),
        *(f"right_{n}" for n in hand),
    )
    # The 68-point face mirrors: jaw i <-> 16 - i, brows, nostrils, eyes, lips (iBUG).
    face_pairs = (
        *((i, 16 - i) for i in range(8)), *((17 + i, 26 - i) for i in range(5)),
        (31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
        (48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67),
    )  # fmt: skip
    flip_pairs = (
        *COCO.flip_pairs,
        (17, 20), (18, 21), (19, 22),
        *((23 + a, 23 + b) for a, b in face_pairs),
        *((91 + i, 112 + i) for i in range(21)),
    )  # fmt: skip
    limbs = [("left_ankle", "left_big_toe"), ("left_ankle", "left_small_toe"), ("left_ankle", "left_heel"),
             ("right_ankle", "right_big_toe"), ("right_ankle", "right_small_toe"), ("right_ankle", "right_heel")]  # fmt: skip
    for side in ("left", "right"):
        limbs.append((f"{side}_wrist", f"{side}_hand_root"))
        for f in fingers:
            chain = (f"{side}_hand_root", *(f"{side}_{f}{i}" for i in range(1, 5)))
            limbs += zip(chain[:-1], chain[1:], strict=True)
    sigmas = (*COCO.sigmas, *_WB_FOOT, *_WB_FACE, *_WB_HAND, *_WB_HAND)
    return KeypointSpec(
        name="coco_wholebody",
        joint_names=names,
        flip_pairs=flip_pairs,
        skeleton=(*COCO.skeleton, *_links(names, limbs)),
        sigmas=sigmas,
        upper_body_ids=(*COCO.upper_body_ids, *range(23, 133)),  # and the face and hands
        parts=(
            ("body", "keypoints", 0, 17),
            ("foot", "foot_kpts", 17, 23),
            ("face", "face_kpts", 23, 91),
            ("lefthand", "lefthand_kpts", 91, 112),
            ("righthand", "righthand_kpts", 112, 133),
        ),  # fmt: skip
    )


COCO_WHOLEBODY = _wholebody()

_MPII_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis",
    "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder",
    "left_shoulder", "left_elbow", "left_wrist",
)  # fmt: skip
MPII = KeypointSpec(
    name="mpii",
    joint_names=_MPII_NAMES,  # MPII's joint ids 0..15
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),  # HRN mpii.py
    skeleton=(
        (0, 1),
        (1, 2),
        (2, 6),
        (6, 3),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (8, 9),
        (7, 12),
        (12, 11),
        (11, 10),
        (7, 13),
        (13, 14),
        (14, 15),
    ),  # fmt: skip
    sigmas=(),  # evaluated by PCKh, not OKS
    upper_body_ids=(7, 8, 9, 10, 11, 12, 13, 14, 15),  # HRN mpii.py
    metric="pckh",
)

PRESETS = {spec.name: spec for spec in (COCO, CROWDPOSE, AIC, OCHUMAN, COCO_WHOLEBODY, MPII)}


def from_config(config: ml_collections.ConfigDict) -> KeypointSpec:
    """The spec `data.keypoints` names: a preset, or "custom" (`data.custom_keypoints`)."""
    name = config.data.keypoints
    if name in PRESETS:
        return PRESETS[name]
    if name != "custom":
        raise ConfigError(
            f"data.keypoints is {name!r}; expected one of {', '.join(PRESETS)} or 'custom'"
        )
    custom = config.data.custom_keypoints
    names, skeleton = tuple(custom.joint_names), tuple(tuple(p) for p in custom.skeleton)
    if not names:
        names, skeleton = _from_categories(config, skeleton)
    if len(custom.sigmas) != len(names):
        raise ConfigError(
            f"data.custom_keypoints.sigmas has {len(custom.sigmas)} values for {len(names)} joints: "
            "give each joint its OKS sigma (COCO's range from 0.025 for eyes to 0.107 for hips)"
        )
    return KeypointSpec(
        name="custom (data.custom_keypoints)",
        joint_names=names,
        flip_pairs=tuple(tuple(p) for p in custom.flip_pairs),
        skeleton=skeleton,
        sigmas=tuple(custom.sigmas),
        upper_body_ids=tuple(custom.upper_body_ids),
        use_area=custom.use_area,
    )


def _from_categories(config, skeleton) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    """Names (and, if the config has none, the 1-based skeleton) of the train annotation file's
    person category."""
    root = pathlib.Path(config.data.root)
    path = root / config.data.annotation_file.format(split=config.data.train_split)
    if not path.is_file():
        raise ConfigError(
            f"data.custom_keypoints.joint_names is empty and {path} (whose categories would name "
            "the joints) does not exist"
        )
    person = _person_category(str(path), path.stat().st_mtime_ns)
    if person is None:
        raise ConfigError(
            f"{path} has no category with keypoints: set data.custom_keypoints.joint_names"
        )
    names = tuple(person["keypoints"])
    if not skeleton:
        skeleton = tuple((a - 1, b - 1) for a, b in person.get("skeleton", []))
    return names, skeleton


@functools.lru_cache(maxsize=4)
def _person_category(path: str, mtime_ns: int) -> dict | None:
    """The first category with keypoint names of an annotation file (parsed once per version:
    every module that asks for the spec would otherwise parse a COCO-size json again)."""
    del mtime_ns  # part of the cache key only
    categories = json.loads(pathlib.Path(path).read_text()).get("categories", [])
    return next((c for c in categories if c.get("keypoints")), None)

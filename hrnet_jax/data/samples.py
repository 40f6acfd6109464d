"""A person-instance record → a network sample: decoded, augmented, cropped image and heatmap targets."""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any

import cv2
import ml_collections
import ml_dtypes
import numpy as np
import simplejpeg

from hrnet_jax.data import keypoints, transforms
from hrnet_jax.data.heatmaps import PIXEL_STD, HeatmapCodec
from hrnet_jax.errors import UserError

REDUCTIONS = (8, 4, 2)  # libjpeg-turbo's power-of-two DCT scalings


class ImageError(UserError, ValueError):
    """An image that cannot be read; the message names the file and the annotation."""


@dataclasses.dataclass(frozen=True)
class Augment:
    """The reference's training augmentations (JointsDataset.__getitem__), in its order."""

    scale_factor: float
    rotation_factor: float
    rotation_prob: float
    flip: bool
    flip_prob: float
    half_body_prob: float
    num_joints_half_body: int
    half_body_upper_prob: float
    half_body_padding: float
    upper_body_ids: tuple[int, ...]

    @classmethod
    def from_config(cls, augment: ml_collections.ConfigDict, upper_body_ids) -> Augment:
        """`config.augment`, with the keypoint set's upper-body joints."""
        fields = {f.name: augment[f.name] for f in dataclasses.fields(cls) if f.name in augment}
        return cls(**fields, upper_body_ids=tuple(upper_body_ids))


def read_image(record: dict[str, Any], max_reduction: float = 1.0) -> tuple[np.ndarray, int]:
    """Decodes a record's image to RGBX uint8, at 1/2, 1/4 or 1/8 size when `max_reduction` allows.

    Returns the image and its reduction factor. JPEGs go through libjpeg-turbo (simplejpeg), which
    scales in the DCT and reports truncated or corrupt data; other formats through OpenCV. The fourth
    (padding) channel doubles the speed of OpenCV's bilinear warp, which has a SIMD path for 4
    channels but not for 3; `warp_rgb` drops it after the warp.
    """
    where = f"{record['image_file']} (image {record['image_id']}, annotation {record['ann_id']})"
    data = record.get("image_bytes")
    if data is None:
        try:
            data = pathlib.Path(record["image_file"]).read_bytes()
        except OSError as e:
            raise ImageError(f"cannot read {where}: {e.strerror or e}") from e
    h, w = (int(v) for v in record["image_size"])
    factor = 1
    if data[:2] == b"\xff\xd8":
        factor = next((f for f in REDUCTIONS if f <= max_reduction), 1)
        try:
            image = simplejpeg.decode_jpeg(
                data, colorspace="rgbx", min_height=-(-h // factor), min_width=-(-w // factor)
            )
        except ValueError as e:
            raise ImageError(f"corrupt or truncated JPEG {where}: {e}") from e
    else:
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        if image is None:
            raise ImageError(f"not a readable image: {where}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGBA)
    if image.shape[:2] != (-(-h // factor), -(-w // factor)):
        raise ImageError(
            f"{where} is {image.shape[0] * factor}x{image.shape[1] * factor} (h x w) but its "
            f"annotation says {h}x{w}"
        )
    return image, factor


def warp_rgb(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """The bilinear crop of an RGBX image from `read_image`, as RGB uint8 (h, w, 3)."""
    return cv2.cvtColor(transforms.warp(image, matrix, output_size), cv2.COLOR_RGBA2RGB)


def _reduced_to_full(factor: int) -> np.ndarray:
    """Pixel i of an image decoded at 1/factor covers source pixels [f i, f i + f): center f i + (f-1)/2."""
    offset = (factor - 1) / 2
    return np.array([[factor, 0.0, offset], [0.0, factor, offset]])


@dataclasses.dataclass(frozen=True)
class TopDownSampler:
    """Turns person-instance records into fixed-size samples (picklable for grain workers)."""

    codec: HeatmapCodec
    flip_perm: tuple[int, ...]  # the keypoint set's (KeypointSpec.flip_permutation)
    augment: Augment | None = None  # None: evaluation (no randomness)
    reduced_decode: bool = True
    with_targets: bool = True
    strict: bool = True
    target_dtype: str = "float32"

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, train: bool) -> TopDownSampler:
        """The sampler of training (augmentations, targets) or of evaluation and prediction."""
        spec = keypoints.from_config(config)
        return cls(
            codec=HeatmapCodec.from_config(config),
            flip_perm=tuple(int(j) for j in spec.flip_permutation),
            augment=Augment.from_config(config.augment, spec.upper_body_ids) if train else None,
            reduced_decode=config.data.reduced_decode,
            with_targets=train,
            strict=config.data.strict,
            target_dtype=config.data.target_dtype,
        )

    def __call__(self, record: dict[str, Any], rng: np.random.Generator | None = None) -> dict:
        try:
            return self._sample(record, rng)
        except ImageError as e:
            if self.strict:
                raise
            logging.warning("skipping a record (strict=False): %s", e)
            return self.placeholder(record)

    def _sample(self, record: dict[str, Any], rng: np.random.Generator | None) -> dict:
        input_size = self.codec.input_size
        center = np.array(record["center"], np.float64)
        scale = np.array(record["scale"], np.float64)
        joints = np.array(record["joints"], np.float64)
        vis = np.array(record["joints_vis"], np.float32)
        width = int(record["image_size"][1])
        rotation, flip = 0.0, False
        if self.augment is not None:
            center, scale, rotation, flip = self._augment(center, scale, joints, vis, rng)
        if flip:
            joints, vis = transforms.flip_joints(joints, vis, width, self.flip_perm)
            center[0] = width - center[0] - 1
        crop = self.crop_matrix(center, scale, rotation)
        # Source pixels per output pixel: decode at a reduced size when that many are averaged anyway.
        max_reduction = scale[0] * PIXEL_STD / input_size[1] if self.reduced_decode else 1.0
        image, factor = read_image(record, max_reduction)
        image_matrix = transforms.compose(crop, transforms.hflip_matrix(width)) if flip else crop
        if factor > 1:
            image_matrix = transforms.compose(image_matrix, _reduced_to_full(factor))
        sample = {
            "image": warp_rgb(image, image_matrix, input_size),
            **self._meta(record, center, scale, rotation, valid=True),
        }
        if self.with_targets:
            joints = np.where(vis[:, None] > 0, transforms.transform_points(joints, crop), 0.0)
            heatmaps, weight = self.codec.encode(joints, vis)
            target_dtype = ml_dtypes.finfo(self.target_dtype).dtype
            sample["heatmaps"] = heatmaps.astype(target_dtype, copy=False)
            sample["target_weight"] = weight
        return sample

    def crop_matrix(self, center: np.ndarray, scale: np.ndarray, rotation: float) -> np.ndarray:
        """The 2x3 image → input-pixel matrix of a crop: the reference's, or UDP's with the codec's
        `udp` (the codec's targets and its way back assume the one that matches)."""
        return transforms.affine_matrix(
            center, scale, rotation, self.codec.input_size, udp=self.codec.udp
        )

    def _augment(self, center, scale, joints, vis, rng: np.random.Generator):
        aug = self.augment
        input_h, input_w = self.codec.input_size
        if np.sum(vis) > aug.num_joints_half_body and rng.random() < aug.half_body_prob:
            half = transforms.half_body(
                joints,
                vis,
                rng,
                upper_body_ids=aug.upper_body_ids,
                upper_prob=aug.half_body_upper_prob,
                aspect_ratio=input_w / input_h,
                padding=aug.half_body_padding,
            )
            if half is not None:
                center, scale = (np.asarray(v, np.float64) for v in half)
        zoom, rotation = transforms.random_scale_rotation(
            rng, aug.scale_factor, aug.rotation_factor, aug.rotation_prob
        )
        flip = aug.flip and rng.random() < aug.flip_prob
        return center, scale * zoom, rotation, flip

    def _meta(self, record, center, scale, rotation, valid: bool) -> dict:
        return {
            "center": np.asarray(center, np.float32),
            "scale": np.asarray(scale, np.float32),
            "rotation": np.float32(rotation),
            "image_id": np.int64(record["image_id"]),
            "score": np.float32(record["score"]),
            "valid": np.bool_(valid),
        }

    def placeholder(self, record: dict[str, Any]) -> dict:
        """An all-zero sample flagged `valid=False`: stands in for a skipped or padding record."""
        h, w = self.codec.input_size
        sample = {
            "image": np.zeros((h, w, 3), np.uint8),
            **self._meta(record, record["center"], record["scale"], 0.0, valid=False),
        }
        if self.with_targets:
            hh, hw = self.codec.heatmap_size
            k = len(record["joints_vis"])
            sample["heatmaps"] = np.zeros((hh, hw, k), ml_dtypes.finfo(self.target_dtype).dtype)
            sample["target_weight"] = np.zeros(k, np.float32)
        return sample

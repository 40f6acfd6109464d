"""UDP (Huang et al. 2020, as mmpose does it): the crop, the codec, the flip test, against hand
computations and an independent reference of mmpose's UDPHeatmap."""

import dataclasses

import cv2
import jax.numpy as jnp
import numpy as np
import pytest

from hrnet_jax import coco_metric, config_lib, nms, predictor
from hrnet_jax.data import keypoints, samples, sources, transforms
from hrnet_jax.data.heatmaps import HeatmapCodec

UDP_CONFIGS = ("configs/w32_256x192_udp.py", "configs/w32_384x288_udp.py")


def _codec(config_file: str) -> HeatmapCodec:
    return HeatmapCodec.from_config(config_lib.load_config(config_file))


# --- the crop ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rotation, expected",
    [
        # box 300 x 400 pixels about (100, 80) onto 192 x 256: zooms 191/300 and 255/400, and the
        # center to (95.5, 127.5).
        (0.0, [[191 / 300, 0, 95.5 - 100 * 191 / 300], [0, 255 / 400, 127.5 - 80 * 255 / 400]]),
        # Turned 90 degrees: output x runs along image y, output y against image x.
        (90.0, [[0, 191 / 300, 95.5 - 80 * 191 / 300], [-255 / 400, 0, 127.5 + 100 * 255 / 400]]),
    ],
)
def test_udp_crop_equals_the_hand_computed_matrix(rotation, expected):
    matrix = transforms.affine_matrix([100, 80], [1.5, 2.0], rotation, (256, 192), udp=True)
    np.testing.assert_allclose(matrix, expected, atol=1e-12)


@pytest.mark.parametrize("rotation", [0.0, 30.0, -135.0])
def test_udp_crop_puts_the_box_on_the_outer_pixel_centres_and_inverts(rotation):
    center, scale, (h, w) = np.array([320.5, 211.0]), np.array([0.9, 1.2]), (256, 192)
    box_w, box_h = scale * 200
    theta = np.deg2rad(rotation)
    along_x = np.array([np.cos(theta), np.sin(theta)])  # the crop's axes in the image (the
    along_y = np.array([-np.sin(theta), np.cos(theta)])  # library's rotation sense)
    image_points = [center, center + along_x * box_w / 2, center + along_y * box_h / 2]
    crop_points = [[(w - 1) / 2, (h - 1) / 2], [w - 1, (h - 1) / 2], [(w - 1) / 2, h - 1]]
    udp = transforms.affine_matrix(center, scale, rotation, (h, w), udp=True)
    np.testing.assert_allclose(
        transforms.transform_points(np.array(image_points), udp), crop_points
    )
    # The reference's crop turns the same way but puts the box's edges on the pixel edges 0 and w.
    reference = transforms.affine_matrix(center, scale, rotation, (h, w))
    np.testing.assert_allclose(
        transforms.transform_points(center + along_x * box_w / 2, reference), [w, h / 2]
    )

    inverse = transforms.affine_matrix(center, scale, rotation, (h, w), inverse=True, udp=True)
    crop = np.random.default_rng(0).uniform([-20, -20], [w + 20, h + 20], (50, 2))
    by_hand = (
        center
        + (crop[:, :1] - (w - 1) / 2) * box_w / (w - 1) * along_x
        + (crop[:, 1:] - (h - 1) / 2) * box_h / (h - 1) * along_y
    )
    np.testing.assert_allclose(transforms.transform_points(crop, inverse), by_hand, atol=1e-4)


# --- the targets ------------------------------------------------------------------------------


def _mmpose_udp_gaussian(joints, visible, input_size, heatmap_size, sigma):
    """mmpose's UDPHeatmap 'gaussian' encoding from its formula, one joint at a time: joints scaled
    by (heatmap - 1) / (input - 1); a (6 sigma + 1)^2 window about the rounded pixel holding the
    Gaussian at the exact position, pasted where it overlaps the map; weight 0 where it does not."""
    (ih, iw), (hh, hw) = input_size, heatmap_size
    radius = int(3 * sigma)
    heatmaps = np.zeros((len(joints), hh, hw))
    weights = np.asarray(visible, np.float32).copy()
    for k, (x, y) in enumerate(joints):
        if visible[k] < 0.5:
            continue
        mx, my = x * (hw - 1) / (iw - 1), y * (hh - 1) / (ih - 1)
        px, py = int(mx + 0.5), int(my + 0.5)
        left, top, right, bottom = px - radius, py - radius, px + radius + 1, py + radius + 1
        if left >= hw or top >= hh or right < 0 or bottom < 0:
            weights[k] = 0
            continue
        for row in range(max(top, 0), min(bottom, hh)):
            for col in range(max(left, 0), min(right, hw)):
                d2 = (col - mx) ** 2 + (row - my) ** 2
                heatmaps[k, row, col] = np.exp(-d2 / (2 * sigma**2))
    return heatmaps.transpose(1, 2, 0), weights


@pytest.mark.parametrize("config_file", UDP_CONFIGS)
def test_udp_targets_equal_mmposes_udp_heatmap(config_file):
    codec = _codec(config_file)
    h, w = codec.input_size
    joints = np.array(
        [
            [100.3, 120.7],  # inside
            [0.0, 0.0],  # the corner pixels
            [w - 1, h - 1],
            [-5.2, 60.1],  # past the left edge, the window still on the map
            [-60.0, 30.0],  # far past it: no window on the map
            [w + 6.4, 100.9],  # past the right edge
            [w + 80.0, 10.0],
            [50.0, h + 3.3],  # past the bottom
            [77.7, -90.0],  # far past the top
            [40.0, 40.0],  # invisible
        ]
    )
    visible = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0], np.float32)
    heatmaps, weight = codec.encode(joints, visible)
    expected, expected_weight = _mmpose_udp_gaussian(
        joints, visible, codec.input_size, codec.heatmap_size, codec.sigma
    )
    np.testing.assert_array_equal(weight, expected_weight)
    np.testing.assert_array_equal(weight, [1, 1, 1, 1, 0, 1, 0, 1, 0, 0])
    np.testing.assert_allclose(heatmaps, expected, atol=1e-6)


def _round_trip_errors(codec, center, scale, image_joints) -> np.ndarray:
    """Image joints → crop → targets → decoded → image again: the errors in heatmap pixels."""
    crop = transforms.affine_matrix(center, scale, 0.0, codec.input_size, udp=codec.udp)
    joints = transforms.transform_points(image_joints, crop)
    errors = []
    for chunk in np.array_split(np.arange(len(joints)), len(joints) // 17):
        heatmaps, _ = codec.encode(joints[chunk], np.ones(len(chunk)))
        back = codec.decode_to_image(heatmaps[None], center[None], scale[None])[0, :, :2]
        errors.append(back - image_joints[chunk])
    image_pixels_per_cell = scale * 200 / np.array(codec.heatmap_size[::-1])
    return np.linalg.norm(np.concatenate(errors) / image_pixels_per_cell, axis=-1)


@pytest.mark.parametrize(
    "config_file, plain_file",
    [(UDP_CONFIGS[0], "configs/w32_256x192.py"), (UDP_CONFIGS[1], "configs/w32_384x288.py")],
)
def test_udp_round_trip_recovers_sub_pixel_joints_and_beats_the_plain_codec(
    config_file, plain_file
):
    center, scale = np.array([310.0, 205.5]), np.array([1.2, 1.6])
    box = scale * 200
    # Sub-pixel joints away from the map's edge (where every blur-based decoding is biased).
    rng = np.random.default_rng(0)
    image_joints = center - box / 2 + rng.uniform(0.15, 0.85, (170, 2)) * box
    udp = _round_trip_errors(_codec(config_file), center, scale, image_joints)
    plain = _round_trip_errors(_codec(plain_file), center, scale, image_joints)
    assert udp.max() < 0.05
    # The plain targets sit on the rounded pixel: up to ~0.7 pixel lost, ~0.38 on average.
    assert plain.max() > 0.6 and plain.mean() > 0.3
    assert udp.mean() < plain.mean() / 100


def _mmpose_dark_udp(heatmaps, kernel):
    """mmpose's UDP decoding from its formulas, one heatmap at a time: the argmax; a Gaussian blur
    (zero border) rescaled to the peak; the log of it clipped to [1e-3, 50], its border repeated;
    then the peak minus (H + eps I)^-1 g from 1-pixel differences."""
    b, h, w, k = heatmaps.shape
    coords = np.zeros((b, k, 2))
    pad = kernel // 2
    for i, j in np.ndindex(b, k):
        hm = heatmaps[i, :, :, j]
        y, x = np.unravel_index(np.argmax(hm), hm.shape)
        blurred = cv2.GaussianBlur(np.pad(hm, pad), (kernel, kernel), 0)[pad:-pad, pad:-pad]
        blurred *= hm.max() / blurred.max()
        f = np.pad(np.log(np.clip(blurred, 1e-3, 50)), 1, mode="edge")
        y, x = y + 1, x + 1  # in the padded map
        gradient = 0.5 * np.array([f[y, x + 1] - f[y, x - 1], f[y + 1, x] - f[y - 1, x]])
        dxx = f[y, x + 1] - 2 * f[y, x] + f[y, x - 1]
        dyy = f[y + 1, x] - 2 * f[y, x] + f[y - 1, x]
        dxy = 0.5 * (
            f[y + 1, x + 1] - f[y, x + 1] - f[y + 1, x] + 2 * f[y, x]
            - f[y, x - 1] - f[y - 1, x] + f[y - 1, x - 1]
        )  # fmt: skip
        hessian = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
        coords[i, j] = [x - 1, y - 1] - np.linalg.inv(hessian) @ gradient
    return coords


def test_udp_decoding_equals_mmposes_refine_keypoints_dark_udp():
    """On tilted, elongated bumps (so the mixed derivative counts), some weak enough for the clip
    at 1e-3 to count, borders and corners included."""
    rng = np.random.default_rng(3)
    h, w, k = 24, 18, 9
    yy, xx = np.mgrid[0:h, 0:w]
    heatmaps = np.zeros((2, h, w, k), np.float32)
    for i, j in np.ndindex(2, k):
        cx, cy = rng.uniform([-1, -1], [w, h]) if j else (0.3, h - 1.2)  # one in a corner
        angle, (sx, sy) = rng.uniform(0, np.pi), rng.uniform(1.5, 3.5, 2)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        peak = 10 ** rng.uniform(-3.5, 0)
        heatmaps[i, :, :, j] = peak * np.exp(-(u**2) / (2 * sx**2) - v**2 / (2 * sy**2))
    codec = HeatmapCodec((96, 72), (h, w), 2.0, decoding="dark_udp", blur_kernel_size=11, udp=True)
    coords, scores = codec.decode(heatmaps)
    np.testing.assert_allclose(coords, _mmpose_dark_udp(heatmaps, 11), atol=1e-5)
    np.testing.assert_allclose(scores, heatmaps.max(axis=(1, 2)))
    # The way back is mmpose's too: UDPHeatmap.decode scales by input_size / (heatmap - 1), and the
    # head maps input pixels to the box: x / input_size * box + center - box / 2.
    center, scale = np.array([[50.0, 60.0]]), np.array([[0.72, 0.96]])
    input_size, box = np.array([72, 96]), scale * 200
    input_xy = coords[0] / (np.array([w, h]) - 1) * input_size
    expected = input_xy / input_size * box + center - box / 2
    np.testing.assert_allclose(codec.to_image(coords[:1], center, scale)[0], expected, atol=1e-9)


# --- the sampler: one crop for images, targets and the way back ---------------------------------


def _record(image: np.ndarray, center, joints) -> dict:
    h, w = image.shape[:2]
    return {
        "image_file": "texture.png",
        "image_id": 1,
        "ann_id": 1,
        "image_bytes": cv2.imencode(".png", image)[1].tobytes(),
        "image_size": (h, w),
        "center": center,
        "scale": (0.6, 0.8),  # a 120 x 160 box, the 3:4 of the input
        "joints": joints,
        "joints_vis": np.ones(len(joints), np.float32),
        "score": 1.0,
    }


def _texture(h: int, w: int) -> np.ndarray:
    noise = np.random.default_rng(0).random((h, w, 3)) * 255
    return cv2.GaussianBlur(noise, (0, 0), 2).astype(np.uint8)


@pytest.mark.parametrize("config_file", UDP_CONFIGS)
def test_sampler_targets_decode_back_to_the_image_joints(config_file):
    codec = _codec(config_file)
    sampler = samples.TopDownSampler(codec, keypoints.COCO.flip_permutation)
    rng = np.random.default_rng(1)
    joints = np.array([150.0, 110.0]) + rng.uniform(-45, 45, (17, 2))
    record = _record(_texture(220, 300), (150.0, 110.0), joints)
    sample = sampler(record)
    decoded = codec.decode_to_image(
        sample["heatmaps"][None], sample["center"][None], sample["scale"][None]
    )
    cell = 120 / codec.heatmap_size[1]  # image pixels per heatmap pixel
    assert np.abs(decoded[0, :, :2] - joints).max() / cell < 0.05


@pytest.mark.parametrize("udp", [True, False])
def test_udp_crop_of_the_mirrored_image_is_the_mirrored_crop(udp):
    """What makes the flip test's shift unnecessary: with UDP, cropping the mirrored image about the
    mirrored center gives the crop mirrored; the reference's crop is one pixel off."""
    codec = HeatmapCodec((64, 48), (16, 12), 2.0, udp=udp)
    sampler = samples.TopDownSampler(codec, keypoints.COCO.flip_permutation, with_targets=False)
    image = _texture(220, 300)
    joints = np.zeros((17, 2))
    plain = sampler(_record(image, (131.3, 104.6), joints))["image"].astype(int)
    mirrored = sampler(_record(image[:, ::-1], (300 - 1 - 131.3, 104.6), joints))["image"]
    difference = np.abs(mirrored[:, ::-1].astype(int) - plain)
    if udp:
        assert difference.max() <= 1  # bilinear weights rounded to OpenCV's fixed point
    else:
        assert difference.mean() > 3 * np.abs(np.diff(plain, axis=1)).mean() / 4


# --- the flip test ----------------------------------------------------------------------------


@pytest.mark.parametrize("config_file", UDP_CONFIGS)
def test_flip_test_of_a_flip_equivariant_model_needs_no_shift_with_udp(config_file):
    """A model that predicts the codec's targets of the joints it sees: with UDP the mirror image's
    targets are the targets mirrored (joints swapped), so the merged flip test equals the plain
    prediction with the shift off, and the shift moves it half a heatmap pixel right."""
    codec = _codec(config_file)
    h, w = codec.input_size
    perm = keypoints.COCO.flip_permutation
    rng = np.random.default_rng(2)
    joints = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h], (17, 2))
    mirrored_joints, _ = transforms.flip_joints(joints, np.ones(17), w, perm)
    image = rng.random((1, h, w, 3)).astype(np.float32)
    targets = codec.encode(joints, np.ones(17))[0]
    mirrored_targets = codec.encode(mirrored_joints, np.ones(17))[0]

    def model(x):  # knows this one image and its mirror image
        is_mirrored = jnp.all(x == image[:, :, ::-1], axis=(1, 2, 3))[:, None, None, None]
        return jnp.where(is_mirrored, mirrored_targets, targets)

    merged = predictor.heatmaps_with_flip_test(model, jnp.asarray(image), perm, shift=False)
    np.testing.assert_allclose(merged[0], targets, atol=1e-6)
    shifted = np.asarray(predictor.heatmaps_with_flip_test(model, image, perm, shift=True))
    assert np.abs(shifted[0] - targets).max() > 0.1
    moved = codec.decode(shifted)[0] - codec.decode(targets[None])[0]
    np.testing.assert_allclose(moved[0, :, 0], 0.5, atol=0.1)
    np.testing.assert_allclose(moved[0, :, 1], 0.0, atol=0.01)


@pytest.mark.parametrize(
    "udp, shift, expected_dx",
    [
        (True, False, 0.0),
        # The reference's stride: input pixel x is heatmap pixel x / 4, its mirror (w - 1 - x) / 4,
        # so the heatmap mirrored back is 3/4 pixel left of the joint; the shift overshoots by 1/4.
        (False, False, -0.75),
        (False, True, 0.25),
    ],
)
def test_flipped_back_heatmaps_sit_on_the_joints_only_with_udp(udp, shift, expected_dx):
    """The mirror image's targets, mirrored back by the flip test (the plain image's prediction is
    zero here, so the merged heatmaps are half of them), decoded against the joints."""
    if udp:
        codec = _codec(UDP_CONFIGS[0])
    else:  # DARK's exact-centre targets, so that rounding does not blur the comparison
        codec = HeatmapCodec((256, 192), (64, 48), 2.0, unbiased=True, decoding="dark")
    h, w = codec.input_size
    perm = keypoints.COCO.flip_permutation
    rng = np.random.default_rng(4)
    joints = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h], (17, 2))
    mirrored_joints, _ = transforms.flip_joints(joints, np.ones(17), w, perm)
    image = rng.random((1, h, w, 3)).astype(np.float32)
    mirrored_targets = codec.encode(mirrored_joints, np.ones(17))[0]

    def model(x):
        is_mirrored = jnp.all(x == image[:, :, ::-1], axis=(1, 2, 3))[:, None, None, None]
        return jnp.where(is_mirrored, mirrored_targets, 0.0)

    merged = predictor.heatmaps_with_flip_test(model, jnp.asarray(image), perm, shift=shift)
    coords, _ = codec.decode(2 * np.asarray(merged))
    offset = coords[0] - joints / codec.stride
    np.testing.assert_allclose(offset[:, 0], expected_dx, atol=0.02)
    np.testing.assert_allclose(offset[:, 1], 0.0, atol=0.02)


# --- end to end on real persons ---------------------------------------------------------------


def test_coco_mini_ap_through_the_udp_path_is_at_least_the_plain_paths(coco_mini):
    """coco_mini's 12 real persons through everything a prediction goes through (crop, targets,
    decoding, back to the image, rescoring, OKS NMS, COCOeval), with each codec's own targets in
    place of a perfect network. (Training runs of the demo config, by hand: docs/udp.md.)"""
    aps = {}
    for name in ("w32_256x192", "w32_256x192_udp"):
        config = config_lib.load_config(f"configs/{name}.py")
        config.data.root = str(coco_mini)
        config.data.annotation_file = "annotations/person_keypoints_mini.json"
        config.data.image_dir = "images"
        config.data.train_split = config.data.val_split = "mini"
        config = config_lib.check(config)
        instances, _ = sources.load_instances(config, "mini", train=False)
        sampler = dataclasses.replace(
            samples.TopDownSampler.from_config(config, train=False), with_targets=True
        )
        batch = [sampler(instances[i]) for i in range(len(instances))]
        stacked = {k: np.stack([s[k] for s in batch]) for k in ("heatmaps", "center", "scale")}
        preds = {
            "keypoints": sampler.codec.decode_to_image(
                stacked["heatmaps"], stacked["center"], stacked["scale"]
            ),
            **{
                k: np.stack([s[k] for s in batch]) for k in ("center", "scale", "score", "image_id")
            },
        }
        spec = keypoints.from_config(config)
        results = nms.rescore_and_nms(preds, config.eval, spec.sigmas)
        gt = coco_mini / config.data.annotation_file
        aps[name] = coco_metric.keypoint_ap(gt, results, spec)["AP"]
    assert aps["w32_256x192"] > 0.9, aps
    assert aps["w32_256x192_udp"] >= aps["w32_256x192"] - 0.01, aps

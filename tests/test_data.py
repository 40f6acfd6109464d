"""COCO loading, crop geometry, augmentation and heatmap targets, against the recipe's formulas."""

import json
import pathlib
import shutil

import cv2
import numpy as np
import pytest
import simplejpeg

from hrnet_jax.data import coco, keypoints, pipeline, transforms
from hrnet_jax.data.heatmaps import HeatmapCodec
from hrnet_jax.data.samples import Augment, ImageError, TopDownSampler, read_image, warp_rgb

ANNOTATIONS = "annotations/person_keypoints_mini.json"
DETECTIONS = "person_detection_results/COCO_mini_detections_AP_H_56_person.json"
FLIP_PAIRS = keypoints.COCO.flip_pairs
FLIP_PERM = tuple(int(j) for j in keypoints.COCO.flip_permutation)


def _gt(root, **kw):
    return coco.gt_instances(root / ANNOTATIONS, root / "images", aspect_ratio=0.75, **kw)


def reference_affine(center, scale, rot, output_wh):
    """get_affine_transform as the recipe describes it: three point pairs and cv2.getAffineTransform."""
    src_w = scale[0] * 200.0
    dst_w, dst_h = output_wh
    rad = np.deg2rad(rot)
    src_dir = np.array([src_w * -0.5 * -np.sin(rad), src_w * -0.5 * np.cos(rad)])
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0], src[1] = center, center + src_dir
    dst[0], dst[1] = [dst_w * 0.5, dst_h * 0.5], [dst_w * 0.5, dst_h * 0.5 - dst_w * 0.5]
    for pts in (src, dst):
        d = pts[0] - pts[1]
        pts[2] = pts[1] + [-d[1], d[0]]
    return cv2.getAffineTransform(src, dst)


def reference_target(joints, vis, sigma, heatmap_wh, stride):
    """generate_target as the recipe describes it: a (6 sigma + 1)^2 Gaussian pasted per joint."""
    w, h = heatmap_wh
    tmp = sigma * 3
    target = np.zeros((len(joints), h, w), np.float32)
    weight = (np.asarray(vis) > 0).astype(np.float32)
    for k, (x, y) in enumerate(joints):
        mu_x, mu_y = int(x / stride + 0.5), int(y / stride + 0.5)
        ul = [int(mu_x - tmp), int(mu_y - tmp)]
        br = [int(mu_x + tmp + 1), int(mu_y + tmp + 1)]
        if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
            weight[k] = 0
            continue
        size = 2 * tmp + 1
        g1 = np.arange(0, size, 1, np.float32)
        g = np.exp(-((g1 - size // 2) ** 2 + (g1[:, None] - size // 2) ** 2) / (2 * sigma**2))
        gx = max(0, -ul[0]), min(br[0], w) - ul[0]
        gy = max(0, -ul[1]), min(br[1], h) - ul[1]
        ix = max(0, ul[0]), min(br[0], w)
        iy = max(0, ul[1]), min(br[1], h)
        if weight[k] > 0.5:
            target[k, iy[0] : iy[1], ix[0] : ix[1]] = g[gy[0] : gy[1], gx[0] : gx[1]]
    return target.transpose(1, 2, 0), weight


def test_train_instances_are_the_12_persons_with_keypoints(coco_mini):
    instances, report = _gt(coco_mini)
    assert len(instances) == 12
    assert report.left_out == {"no keypoints": 2}
    assert 1202706 not in instances.ann_id and 508900 not in instances.ann_id
    assert set(np.unique(instances.joints_vis)) <= {0.0, 1.0}


def test_detection_boxes_all_kept_or_thresholded(coco_mini):
    kw = dict(aspect_ratio=0.75)
    args = (coco_mini / DETECTIONS, coco_mini / ANNOTATIONS, coco_mini / "images")
    all_boxes, _ = coco.detection_instances(*args, **kw)
    confident, report = coco.detection_instances(*args, score_threshold=0.3, **kw)
    assert len(all_boxes) == 118 and len(confident) == 33
    assert report.left_out == {"score < 0.3": 85}
    assert np.all(all_boxes.ann_id == -1) and np.all(all_boxes.joints_vis == 0)


def test_center_and_scale_follow_the_recipe(coco_mini):
    instances, _ = _gt(coco_mini)
    ann = json.loads((coco_mini / ANNOTATIONS).read_text())
    by_id = {a["id"]: a for a in ann["annotations"]}
    sizes = {i["id"]: (i["width"], i["height"]) for i in ann["images"]}
    for i in range(len(instances)):
        a = by_id[int(instances.ann_id[i])]
        width, height = sizes[a["image_id"]]
        x, y, w, h = a["bbox"]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(width - 1, x1 + max(0, w - 1)), min(height - 1, y1 + max(0, h - 1))
        w, h = x2 - x1, y2 - y1
        center = [x1 + w / 2, y1 + h / 2]
        w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
        np.testing.assert_allclose(instances.center[i], center, rtol=1e-6)
        np.testing.assert_allclose(instances.scale[i], [w / 200 * 1.25, h / 200 * 1.25], rtol=1e-6)


@pytest.mark.parametrize("rot", [0.0, 33.0, -71.5])
def test_affine_matrix_equals_the_three_point_construction(rot):
    center, scale = np.array([310.2, 190.7]), np.array([1.4, 1.8667])
    expected = reference_affine(center, scale, rot, (192, 256))
    np.testing.assert_allclose(
        transforms.affine_matrix(center, scale, rot, (256, 192)), expected, atol=1e-4
    )
    inverse = transforms.affine_matrix(center, scale, rot, (256, 192), inverse=True)
    np.testing.assert_allclose(inverse, cv2.invertAffineTransform(expected), atol=1e-4)


@pytest.mark.parametrize(
    "sigma,input_size", [(2.0, (256, 192)), (3.0, (384, 288)), (1.5, (256, 192))]
)
def test_targets_equal_the_reference_generate_target(sigma, input_size):
    rng = np.random.default_rng(0)
    h, w = input_size
    # Joints inside, near every border, and far outside the crop; some invisible.
    joints = np.concatenate(
        [rng.uniform(-40, [w + 40, h + 40], (60, 2)), [[-3, 5], [w + 2, h - 1]]]
    )
    vis = (rng.random(len(joints)) > 0.2).astype(np.float32)
    codec = HeatmapCodec(input_size, (h // 4, w // 4), sigma)
    heatmaps, weight = codec.encode(joints, vis)
    expected, expected_weight = reference_target(joints, vis, sigma, (w // 4, h // 4), 4)
    np.testing.assert_array_equal(weight, expected_weight)
    np.testing.assert_allclose(heatmaps, expected, atol=1e-6)
    assert 0 < weight.sum() < vis.sum()  # some visible joints fell off the map


def test_unbiased_targets_peak_at_the_subpixel_joint():
    codec = HeatmapCodec((256, 192), (64, 48), 2.0, unbiased=True)
    joint = np.array([[81.0, 122.6]])  # heatmap (20.25, 30.65)
    heatmaps, weight = codec.encode(joint, np.ones(1))
    ys, xs = np.mgrid[0:64, 0:48]
    expected = np.exp(-((xs - 20.25) ** 2 + (ys - 30.65) ** 2) / 8)
    np.testing.assert_allclose(heatmaps[..., 0], expected, atol=1e-6)
    assert weight[0] == 1


def _no_augment_sampler(input_size=(256, 192), **kw):
    codec = HeatmapCodec(input_size, (input_size[0] // 4, input_size[1] // 4), 2.0)
    return TopDownSampler(codec, FLIP_PERM, augment=None, reduced_decode=False, **kw)


def test_target_peaks_sit_at_the_hand_transformed_joints(coco_mini):
    instances, _ = _gt(coco_mini)
    sampler = _no_augment_sampler()
    checked = 0
    for i in range(len(instances)):
        rec = instances[i]
        sample = sampler(rec)
        trans = reference_affine(rec["center"], rec["scale"], 0.0, (192, 256))
        for k in np.flatnonzero(rec["joints_vis"]):
            u, v = trans @ [*rec["joints"][k], 1.0]
            mu = int(u / 4 + 0.5), int(v / 4 + 0.5)
            if not (0 <= mu[0] < 48 and 0 <= mu[1] < 64):
                continue
            hm = sample["heatmaps"][..., k]
            assert np.unravel_index(np.argmax(hm), hm.shape) == (mu[1], mu[0])
            assert hm[mu[1], mu[0]] == 1.0 and sample["target_weight"][k] == 1
            checked += 1
    assert checked > 150  # nearly all of the 12 persons' visible joints


def test_crop_is_the_reference_warp_of_the_image(coco_mini):
    instances, _ = _gt(coco_mini)
    rec = instances[0]
    image = cv2.imread(str(rec["image_file"]), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    trans = reference_affine(rec["center"], rec["scale"], 0.0, (192, 256))
    expected = cv2.warpAffine(image, trans, (192, 256), flags=cv2.INTER_LINEAR)[..., ::-1]
    crop = _no_augment_sampler()(rec)["image"]
    assert crop.dtype == np.uint8 and crop.shape == (256, 192, 3)
    # cv2 and libjpeg-turbo decode identically; coordinates agree to float rounding.
    assert np.mean(np.abs(crop.astype(int) - expected)) < 0.05


@pytest.mark.parametrize("rot", [0.0, 37.0])
def test_rgbx_warp_equals_the_three_channel_warp(coco_mini, rot):
    """The 4-channel fast path changes no pixel, inside the image or on the zero border."""
    instances, _ = _gt(coco_mini)
    for rec in instances:
        rgbx, factor = read_image(rec)
        assert factor == 1 and rgbx.shape[2] == 4
        trans = reference_affine(rec["center"], rec["scale"] * 1.3, rot, (288, 384))
        expected = cv2.warpAffine(
            np.ascontiguousarray(rgbx[..., :3]), trans, (288, 384), flags=cv2.INTER_LINEAR
        )
        assert np.array_equal(warp_rgb(rgbx, trans, (384, 288)), expected)


def _forced(**overrides):
    params = dict(
        scale_factor=0.0,
        rotation_factor=0.0,
        rotation_prob=0.0,
        flip=True,
        flip_prob=0.0,
        half_body_prob=0.0,
        num_joints_half_body=8,
        half_body_upper_prob=0.6915,
        half_body_padding=1.5,
        upper_body_ids=tuple(range(11)),
    )
    return Augment(**{**params, **overrides})


def test_flip_equals_the_mirrored_image_with_pairs_swapped(coco_mini):
    instances, _ = _gt(coco_mini)
    rec = instances[4]
    codec = HeatmapCodec((256, 192), (64, 48), 2.0)
    flipped = TopDownSampler(codec, FLIP_PERM, augment=_forced(flip_prob=1.0), reduced_decode=False)
    sample = flipped(rec, np.random.default_rng(0))
    # The recipe's flip, done by hand: mirror the image, x -> w - x - 1, swap the pairs.
    image = simplejpeg.decode_jpeg(pathlib.Path(rec["image_file"]).read_bytes())
    width = image.shape[1]
    mirrored = dict(rec)
    mirrored["image_bytes"] = cv2.imencode(".png", np.ascontiguousarray(image[:, ::-1, ::-1]))[1]
    mirrored["image_bytes"] = mirrored["image_bytes"].tobytes()
    swap = np.arange(17)
    for a, b in FLIP_PAIRS:
        swap[a], swap[b] = b, a
    joints = rec["joints"].copy()
    joints[:, 0] = width - joints[:, 0] - 1
    mirrored["joints"], mirrored["joints_vis"] = joints[swap], rec["joints_vis"][swap]
    mirrored["center"] = [width - rec["center"][0] - 1, rec["center"][1]]
    expected = _no_augment_sampler()(mirrored)
    diff = np.abs(sample["image"].astype(int) - expected["image"])
    assert diff.max() <= 2 and diff.mean() < 0.05  # cv2's 1/32-pixel interpolation table
    np.testing.assert_array_equal(sample["target_weight"], expected["target_weight"])
    np.testing.assert_allclose(sample["heatmaps"], expected["heatmaps"], atol=1e-6)
    # And the left wrist's target is where the mirrored right wrist was.
    unflipped = _no_augment_sampler()(rec)
    if rec["joints_vis"][10]:
        peak = np.unravel_index(np.argmax(unflipped["heatmaps"][..., 10]), (64, 48))
        flipped_peak = np.unravel_index(np.argmax(sample["heatmaps"][..., 9]), (64, 48))
        assert flipped_peak[0] == peak[0] and abs(flipped_peak[1] - (47 - peak[1])) <= 1


def test_half_body_crops_the_upper_or_lower_body(coco_mini):
    instances, _ = _gt(coco_mini)
    rec = next(instances[i] for i in range(12) if instances.joints_vis[i].sum() == 17)
    ids = tuple(range(11))
    picks = set()
    for seed in range(20):
        center, scale = transforms.half_body(
            rec["joints"], rec["joints_vis"], np.random.default_rng(seed),
            upper_body_ids=ids, upper_prob=0.6915, aspect_ratio=0.75, padding=1.5,
        )  # fmt: skip
        part = rec["joints"][:11] if np.allclose(center, rec["joints"][:11].mean(0)) else None
        part = rec["joints"][11:] if part is None else part
        np.testing.assert_allclose(center, part.mean(0), rtol=1e-5)
        w, h = part.max(0) - part.min(0)
        w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
        np.testing.assert_allclose(scale, [w / 200 * 1.5, h / 200 * 1.5], rtol=1e-5)
        picks.add(len(part))
    assert picks == {11, 6}


def test_random_scale_and_rotation_stay_in_the_recipe_ranges():
    rng = np.random.default_rng(0)
    draws = np.array([transforms.random_scale_rotation(rng, 0.35, 45.0, 0.6) for _ in range(4000)])
    assert draws[:, 0].min() >= 0.65 and draws[:, 0].max() <= 1.35
    assert np.abs(draws[:, 1]).max() <= 90.0
    assert np.mean(draws[:, 1] == 0) == pytest.approx(0.4, abs=0.03)
    assert np.std(draws[draws[:, 1] != 0, 1]) == pytest.approx(
        45 * 0.95, rel=0.1
    )  # clipped at 2 sigma


def test_reduced_decoding_crops_like_full_decoding(coco_mini):
    """A crop that averages >= 2 source pixels per output pixel may decode at half size."""
    instances, _ = _gt(coco_mini)
    rec = dict(instances[0])
    rec["scale"] = rec["scale"] * 1.6  # ~2.7 source pixels per output pixel at 192 wide
    full = _no_augment_sampler()(rec)["image"].astype(float)
    codec = HeatmapCodec((256, 192), (64, 48), 2.0)
    reduced = TopDownSampler(codec, FLIP_PERM, reduced_decode=True)(rec)["image"]
    # Same content, same place: the difference is the interpolation's, not a shift.
    assert np.mean(np.abs(full - reduced)) < 6.0
    shifted = _no_augment_sampler()({**rec, "center": rec["center"] + [2.0, 0.0]})["image"]
    assert np.mean(np.abs(full - reduced)) < np.mean(np.abs(full - shifted))


# --- bad input ---------------------------------------------------------------------------


@pytest.fixture
def mini_copy(coco_mini, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(coco_mini, root)
    return root


def _edit_annotations(root, edit):
    path = root / ANNOTATIONS
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_annotation_file_that_is_not_json_is_named(mini_copy):
    (mini_copy / ANNOTATIONS).write_text("{ this is not json")
    with pytest.raises(coco.AnnotationError, match="person_keypoints_mini.json.*not a valid"):
        _gt(mini_copy)


def test_missing_annotation_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        coco.gt_instances(tmp_path / "nowhere.json", tmp_path, aspect_ratio=0.75)


def _break_annotation(data, ann_id, **fields):
    next(a for a in data["annotations"] if a["id"] == ann_id).update(fields)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"keypoints": [0.0] * 50}, "keypoints has 50 numbers"),
        ({"bbox": [700.0, 10.0, 50.0, 80.0]}, "lies outside its 640x425 image"),
    ],
)
def test_bad_annotation_is_named_or_skipped_and_counted(mini_copy, fields, message):
    _edit_annotations(mini_copy, lambda d: _break_annotation(d, 442619, **fields))
    with pytest.raises(coco.AnnotationError, match=rf"annotation id 442619 .*{message}"):
        _gt(mini_copy)
    instances, report = _gt(mini_copy, strict=False)
    assert len(instances) == 11 and report.left_out["bad annotation"] == 1
    assert "442619" in report.errors[0]


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: p.unlink(), "cannot read .*000000000785.jpg"),
        (lambda p: p.write_bytes(p.read_bytes()[:30000]), "corrupt or truncated JPEG .*785.jpg"),
        (lambda p: p.write_bytes(b"\xff\xd8" + bytes(5000)), "corrupt or truncated JPEG"),
    ],
    ids=["missing", "truncated", "corrupt"],
)
def test_unreadable_image_is_named_or_skipped_and_counted(mini_copy, damage, message):
    damage(mini_copy / "images" / "000000000785.jpg")
    instances, _ = _gt(mini_copy)
    rec = instances[0]  # the one person of image 785
    with pytest.raises(ImageError, match=rf"{message}.*annotation 442619"):
        _no_augment_sampler()(rec)
    lenient = _no_augment_sampler(strict=False)
    it = pipeline.eval_iterator(
        instances, lenient, global_batch_size=4, options=pipeline.DataOptions(num_threads=1)
    )
    valid = np.concatenate([b["valid"] for b in it])
    assert valid.sum() == 11 and not valid[0]  # skipped, counted through `valid`, nothing else lost

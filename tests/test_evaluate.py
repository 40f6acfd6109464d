"""Decoding, flip test, OKS NMS and COCO AP, against the recipe and pycocotools itself."""

import contextlib
import io
import json
import re

import jax.numpy as jnp
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from testing_utils import run_module

from hrnet_jax import coco_metric, config_lib, detections, nms, predictor
from hrnet_jax.data import coco, keypoints, transforms
from hrnet_jax.data.heatmaps import HeatmapCodec
from hrnet_jax.errors import UserError

ANNOTATIONS = "annotations/person_keypoints_mini.json"
SIGMAS = keypoints.COCO.sigmas


@pytest.fixture(scope="module")
def gt(coco_mini):
    instances, _ = coco.gt_instances(
        coco_mini / ANNOTATIONS, coco_mini / "images", aspect_ratio=0.75
    )
    return instances


def _round_trip(instances, codec):
    """Encodes each person's joints into its crop's heatmaps, decodes, maps back to the image.

    Returns the errors in heatmap pixels and whether each joint lies >= 2 heatmap pixels inside the
    map (where DARK refines; like MMP and PD it leaves the outer two rows and columns alone)."""
    errors, interior = [], []
    for i in range(len(instances)):
        rec = instances[i]
        crop = transforms.affine_matrix(rec["center"], rec["scale"], 0.0, codec.input_size)
        joints = transforms.transform_points(rec["joints"], crop)
        h, w = codec.input_size
        inside = (rec["joints_vis"] > 0) & np.all((joints >= 0) & (joints < [w, h]), axis=1)
        heatmaps, _ = codec.encode(joints, inside)
        coords, _ = codec.decode(heatmaps[None])
        back = codec.to_image(coords, rec["center"][None], rec["scale"][None])[0]
        pixels_per_cell = rec["scale"][0] * 200 / codec.heatmap_size[1]
        errors.append(np.linalg.norm(back - rec["joints"], axis=1)[inside] / pixels_per_cell)
        hm = joints[inside] / codec.stride
        hh, hw = codec.heatmap_size
        interior.append(np.all((hm >= 2) & (hm < [hw - 2.5, hh - 2.5]), axis=1))
    return np.concatenate(errors), np.concatenate(interior)


def test_round_trip_quarter_offset_is_within_one_heatmap_pixel(gt):
    codec = HeatmapCodec((256, 192), (64, 48), 2.0, decoding="quarter_offset")
    errors, _ = _round_trip(gt, codec)
    assert len(errors) > 150
    # Targets sit on the rounded pixel; decoding cannot recover the lost fraction (<= 0.5 per axis).
    assert errors.max() <= 1.0 and errors.max() <= np.sqrt(0.5)


def test_round_trip_dark_with_unbiased_targets_is_within_a_quarter_pixel(gt):
    # PD's blur kernel 3 (MMP's 11 biases joints within its 5-pixel radius of the map's edge,
    # where the zero border skews the blur).
    kernel = config_lib.recipe().codec.blur_kernel_size
    codec = HeatmapCodec(
        (256, 192), (64, 48), 2.0, unbiased=True, decoding="dark", blur_kernel_size=kernel
    )
    errors, interior = _round_trip(gt, codec)
    assert interior.sum() > 150
    assert errors[interior].max() < 0.25
    # In image pixels too: a heatmap pixel covers at most ~7 image pixels for these persons.
    assert errors[interior].max() * 7 < 0.25
    assert errors.max() <= np.sqrt(0.5)  # at the border: the integer peak, like quarter offset


def test_quarter_offset_moves_towards_the_higher_neighbour():
    hm = np.zeros((1, 8, 8, 1), np.float32)
    hm[0, 4, 3, 0], hm[0, 4, 4, 0], hm[0, 3, 3, 0] = 1.0, 0.6, 0.2  # peak (3, 4); right, up higher
    coords, scores = HeatmapCodec((32, 32), (8, 8), 2.0, decoding="quarter_offset").decode(hm)
    np.testing.assert_allclose(coords[0, 0], [3.25, 3.75])
    assert scores[0, 0] == 1.0


def _reference_flip_test(apply, images, pairs):
    """The recipe's flip test step by step in numpy: flip W, run, flip back, swap, shift, average."""
    plain = np.asarray(apply(images))
    flipped = np.asarray(apply(images[:, :, ::-1]))[:, :, ::-1].copy()
    for a, b in pairs:
        flipped[..., [a, b]] = flipped[..., [b, a]]
    shifted = flipped.copy()
    shifted[:, :, 1:] = flipped[:, :, :-1]
    return (plain + shifted) * 0.5


def test_flip_test_follows_the_recipe():
    rng = np.random.default_rng(0)
    images = rng.random((2, 8, 6, 3)).astype(np.float32)
    weights = rng.standard_normal((3, 17)).astype(np.float32)
    column = np.arange(6, dtype=np.float32)[None, None, :, None]

    def apply(x):  # neither mirror-symmetric nor the same for every joint
        return jnp.tanh(x @ weights) + column * weights[0]

    pairs = keypoints.COCO.flip_pairs
    perm = keypoints.COCO.flip_permutation
    got = predictor.heatmaps_with_flip_test(apply, jnp.asarray(images), perm, shift=True)
    np.testing.assert_allclose(got, _reference_flip_test(apply, images, pairs), atol=1e-6)


def test_flip_test_of_a_mirror_symmetric_model_returns_its_output():
    """A model that treats a mirrored person as mirrored (left and right swapped) gains nothing
    and loses nothing from flip testing when the shift is off."""
    rng = np.random.default_rng(1)
    images = rng.random((1, 8, 6, 3)).astype(np.float32)
    gains = rng.random(17).astype(np.float32)
    for a, b in keypoints.COCO.flip_pairs:
        gains[b] = gains[a]

    def apply(x):
        return x[..., :1] * gains

    perm = keypoints.COCO.flip_permutation
    got = predictor.heatmaps_with_flip_test(apply, jnp.asarray(images), perm, shift=False)
    np.testing.assert_allclose(got, apply(images), atol=1e-7)


def _oks_reference(g, d, area_g, area_d):
    """oks_iou as the recipe describes it, one pair at a time."""
    variances = (np.array(keypoints.COCO.sigmas) * 2) ** 2
    e = ((d[:, 0] - g[:, 0]) ** 2 + (d[:, 1] - g[:, 1]) ** 2) / variances
    e = e / ((area_g + area_d) / 2 + np.spacing(1)) / 2
    return np.sum(np.exp(-e)) / len(e)


def _nms_reference(kpts, scores, areas, threshold):
    order = list(np.argsort(scores)[::-1])
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [
            j for j in order if _oks_reference(kpts[i], kpts[j], areas[i], areas[j]) <= threshold
        ]
    return keep


def test_oks_nms_drops_duplicates_and_keeps_distinct_persons():
    rng = np.random.default_rng(0)
    person = rng.uniform(100, 300, (17, 3))
    kpts = np.stack([person, person + 0.5, person + 200.0])  # a near duplicate and another person
    keep = nms.oks_nms(
        kpts, np.array([0.7, 0.9, 0.8]), np.full(3, 150.0**2), threshold=0.9, sigmas=SIGMAS
    )
    assert keep.tolist() == [1, 2]  # the better-scored duplicate survives, the other person too


def test_oks_nms_equals_the_quadratic_reference():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 400, (6, 17, 2))
    kpts = np.concatenate([base + rng.normal(0, s, base.shape) for s in (0.5, 3, 10, 30)])
    scores, areas = rng.random(len(kpts)), rng.uniform(40, 200, len(kpts)) ** 2
    for threshold in (0.5, 0.9):
        expected = _nms_reference(kpts, scores, areas, threshold)
        got = nms.oks_nms(kpts, scores, areas, threshold, SIGMAS)
        assert got.tolist() == expected
        assert 6 <= len(got) < len(kpts)


def test_soft_oks_nms_decays_duplicates_below_distinct_persons():
    rng = np.random.default_rng(1)
    person = rng.uniform(100, 300, (17, 3))
    # A (0.9), its exact duplicate B (0.8, OKS 1 with A) and a distinct person C (0.5, OKS ~0).
    kpts = np.stack([person, person, person + 300.0])
    scores, areas = np.array([0.9, 0.8, 0.5]), np.full(3, 150.0**2)
    # After A: B ranks 0.8 * exp(-1 / 0.3) = 0.029, C 0.5 * exp(-0) = 0.5, so C comes before B.
    assert nms.soft_oks_nms(kpts, scores, areas, threshold=0.3, sigmas=SIGMAS).tolist() == [0, 2, 1]
    assert nms.soft_oks_nms(
        kpts, scores, areas, threshold=0.3, sigmas=SIGMAS, max_dets=2
    ).tolist() == [0, 2]


def _gt_results(coco_mini):
    ann = json.loads((coco_mini / ANNOTATIONS).read_text())
    return [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in ann["annotations"]
        if a["num_keypoints"] > 0
    ]


def test_ground_truth_as_predictions_scores_one_everywhere(coco_mini):
    results = _gt_results(coco_mini)
    assert len(results) == 12
    metrics = coco_metric.keypoint_ap(coco_mini / ANNOTATIONS, results, keypoints.COCO)
    assert metrics == dict.fromkeys(coco_metric.STAT_NAMES, 1.0)


def test_results_mode_gives_pycocotools_numbers(coco_mini, tmp_path):
    rng = np.random.default_rng(0)
    results = _gt_results(coco_mini)
    for r in results:  # perturb so that the numbers are not trivially 1
        kp = np.array(r["keypoints"], float).reshape(17, 3)
        kp[:, :2] += rng.normal(0, 6, (17, 2))
        r["keypoints"], r["score"] = kp.ravel().tolist(), float(rng.random())
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    run_module(
        "hrnet_jax.evaluate", f"--results={path}", f"--annotations={coco_mini / ANNOTATIONS}"
    )
    got = json.loads((tmp_path / "results.metrics.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_mini / ANNOTATIONS))
        direct = COCOeval(gt, gt.loadRes(str(path)), "keypoints")
        direct.evaluate()
        direct.accumulate()
        direct.summarize()
    assert [got[k] for k in coco_metric.STAT_NAMES] == pytest.approx(
        direct.stats.tolist(), abs=1e-12
    )
    assert 0.1 < got["AP"] < 0.99


def test_empty_results_report_zero_ap(coco_mini, tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("[]")
    out = run_module(
        "hrnet_jax.evaluate", f"--results={path}", f"--annotations={coco_mini / ANNOTATIONS}"
    )
    assert json.loads((tmp_path / "empty.metrics.json").read_text())["AP"] == 0.0
    assert "0.0000" in out.stdout


def test_results_for_unknown_images_are_a_clear_error(coco_mini, tmp_path):
    results = _gt_results(coco_mini)
    results[0]["image_id"] = 123456789
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(results))
    out = run_module(
        "hrnet_jax.evaluate",
        f"--results={path}",
        f"--annotations={coco_mini / ANNOTATIONS}",
        check=False,
    )
    assert out.returncode != 0
    assert "image ids of the results are not in" in out.stderr and "123456789" in out.stderr
    assert "Traceback" not in out.stderr


def test_detection_file_with_no_persons_is_a_clear_error(coco_mini, tmp_path):
    det = tmp_path / "dets.json"
    det.write_text(
        json.dumps([{"image_id": 785, "category_id": 3, "bbox": [1, 1, 5, 5], "score": 1}])
    )
    with pytest.raises(coco.AnnotationError, match="no person boxes"):
        coco.detection_instances(
            det, coco_mini / ANNOTATIONS, coco_mini / "images", aspect_ratio=0.75
        )


def test_rescoring_multiplies_box_score_by_confident_joint_mean():
    config = config_lib.recipe()
    kp = np.zeros((2, 17, 3), np.float32)
    kp[0, :, 2] = [0.9] * 5 + [0.1] * 12  # 5 joints above 0.2
    kp[1, :, :2] = 1000.0  # far away: no suppression
    kp[1, :, 2] = 0.1  # no joint above 0.2 -> score 0
    preds = {
        "keypoints": kp,
        "score": np.array([0.5, 1.0], np.float32),
        "scale": np.ones((2, 2), np.float32),
        "center": np.zeros((2, 2), np.float32),
        "image_id": np.array([7, 7]),
    }
    results = nms.rescore_and_nms(preds, config.eval, SIGMAS)
    assert [r["score"] for r in results] == pytest.approx([0.45, 0.0])


def test_predict_without_a_box_takes_the_whole_image():
    np.testing.assert_array_equal(
        detections.parse_boxes([], width=640, height=427), [[0, 0, 640, 427]]
    )
    boxes = detections.parse_boxes(["10,20,30.5,40", "0,0,1,1"], width=640, height=427)
    np.testing.assert_array_equal(boxes, [[10, 20, 30.5, 40], [0, 0, 1, 1]])


@pytest.mark.parametrize("value", ["10,20,30", "a,b,c,d", "1,2,0,4", "1,2,3,-4", "nan,2,3,4", ""])
def test_predict_names_a_malformed_box(value):
    with pytest.raises(UserError, match=re.escape(f"got {value!r}")):
        detections.parse_boxes([value], width=640, height=427)

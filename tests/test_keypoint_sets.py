"""Keypoint sets other than COCO's 17 joints, on real samples (../shared/data/keypoint_sets_mini):
one spec per set, K-joint loading, flip test, OKS NMS/AP with the set's sigmas, training."""

import contextlib
import io
import json
import pathlib

import cv2
import jax.numpy as jnp
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from testing_utils import ROOT, TINY_CONFIG, run_module

from hrnet_jax import coco_metric
from hrnet_jax.data import coco, keypoints, mpii
from hrnet_jax.predictor import heatmaps_with_flip_test

SETS = ROOT.parent / "shared" / "data" / "keypoint_sets_mini"
FILES = {
    "crowdpose": "crowdpose/test_crowdpose.json",
    "aic": "aic/test_aic.json",
    "ochuman": "ochuman/test_ochuman.json",
    "coco_wholebody": "coco_wholebody/test_coco_wholebody.json",
}


def _joints(ann: dict, spec) -> np.ndarray:
    """A person's (K, 3) joints as the spec's fields store them (WholeBody's five arrays)."""
    return np.concatenate([np.reshape(ann[f], (-1, 3)) for _, f, _, _ in spec.fields])


def _sample(name: str) -> pathlib.Path:
    path = SETS / FILES[name]
    if not path.is_file():
        pytest.skip(f"keypoint set samples not found at {SETS} (the ../shared checkout)")
    return path


@pytest.mark.parametrize("name", list(FILES))
def test_the_loader_reads_every_person_with_the_sets_joints(name):
    path = _sample(name)
    spec = keypoints.PRESETS[name]
    data = json.loads(path.read_text())
    instances, report = coco.gt_instances(path, path.parent, aspect_ratio=0.75, fields=spec.fields)
    persons = [
        a for a in data["annotations"] if np.any(_joints(a, spec)[:, 2]) and not a.get("iscrowd")
    ]
    assert len(instances) == len(persons) == report.kept > 0
    assert instances.joints.shape[1:] == (spec.num_joints, 2)
    if not spec.parts:  # the file's category names every joint
        assert spec.num_joints == len(data["categories"][0]["keypoints"])
    by_id = {a["id"]: _joints(a, spec) for a in persons}
    for i, ann_id in enumerate(instances.ann_id):
        np.testing.assert_allclose(instances.joints[i], by_id[ann_id][:, :2])
        np.testing.assert_array_equal(instances.joints_vis[i], np.minimum(by_id[ann_id][:, 2], 1))


def _gt_as_results(path: pathlib.Path, spec, noise: float = 0.0, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    results = []
    for a in json.loads(path.read_text())["annotations"]:
        kp = _joints(a, spec).astype(float)
        if not np.any(kp[:, 2]):  # COCOeval ignores GT persons without keypoints
            continue
        x, y, w, h = a["bbox"]  # a model predicts unlabelled joints too: somewhere on the person
        kp[kp[:, 2] == 0, :2] = [x + w / 2, y + h / 2]
        size = np.sqrt(w * h)  # noise relative to the person's size
        kp[:, :2] += rng.normal(0, noise * size, kp[:, :2].shape)
        kp[:, 2] = 1.0
        score = float(rng.uniform(0.5, 1.0)) if noise else 1.0
        results.append(
            {
                "image_id": a["image_id"],
                "category_id": 1,
                "keypoints": kp.ravel().tolist(),
                "score": score,
            }
        )
    return results


@pytest.mark.parametrize("name", list(FILES))
def test_ground_truth_as_predictions_scores_one_through_the_cli(name, tmp_path):
    path = _sample(name)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_gt_as_results(path, keypoints.PRESETS[name])))
    out = run_module(
        "hrnet_jax.evaluate", f"--results={results}", f"--annotations={path}", f"--keypoints={name}"
    )
    metrics = json.loads(results.with_suffix(".metrics.json").read_text())
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0), out.stdout
    if name == "coco_wholebody":  # each part with labelled joints scores 1 as well
        assert {"AP_body", "AP_foot", "AP_face", "AP_lefthand", "AP_righthand"} <= set(metrics)
        assert all(metrics[k] in (pytest.approx(1.0), -1.0) for k in metrics if k.startswith("AP_"))
        assert metrics["AP_body"] == pytest.approx(1.0)
    if name == "crowdpose":  # AP by crowd level where the sample has images of that level
        levels = {im["crowdIndex"] for im in json.loads(path.read_text())["images"]}
        for level, low, high in coco_metric.CROWD_LEVELS:
            expected = 1.0 if any(low <= c < high for c in levels) else -1.0
            assert metrics[level] == pytest.approx(expected), (level, levels)


@pytest.mark.parametrize("name", list(FILES))
def test_ap_of_perturbed_predictions_equals_pycocotools_with_the_sets_sigmas(name, tmp_path):
    path = _sample(name)
    spec = keypoints.PRESETS[name]
    results = _gt_as_results(path, spec, noise=0.05, seed=1)
    # The reference: pycocotools itself, given the set's sigmas and (for sets without segmentation
    # areas) the box area as OKS scale, as xtcocotools' use_area=False does.
    data = json.loads(path.read_text())
    for a in data["annotations"]:
        a.setdefault("iscrowd", 0)
        if not spec.use_area or "area" not in a:
            a["area"] = a["bbox"][2] * a["bbox"][3]
        if spec.parts:  # the whole body's joints as one keypoints array
            joints = _joints(a, spec)
            a["keypoints"], a["num_keypoints"] = (
                joints.ravel().tolist(),
                int(np.sum(joints[:, 2] > 0)),
            )
    reference_file = tmp_path / "gt.json"
    reference_file.write_text(json.dumps(data))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(reference_file))
        evaluator = COCOeval(gt, gt.loadRes(results), "keypoints")
        evaluator.params.kpt_oks_sigmas = np.array(spec.sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ours = coco_metric.keypoint_ap(path, results, spec)
    assert 0.0 < evaluator.stats[0] < 1.0
    for value, name_ in zip(evaluator.stats, coco_metric.STAT_NAMES, strict=True):
        assert ours[name_] == pytest.approx(value, abs=1e-12), name_


@pytest.mark.parametrize(
    "spec",
    [keypoints.CROWDPOSE, keypoints.AIC, keypoints.COCO, keypoints.COCO_WHOLEBODY],
    ids=lambda s: s.name,
)
def test_flip_test_of_a_mirror_symmetric_k_joint_model_returns_its_output(spec):
    rng = np.random.default_rng(2)
    images = rng.random((2, 8, 6, 3)).astype(np.float32)
    gains = rng.random(spec.num_joints).astype(np.float32)
    for a, b in spec.flip_pairs:
        gains[b] = gains[a]

    def apply(x):  # mirrors with its input, left and right joints swapped
        return x[..., :1] * gains

    got = heatmaps_with_flip_test(apply, jnp.asarray(images), spec.flip_permutation, shift=False)
    np.testing.assert_allclose(got, apply(images), atol=1e-6)
    assert sorted(spec.flip_permutation) == list(range(spec.num_joints))


def test_a_custom_set_takes_names_and_skeleton_from_its_annotation_file(tmp_path):
    from hrnet_jax import config_lib

    path = _sample("aic")
    config = config_lib.load_config(TINY_CONFIG)
    config.data.root, config.data.annotation_file = str(path.parent), path.name
    config.data.keypoints = "custom"
    config.data.custom_keypoints.sigmas = keypoints.AIC.sigmas
    config.data.custom_keypoints.flip_pairs = keypoints.AIC.flip_pairs
    spec = keypoints.from_config(config)
    assert spec.joint_names[0] == "Right Shoulder" and spec.num_joints == 14
    assert spec.skeleton == keypoints.AIC.skeleton


def _train_on(name: str, tmp_path, *extra) -> dict:
    path = _sample(name)
    workdir = tmp_path / name
    run_module(
        "hrnet_jax.main", f"--config={TINY_CONFIG}", f"--workdir={workdir}",
        f"--config.data.keypoints={name}", "--config.model.num_joints=14",
        f"--config.data.root={path.parent}", f"--config.data.annotation_file={path.name}",
        "--config.data.image_dir=", "--config.data.train_split=test", "--config.data.val_split=test",
        "--config.train.global_batch_size=4", "--config.train.num_epochs=2", *extra,
        JAX_NUM_CPU_DEVICES=1,
    )  # fmt: skip
    (out,) = (workdir / "eval").iterdir()
    return json.loads((out / "metrics.json").read_text())


def test_a_tiny_model_trains_and_evaluates_on_crowdpose_with_detector_boxes(tmp_path):
    metrics = _train_on(
        "crowdpose", tmp_path, "--config.eval.use_gt_bbox=false",
        "--config.eval.det_file=test_crowdpose_det_AP_40.json",
    )  # fmt: skip
    assert {"AP", "AP_easy", "AP_medium", "AP_hard"} <= set(metrics) and metrics["instances"] == 6


def test_a_tiny_model_trains_and_evaluates_on_aic(tmp_path):
    metrics = _train_on("aic", tmp_path)
    assert 0.0 <= metrics["AP"] <= 1.0 and metrics["instances"] == 9


def test_no_module_but_the_spec_holds_cocos_joint_facts():
    patterns = (
        ".26, .25, .25", "0.026", "1.07, 1.07", "(1, 2), (3, 4), (5, 6)", "(15, 13), (13, 11)",
        "(16, 14), (14, 12)", "NUM_JOINTS =", ".NUM_JOINTS", "= 17", "17 * 3", "range(11)",
    )  # fmt: skip
    found = [
        f"{path.relative_to(ROOT)}: {p!r}"
        for path in (ROOT / "hrnet_jax").rglob("*.py")
        if path.name != "keypoints.py"
        for p in patterns
        if p in path.read_text()
    ]
    assert not found, found


def _mpii() -> pathlib.Path:
    path = SETS / "mpii" / "test_mpii.json"
    if not path.is_file():
        pytest.skip(f"keypoint set samples not found at {SETS} (the ../shared checkout)")
    return path


def test_mpii_loader_follows_the_official_center_scale_conventions():
    path = _mpii()
    persons = json.loads(path.read_text())
    instances = mpii.load_instances(path, path.parent)
    assert len(instances) == len(persons) == 5
    for i, p in enumerate(persons):
        s = p["scale"]  # x200 = the person's height; official: centre y + 15 s, box x 1.25, 0-based
        np.testing.assert_allclose(
            instances.center[i], [p["center"][0] - 1, p["center"][1] + 15 * s - 1], rtol=1e-6
        )
        np.testing.assert_allclose(instances.scale[i], [1.25 * s, 1.25 * s], rtol=1e-6)
        np.testing.assert_allclose(instances.joints[i], np.array(p["joints"]) - 1, rtol=1e-6)
        image = cv2.imread(str(path.parent / p["image"]))
        assert tuple(instances.image_size[i]) == image.shape[:2]


def test_mpii_ground_truth_as_predictions_scores_100_in_every_group():
    instances = mpii.load_instances(_mpii(), _mpii().parent)
    heads = mpii.head_sizes_from_joints(instances.joints)
    result = mpii.pckh(instances.joints, instances.joints, instances.joints_vis, heads)
    assert set(result) == {*(name for name, _ in mpii.GROUPS), "Mean"}
    assert all(v == pytest.approx(100.0) for v in result.values()), result


def test_pckh_by_hand():
    # Two persons, head sizes 10 and 20; every joint visible but person 1's left ankle (5).
    gt = np.zeros((2, 16, 2))
    visible = np.ones((2, 16))
    visible[1, 5] = 0
    pred = gt.copy()
    pred[0, 9] = [4.0, 3.0]  # head top 5 px off: 0.5 of 10, correct at 0.5 (<=), wrong at 0.1
    pred[1, 9] = [0.0, 12.0]  # 12 px: 0.6 of 20, wrong
    pred[0, 12] = [6.0, 0.0]  # right shoulder 0.6: wrong; left shoulders exact
    pred[:, 0] = [1.0, 0.0]  # right ankles 0.1 and 0.05: correct
    pred[1, 5] = [99.0, 0.0]  # invisible left ankle: not counted
    pred[:, 6] = [50.0, 50.0]  # pelvis wrong, but left out of the mean
    result = mpii.pckh(pred, gt, visible, np.array([10.0, 20.0]))
    assert result["Head"] == pytest.approx(50.0)
    assert result["Shoulder"] == pytest.approx((50.0 + 100.0) / 2)
    assert result["Ankle"] == pytest.approx(100.0)
    assert (
        result["Elbow"]
        == result["Wrist"]
        == result["Hip"]
        == result["Knee"]
        == pytest.approx(100.0)
    )
    # Mean over the 14 joints' 27 visible instances (pelvis and thorax left out): 2 wrong.
    assert result["Mean"] == pytest.approx(100.0 * 25 / 27)
    tenth = mpii.pckh(pred, gt, visible, np.array([10.0, 20.0]), threshold=0.1)
    assert tenth["Head"] == 0.0 and tenth["Ankle"] == pytest.approx(100.0)


def test_a_tiny_model_trains_and_evaluates_on_mpii(tmp_path):
    path = _mpii()
    workdir = tmp_path / "mpii"
    run_module(
        "hrnet_jax.main", f"--config={TINY_CONFIG}", f"--workdir={workdir}",
        "--config.data.keypoints=mpii", "--config.model.num_joints=16",
        f"--config.data.root={path.parent}", f"--config.data.annotation_file={path.name}",
        "--config.data.image_dir=", "--config.data.train_split=test", "--config.data.val_split=test",
        "--config.train.global_batch_size=4", "--config.train.num_epochs=2",
        JAX_NUM_CPU_DEVICES=1,
    )  # fmt: skip
    (out,) = (workdir / "eval").iterdir()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(mpii.METRIC_NAMES) <= set(metrics) and 0.0 <= metrics["PCKh"] <= 100.0
    assert metrics["instances"] == 5


def test_head_sizes_come_from_the_official_head_boxes(tmp_path):
    from scipy.io import savemat

    # gt_valid.mat's layout: headboxes_src is (2 corners, 2 coordinates, persons).
    boxes = np.zeros((2, 2, 3))
    boxes[1] = [[30.0, 6.0, 0.0], [40.0, 8.0, 1.0]]  # diagonals 50, 10, 1
    savemat(tmp_path / "gt_valid.mat", {"headboxes_src": boxes})
    sizes = mpii.head_sizes_from_mat(tmp_path / "gt_valid.mat")
    np.testing.assert_allclose(sizes, [0.6 * 50, 0.6 * 10, 0.6 * 1])  # SC_BIAS 0.6

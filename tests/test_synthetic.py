"""The synthetic data set: COCO's layout and annotation rules, determinism, atomic writes, the CLI."""

import colorsys
import contextlib
import io
import json
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from testing_utils import ROOT

from hrnet_jax.data import coco, synthetic
from hrnet_jax.errors import UserError

HW = (96, 128)
# Written out here, from the COCO 2017 person category, rather than read from the module.
COCO_KEYPOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]  # fmt: skip
COCO_SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
    [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic_set")
    synthetic.generate(out, num_train_images=48, num_val_images=8, seed=3, image_size=HW)
    return out


def _load(path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _keypoints(ann) -> np.ndarray:
    return np.asarray(ann["keypoints"], np.float64).reshape(17, 3)


def _files(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _annotations(root, split="train") -> list[dict]:
    path = root / "annotations" / f"person_keypoints_{split}.json"
    return json.loads(path.read_text())["annotations"]


def test_the_set_loads_with_pycocotools_in_coco_layout(root):
    assert synthetic.exists(root)
    ids, ann_ids = {}, []
    for split, n, first in (("train", 48, 1), ("val", 8, synthetic.VAL_ID_OFFSET + 1)):
        gt = _load(root / "annotations" / f"person_keypoints_{split}.json")
        assert sorted(gt.getImgIds()) == list(range(first, first + n))
        for image_id, info in gt.imgs.items():
            assert info["file_name"] == f"{image_id:012d}.jpg"
            assert (info["height"], info["width"]) == HW
            image = cv2.imread(str(root / "images" / split / info["file_name"]))
            assert image.shape == (*HW, 3)
        assert len(list((root / "images" / split).iterdir())) == n
        assert gt.loadCats(1)[0]["keypoints"] == COCO_KEYPOINTS
        assert gt.loadCats(1)[0]["skeleton"] == COCO_SKELETON
        assert gt.dataset["info"]["seed"] == 3
        ids[split] = set(gt.getImgIds())
        ann_ids += gt.getAnnIds()
        assert all(a["category_id"] == 1 and a["iscrowd"] == 0 for a in gt.anns.values())
    assert (root / "images" / "train" / "000000000001.jpg").is_file()
    assert (root / "images" / "val" / "000001000001.jpg").is_file()
    assert not ids["train"] & ids["val"]
    assert len(ann_ids) == len(set(ann_ids))


def test_keypoints_follow_cocos_visibility_rules(root):
    h, w = HW
    counts = np.zeros(3, int)
    for split in ("train", "val"):
        for ann in _annotations(root, split):
            k = _keypoints(ann)
            assert set(k[:, 2]) <= {0, 1, 2}
            labelled = k[:, 2] > 0
            assert ann["num_keypoints"] == labelled.sum()
            assert np.all(k[~labelled, :2] == 0)
            x, y = k[labelled, 0], k[labelled, 1]
            assert np.all((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1))
            counts += np.bincount(k[:, 2].astype(int), minlength=3)
    assert np.all(counts > 0), f"visibility counts (v=0, 1, 2): {counts}"
    assert counts[1] < counts[2]  # occluded joints are the exception


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' annToMask on numpy 2
def test_boxes_are_tight_silhouette_boxes_that_hold_the_labelled_joints(root):
    """bbox: the silhouette's pixel box [x0, y0, x1 - x0 + 1, y1 - y0 + 1]; a labelled joint's
    nearest pixel lies on the silhouette, so the joint is within half a pixel of the box."""
    h, w = HW
    gt = _load(root / "annotations" / "person_keypoints_train.json")
    for ann in gt.anns.values():
        x0, y0, bw, bh = ann["bbox"]
        assert bw > 0 and bh > 0 and x0 >= 0 and y0 >= 0 and x0 + bw <= w and y0 + bh <= h
        assert 0 < ann["area"] <= bw * bh
        k = _keypoints(ann)
        x, y = k[k[:, 2] > 0, 0], k[k[:, 2] > 0, 1]
        assert np.all(
            (x >= x0 - 0.5) & (x <= x0 + bw - 0.5) & (y >= y0 - 0.5) & (y <= y0 + bh - 0.5)
        )
        # The segmentation outlines the same silhouette: inside the box, about `area` pixels.
        outline = np.concatenate([np.reshape(p, (-1, 2)) for p in ann["segmentation"]])
        assert np.all(outline.min(0) >= [x0, y0]) and np.all(
            outline.max(0) <= [x0 + bw - 1, y0 + bh - 1]
        )
        assert 0.6 < gt.annToMask(ann).sum() / ann["area"] < 1.5


def test_some_persons_are_cut_by_the_image_border(root):
    h, w = HW
    cut = 0
    for ann in _annotations(root):
        x0, y0, bw, bh = ann["bbox"]
        at_border = x0 == 0 or y0 == 0 or x0 + bw == w or y0 + bh == h
        cut += at_border and 0 < ann["num_keypoints"] < 17
    assert cut >= 3


def test_the_project_loader_keeps_labelled_persons_and_leaves_out_unlabelled_ones(root):
    anns = _annotations(root)
    instances, report = coco.gt_instances(
        root / "annotations" / "person_keypoints_train.json",
        root / "images" / "train",
        aspect_ratio=0.75,
    )
    assert report.kept == len(instances) == sum(a["num_keypoints"] > 0 for a in anns)
    assert report.left_out["no keypoints"] == sum(a["num_keypoints"] == 0 for a in anns)
    assert set(report.left_out) <= {"no keypoints"}
    assert all(pathlib.Path(f).is_file() for f in instances.image_file)


def test_left_limbs_are_warm_and_right_limbs_cool(root):
    """Hue at the middle of each visible upper arm and thigh, read back from the JPEGs."""
    gt = _load(root / "annotations" / "person_keypoints_train.json")
    votes = {"left": [], "right": []}
    for ann in gt.anns.values():
        image = cv2.imread(str(root / "images" / "train" / gt.imgs[ann["image_id"]]["file_name"]))
        k = _keypoints(ann)
        for side, limbs in (("left", ((5, 7), (11, 13))), ("right", ((6, 8), (12, 14)))):
            for a, b in limbs:
                if k[a, 2] == 2 and k[b, 2] == 2:
                    x, y = np.round((k[a, :2] + k[b, :2]) / 2).astype(int)
                    blue, green, red = image[y, x] / 255.0
                    hue = colorsys.rgb_to_hsv(red, green, blue)[0] * 360
                    votes[side].append(hue < 75 or hue > 300)
    assert len(votes["left"]) > 30 and len(votes["right"]) > 30
    assert np.mean(votes["left"]) > 0.8  # warm
    assert np.mean(votes["right"]) < 0.2  # cool


def test_limb_shading_tells_left_from_right_also_after_a_mirror_flip(root):
    """A limb's darker edge is a quarter turn counter-clockwise from its direction away from the
    body on left limbs and clockwise on right ones, in the images as written and mirrored with
    swapped labels (training's flip), where hue no longer tells the sides apart."""
    gt = _load(root / "annotations" / "person_keypoints_train.json")
    swap = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    limbs = (("left", (5, 7)), ("left", (11, 13)), ("right", (6, 8)), ("right", (12, 14)))
    votes = {"left": [], "right": []}
    for ann in gt.anns.values():
        image = cv2.imread(str(root / "images" / "train" / gt.imgs[ann["image_id"]]["file_name"]))
        brightness, keypoints = image.astype(float).sum(-1), _keypoints(ann)
        x, rest = HW[1] - 1 - keypoints[swap, 0], keypoints[swap, 1:]
        for seen, k in ((brightness, keypoints), (brightness[:, ::-1], np.column_stack([x, rest]))):
            for side, (a, b) in limbs:
                if k[a, 2] == 2 and k[b, 2] == 2:
                    along = k[b, :2] - k[a, :2]
                    normal = np.array([along[1], -along[0]]) / np.linalg.norm(along)
                    mid = (k[a, :2] + k[b, :2]) / 2
                    (x0, y0), (x1, y1) = np.round([mid + normal, mid - normal]).astype(int)
                    votes[side].append(seen[y0, x0] < seen[y1, x1])
    assert len(votes["left"]) > 60 and len(votes["right"]) > 60
    assert np.mean(votes["left"]) > 0.85
    assert np.mean(votes["right"]) < 0.15


def test_same_seed_gives_the_same_bytes_and_another_seed_another_set(tmp_path):
    kwargs = dict(num_train_images=4, num_val_images=2, image_size=HW)
    a = _files(synthetic.generate(tmp_path / "a", seed=7, **kwargs))
    b = _files(synthetic.generate(tmp_path / "b", seed=7, **kwargs))
    c = _files(synthetic.generate(tmp_path / "c", seed=8, **kwargs))
    assert len(a) == 8 and a == b
    assert a["images/train/000000000001.jpg"] != a["images/val/000001000001.jpg"]
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a)


def test_an_image_does_not_depend_on_how_many_are_generated(tmp_path):
    small = _files(synthetic.generate(tmp_path / "s", num_train_images=2, num_val_images=3, seed=1))
    large = _files(synthetic.generate(tmp_path / "l", num_train_images=5, num_val_images=3, seed=1))
    images = [name for name in small if name.startswith("images")]
    assert len(images) == 5 and all(small[name] == large[name] for name in images)
    val = "annotations/person_keypoints_val.json"
    assert small[val] == large[val]


def test_generation_is_atomic_and_refuses_to_overwrite(tmp_path, monkeypatch):
    out = tmp_path / "set"
    render = synthetic.render_image
    calls = []

    def failing(rng, image_hw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return render(rng, image_hw)

    monkeypatch.setattr(synthetic, "render_image", failing)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(out, num_train_images=4, num_val_images=1, seed=0, image_size=HW)
    assert not out.exists() and not synthetic.exists(out)
    assert list(tmp_path.iterdir()) == []  # no temporary folder left behind
    monkeypatch.undo()

    (out / "notes").mkdir(parents=True)  # a folder with other things in it is fine
    synthetic.generate(out, num_train_images=1, num_val_images=1, seed=0, image_size=HW)
    assert synthetic.exists(out) and (out / "notes").is_dir()
    with pytest.raises(FileExistsError, match="annotations"):
        synthetic.generate(out, num_train_images=1, num_val_images=1, seed=0, image_size=HW)
    with pytest.raises(UserError, match="too small"):
        synthetic.generate(
            tmp_path / "x", num_train_images=1, num_val_images=1, seed=0, image_size=(32, 32)
        )


def test_cli_writes_the_same_set_as_the_function(tmp_path):
    args = [
        "--num_images=3",
        "--num_val_images=2",
        "--seed=4",
        "--image_height=80",
        "--image_width=112",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "hrnet_jax.data.make_synthetic", f"--out={tmp_path / 'cli'}", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    cli = _files(tmp_path / "cli")
    api = synthetic.generate(
        tmp_path / "api", num_train_images=3, num_val_images=2, seed=4, image_size=(80, 112)
    )
    assert cli == _files(api)
    gt = _load(tmp_path / "cli" / "annotations" / "person_keypoints_val.json")
    assert {(i["height"], i["width"]) for i in gt.imgs.values()} == {(80, 112)}
    assert len(gt.imgs) == 2

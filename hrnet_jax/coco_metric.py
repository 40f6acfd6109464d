"""COCO keypoint AP: results files and pycocotools' COCOeval, with clear errors instead of its tracebacks."""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
from typing import Any

import numpy as np
from absl import logging
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hrnet_jax.data import coco
from hrnet_jax.data.keypoints import KeypointSpec
from hrnet_jax.errors import UserError


class ResultsError(UserError, ValueError):
    """A results file that COCOeval cannot score; the message names the file and the entry."""


STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def read_results(path: str | pathlib.Path, num_joints: int) -> list[dict[str, Any]]:
    """A COCO keypoint results file, checked for what COCOeval needs."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} does not exist")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: not a valid JSON file ({e})") from e
    if not isinstance(results, list):
        raise ResultsError(
            f"{path}: expected a list of keypoint results, got {type(results).__name__}"
        )
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not {"image_id", "keypoints", "score"} <= r.keys():
            raise ResultsError(f"{path}: result #{i} lacks image_id, keypoints or score")
        if len(r["keypoints"]) != num_joints * 3:
            raise ResultsError(
                f"{path}: result #{i} has {len(r['keypoints'])} keypoint numbers, "
                f"expected {num_joints * 3} ({num_joints} joints)"
            )
    return results


def write_results(path: str | pathlib.Path, results: list[dict[str, Any]]) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))


def prepare_annotations(gt: COCO, spec: KeypointSpec) -> COCO:
    """Gives every GT annotation the area OKS scales by: its own (`spec.use_area`, COCO) or its
    box's (CrowdPose, AIC, whose files carry none), as xtcocotools' use_area does; and `iscrowd` 0
    where a set leaves it out (AIC). In place."""
    for ann in gt.dataset.get("annotations", []):
        ann.setdefault("iscrowd", 0)
        if not spec.use_area or "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    return gt


# CrowdPose's crowd levels by the images' crowdIndex (crowdposetools): easy, medium, hard.
CROWD_LEVELS = (("AP_easy", 0.0, 0.1), ("AP_medium", 0.1, 0.8), ("AP_hard", 0.8, float("inf")))


def keypoint_ap(
    annotations: COCO | str | pathlib.Path,
    results: list[dict[str, Any]],
    spec: KeypointSpec,
    name: str | pathlib.Path | None = None,
) -> dict:
    """The ten COCOeval keypoint stats by name (with `spec`'s sigmas and OKS area), plus AP by crowd
    level for sets with a crowdIndex; all 0 (with a warning) when there are no results.

    `annotations` is the GT annotation file or a COCO object parsed from `name`."""
    if isinstance(annotations, COCO):
        gt, annotation_file = annotations, name or "the annotations"
    else:
        gt, annotation_file = coco.load_coco(annotations), annotations
    prepare_annotations(gt, spec)
    if not results:
        logging.warning("no keypoint results to evaluate: every metric is 0")
        names = [*STAT_NAMES, *extra_names(spec)]
        return dict.fromkeys(names, 0.0)
    unknown = sorted({r["image_id"] for r in results} - set(gt.getImgIds()))
    if unknown:
        raise ResultsError(
            f"{len(unknown)} image ids of the results are not in {annotation_file}: {unknown[:10]}"
        )
    # Without a `bbox` key, loadRes derives each result's area from its keypoints' extent.
    results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        if spec.parts:  # COCO-WholeBody: all joints, then each part with its own sigmas
            whole = _joints_view(gt, spec, 0, spec.num_joints)
            stats = _cocoeval(whole, whole.loadRes(results), spec.sigmas, None)
            metrics = dict(zip(STAT_NAMES, map(float, stats), strict=True))
            for part, _, start, end in spec.parts:
                view = _joints_view(gt, spec, start, end)
                sliced = [{**r, "keypoints": r["keypoints"][3 * start : 3 * end]} for r in results]
                part_stats = _cocoeval(view, view.loadRes(sliced), spec.sigmas[start:end], None)
                metrics[f"AP_{part}"] = float(part_stats[0])
            return metrics
        detections = gt.loadRes(results)
        stats = _cocoeval(gt, detections, spec.sigmas, None)
        metrics = dict(zip(STAT_NAMES, map(float, stats), strict=True))
        for level, low, high in CROWD_LEVELS if spec.crowd_index else ():
            ids = [i for i, im in gt.imgs.items() if low <= im.get("crowdIndex", 0.0) < high]
            metrics[level] = float(_cocoeval(gt, detections, spec.sigmas, ids)[0]) if ids else -1.0
    return metrics


def extra_names(spec: KeypointSpec) -> list[str]:
    if spec.parts:
        return [f"AP_{part}" for part, *_ in spec.parts]
    return [name for name, _, _ in CROWD_LEVELS] if spec.crowd_index else []


def _joints_view(gt: COCO, spec: KeypointSpec, start: int, end: int) -> COCO:
    """`gt` with each person's joints start..end (of the spec's concatenated fields) as its
    `keypoints`, and `num_keypoints` counting those labelled: a person with none is ignored."""
    annotations = []
    for ann in gt.dataset["annotations"]:
        joints = np.concatenate(
            [
                np.asarray(ann.get(field, [0.0] * 3 * (e - b)), float)
                for _, field, b, e in spec.fields
            ]
        ).reshape(-1, 3)[start:end]
        annotations.append(
            {
                **ann,
                "keypoints": joints.ravel().tolist(),
                "num_keypoints": int(np.sum(joints[:, 2] > 0)),
            }
        )
    view = COCO()
    view.dataset = {**gt.dataset, "annotations": annotations}
    view.createIndex()
    return view


def _cocoeval(gt: COCO, detections: COCO, sigmas, image_ids) -> np.ndarray:
    evaluator = COCOeval(gt, detections, "keypoints")
    evaluator.params.useSegm = None
    evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
    if image_ids is not None:
        evaluator.params.imgIds = image_ids
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats)


def format_table(metrics: dict[str, float]) -> str:
    names = [*(n for n in STAT_NAMES if n in metrics), *(n for n in metrics if n not in STAT_NAMES)]
    header = " | ".join(f"{name:>6}" for name in names)
    values = " | ".join(f"{metrics[name]:6.4f}" for name in names)
    return f"| {header} |\n|{'|'.join(['-' * 8] * len(names))}|\n| {values} |"

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
from hrnet_jax.errors import UserError


class ResultsError(UserError, ValueError):
    """A results file that COCOeval cannot score; the message names the file and the entry."""


STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def read_results(path: str | pathlib.Path) -> list[dict[str, Any]]:
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
        if len(r["keypoints"]) != coco.NUM_JOINTS * 3:
            raise ResultsError(
                f"{path}: result #{i} has {len(r['keypoints'])} keypoint numbers, "
                f"expected {coco.NUM_JOINTS * 3}"
            )
    return results


def write_results(path: str | pathlib.Path, results: list[dict[str, Any]]) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))


def keypoint_ap(
    annotations: COCO | str | pathlib.Path,
    results: list[dict[str, Any]],
    name: str | pathlib.Path | None = None,
) -> dict:
    """The ten COCOeval keypoint stats by name; all 0 (with a warning) when there are no results.

    `annotations` is the GT annotation file or a COCO object parsed from `name`."""
    if isinstance(annotations, COCO):
        gt, annotation_file = annotations, name or "the annotations"
    else:
        gt, annotation_file = coco.load_coco(annotations), annotations
    if not results:
        logging.warning("no keypoint results to evaluate: every metric is 0")
        return dict.fromkeys(STAT_NAMES, 0.0)
    unknown = sorted({r["image_id"] for r in results} - set(gt.getImgIds()))
    if unknown:
        raise ResultsError(
            f"{len(unknown)} image ids of the results are not in {annotation_file}: {unknown[:10]}"
        )
    # Without a `bbox` key, loadRes derives each result's area from its keypoints' extent.
    results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(results), "keypoints")
        evaluator.params.useSegm = None
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, np.asarray(evaluator.stats), strict=True)}


def format_table(metrics: dict[str, float]) -> str:
    header = " | ".join(f"{name:>6}" for name in STAT_NAMES)
    values = " | ".join(f"{metrics[name]:6.4f}" for name in STAT_NAMES)
    return f"| {header} |\n|{'|'.join(['-' * 8] * len(STAT_NAMES))}|\n| {values} |"

"""Evaluation of the val split: predictions, rescoring and OKS NMS, COCO keypoint AP, pictures.

`Evaluator` is built once per run, before training's first step, so that missing or broken val data
fails then rather than after hours of training: it loads the val instances and parses the GT
annotations once, and holds a `Predictor` whose inference is compiled once. `run(variables, step,
out)` evaluates one set of weights and writes keypoints_results.json, metrics.json and vis_*.png
into `out`.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import cv2
import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from hrnet_jax import coco_metric, visualize
from hrnet_jax.data import keypoints, mpii, sources
from hrnet_jax.errors import UserError
from hrnet_jax.nms import rescore_and_nms
from hrnet_jax.predictor import Predictor

# The config fields that decide what an evaluation measures: its output folder is named by them.
EVAL_SETTINGS = (
    "input_size",
    "heatmap_size",
    "codec",
    "eval",
    "model.dtype",
    "data.root",
    "data.annotation_file",
    "data.image_dir",
    "data.val_split",
    "data.format",
    "data.tfds_data_dir",
    "data.mean",
    "data.std",
    "data.bbox_padding",
    "data.keypoints",
    "data.custom_keypoints",
    "data.strict",
)


def _head_sizes(config, instances) -> tuple[np.ndarray, str]:
    """MPII's PCKh normalisers: the official gt_valid.mat's head boxes (`eval.mpii_headboxes`,
    relative to data.root), else the approximation from the GT upper neck and head top."""
    if config.eval.mpii_headboxes:
        path = pathlib.Path(config.data.root) / config.eval.mpii_headboxes
        if not path.is_file():
            raise FileNotFoundError(f"eval.mpii_headboxes: {path} does not exist")
        sizes = mpii.head_sizes_from_mat(path)
        if len(sizes) != len(instances):
            raise UserError(
                f"{path} has {len(sizes)} head boxes but the val split has {len(instances)} persons"
            )
        return sizes, ""
    note = (
        "PCKh normalised by the GT neck-to-head-top distance, not the official head boxes (set "
        "eval.mpii_headboxes to MPII's gt_valid.mat for the official numbers)"
    )
    return mpii.head_sizes_from_joints(instances.joints), note


def settings_hash(config: ml_collections.ConfigDict) -> str:
    """8 hex digits that change with any evaluation setting (EVAL_SETTINGS)."""
    values = json.loads(config.to_json_best_effort())
    picked = {}
    for key in EVAL_SETTINGS:
        node = values
        for part in key.split("."):
            node = node[part]
        picked[key] = node
    return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:8]


class Evaluator:
    """The val split of `config`, ready to evaluate any weights of the config's model: COCO
    keypoint AP (OKS NMS, COCOeval with the set's sigmas) or, for MPII, PCKh."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        mesh: jax.sharding.Mesh,
        predictor: Predictor | None = None,
    ):
        self.config = config
        self.spec = keypoints.from_config(config)
        self.annotation_file, self.image_dir = sources.split_paths(config, config.data.val_split)
        coco_ap = self.spec.metric == "coco_ap"
        self.gt = sources.load_annotations(config, config.data.val_split) if coco_ap else None
        self.instances, report = sources.load_instances(
            config, config.data.val_split, train=False, gt=self.gt
        )
        if len(self.instances) == 0:
            raise UserError(f"the val split ({self.annotation_file}) has no person instances")
        self.left_out = report.left_out.get("bad annotation", 0)  # data.strict=False only
        if coco_ap:  # keypoint_ap prepares the GT's OKS areas at each evaluation
            self.primary, self.head_note = "AP", ""
            self.metric_names = (*coco_metric.STAT_NAMES, *coco_metric.extra_names(self.spec))
            self._image_files = {
                i: self.image_dir / im["file_name"] for i, im in self.gt.imgs.items()
            }
        else:
            self.primary, self.metric_names = "PCKh", mpii.METRIC_NAMES
            self.head_sizes, self.head_note = _head_sizes(config, self.instances)
            files = zip(self.instances.image_id, self.instances.image_file, strict=True)
            self._image_files = dict(files)
        self.predictor = predictor or Predictor(config, mesh)

    def run(self, variables: dict, step: int, out: str | pathlib.Path) -> dict[str, float]:
        """Evaluates `variables` (replicated on the predictor's mesh); writes into `out` (process 0)."""
        preds = self.predictor.predict(self.instances, variables)
        unreadable = len(self.instances) - len(preds["index"])
        metrics = dict.fromkeys(self.metric_names, 0.0)
        if jax.process_index() == 0:
            out = pathlib.Path(out)
            if self.gt is not None:
                results = rescore_and_nms(preds, self.config.eval, self.spec.sigmas)
                metrics = coco_metric.keypoint_ap(
                    self.gt, results, self.spec, name=self.annotation_file
                )
            else:
                results, metrics = self._pckh(preds)
            coco_metric.write_results(out / "keypoints_results.json", results)
            summary = (
                f"step {step}: {self.primary} {metrics[self.primary]:.4f} on "
                f"{len(preds['index'])} instances"
            )
            notes = [n for n in (self._skipped_note(unreadable), self.head_note) if n]
            logging.info("%s (%s)", "; ".join([summary, *notes]), out)
            print("\n".join([coco_metric.format_table(metrics), *notes]), flush=True)
            record = {
                **metrics,
                "instances": len(preds["index"]),
                "skipped": unreadable + self.left_out,
            }
            (out / "metrics.json").write_text(json.dumps(record, indent=1))
            self._draw(results, out)
        if jax.process_count() > 1:
            values = np.array([metrics[k] for k in self.metric_names], np.float32)
            values = multihost_utils.broadcast_one_to_all(values)
            metrics = dict(zip(self.metric_names, map(float, values), strict=True))
        return metrics

    def _pckh(self, preds: dict) -> tuple[list[dict], dict[str, float]]:
        """MPII: PCKh@0.5 per group and mean, and the mean at 0.1; unreadable persons are misses."""
        joints = np.full(self.instances.joints.shape, np.inf)
        joints[preds["index"]] = preds["keypoints"][..., :2]
        args = (joints, self.instances.joints, self.instances.joints_vis, self.head_sizes)
        at_half, at_tenth = mpii.pckh(*args, threshold=0.5), mpii.pckh(*args, threshold=0.1)
        metrics = {"PCKh": at_half["Mean"], **{n: at_half[n] for n, _ in mpii.GROUPS}}
        metrics["PCKh@0.1"] = at_tenth["Mean"]
        results = [
            {
                "image_id": int(image_id),
                "index": int(i),
                "keypoints": [round(float(v), 3) for v in kp.ravel()],
            }
            for i, image_id, kp in zip(
                preds["index"], preds["image_id"], preds["keypoints"], strict=True
            )
        ]
        return results, metrics

    def _skipped_note(self, unreadable: int) -> str:
        if not unreadable and not self.left_out:
            return ""
        parts = [
            f"{n} {why}"
            for n, why in ((unreadable, "unreadable images"), (self.left_out, "bad annotations"))
            if n
        ]
        return (
            f"{unreadable + self.left_out} val persons skipped (data.strict=False: {', '.join(parts)}); "
            "this AP counts them as misses"
        )

    def _draw(self, results: list[dict], out: pathlib.Path) -> None:
        by_image: dict[int, list] = {}
        for r in results:
            by_image.setdefault(r["image_id"], []).append(r["keypoints"])
        k = self.spec.num_joints
        for image_id in sorted(by_image)[: self.config.eval.num_visualize]:
            image = cv2.imread(str(self._image_files[image_id]))
            if image is None:
                continue
            keypoints = np.array(by_image[image_id]).reshape(-1, k, 3)
            drawn = visualize.draw_skeletons(image, keypoints, self.spec)
            visualize.save_png(out / f"vis_{image_id}.png", drawn)

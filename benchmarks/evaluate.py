"""End-to-end evaluator throughput: data, flip-test inference and decoding, then OKS NMS and COCOeval.

    python -m benchmarks.evaluate --config=configs/w32_384x288.py [--append]

Runs the real evaluator over the coco_mini detector boxes (118 instances of 4 real images) with a
randomly initialised model (AP is meaningless; the work is the same) and reports instances/s and
the seconds spent in each part (decode_s: decoding as many heatmaps, part of predict_s).
"""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np
from absl import flags

from benchmarks import common
from hrnet_jax import cli, coco_metric, config_lib, parallel, runtime
from hrnet_jax.data import sources
from hrnet_jax.nms import rescore_and_nms
from hrnet_jax.predictor import Predictor

_CONFIG = cli.ConfigFlag()
_DATA = flags.DEFINE_string(
    "data",
    str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"),
    "coco_mini: annotations/person_keypoints_mini.json, images/, person_detection_results/.",
)
_APPEND = flags.DEFINE_bool("append", False, "Append the result to BENCHMARKS.md.")


def main():
    config = _CONFIG.value.as_configdict()
    config.data.root = _DATA.value
    config.data.annotation_file = "annotations/person_keypoints_mini.json"
    config.data.image_dir = "images"
    config.eval.use_gt_bbox = False
    config.eval.det_file = "person_detection_results/COCO_mini_detections_AP_H_56_person.json"
    config.eval.batch_size_per_device = min(config.eval.batch_size_per_device, 16)
    config = config_lib.check(config)
    runtime.configure(config.xla)
    mesh = parallel.make_mesh()
    predictor = Predictor(config, mesh)
    init = jax.jit(predictor.model.init, out_shardings=parallel.replicated(mesh))
    predictor.variables = init(jax.random.key(0), np.zeros((1, *config.input_size, 3), np.float32))
    instances, _ = sources.load_instances(config, config.data.val_split, train=False)
    predictor.predict(instances.select(np.arange(1)))  # compile

    start = time.perf_counter()
    preds = predictor.predict(instances)
    predict_s = time.perf_counter() - start
    heatmaps = np.random.default_rng(0).random(
        (len(instances), *config.heatmap_size, config.model.num_joints), np.float32
    )
    start = time.perf_counter()
    predictor.codec.decode(heatmaps)
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    results = rescore_and_nms(preds, config.eval, predictor.spec.sigmas)
    nms_s = time.perf_counter() - start
    start = time.perf_counter()
    annotations, _ = sources.split_paths(config, config.data.val_split)
    coco_metric.keypoint_ap(annotations, results, predictor.spec)
    cocoeval_s = time.perf_counter() - start
    total = predict_s + nms_s + cocoeval_s
    common.report(
        {
            "config": list(config.input_size),
            "flip_test": config.eval.flip_test,
            "instances": len(instances),
            "instances_per_s": round(len(instances) / total, 2),
            "predict_s": round(predict_s, 3),
            "decode_s": round(decode_s, 4),
            "nms_s": round(nms_s, 4),
            "cocoeval_s": round(cocoeval_s, 4),
        },
        _APPEND.value,
    )


if __name__ == "__main__":
    cli.run(main, config=_CONFIG)

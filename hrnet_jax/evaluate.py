"""Evaluates a checkpoint on the val split, or scores an existing COCO keypoint results file.

    python -m hrnet_jax.evaluate --config=configs/w32_384x288.py --workdir=DIR [--step=N | --best]
        [--out=OUT]
    python -m hrnet_jax.evaluate --results=FILE.json --annotations=GT.json [--keypoints=crowdpose]

The first restores DIR's checkpoint onto whatever devices this process has and writes
keypoints_results.json, metrics.json, config.json and vis_*.png into OUT, by default
DIR/eval/<step>-<8 hex digits of the evaluation settings>: never over the run's own DIR/eval/<step>.
The second writes FILE.metrics.json.
"""

import json
import pathlib

from absl import flags

from hrnet_jax import cli, coco_metric, parallel, runtime
from hrnet_jax.data import keypoints
from hrnet_jax.errors import UserError
from hrnet_jax.evaluator import Evaluator, settings_hash
from hrnet_jax.predictor import Predictor

_CONFIG = cli.ConfigFlag(required=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory holding checkpoints/.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Evaluate the best-AP checkpoint (checkpoints_best/).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/eval/<step>-<settings>).")
_RESULTS = flags.DEFINE_string("results", None, "Score this COCO results file instead.")
_ANNOTATIONS = flags.DEFINE_string("annotations", None, "GT annotations for --results.")
_KEYPOINTS = flags.DEFINE_enum(
    "keypoints",
    None,
    list(keypoints.PRESETS),
    "Keypoint set of --results (default: --config's, or coco).",
)


def score_results_file() -> None:
    if not _ANNOTATIONS.value:
        raise UserError("--results needs --annotations (the ground-truth COCO file)")
    if _KEYPOINTS.value:
        spec = keypoints.PRESETS[_KEYPOINTS.value]
    else:
        spec = keypoints.from_config(_CONFIG.value) if _CONFIG.given else keypoints.COCO
    if spec.metric != "coco_ap":
        raise UserError(
            f"--results scores COCO-format keypoint results; {spec.name}'s {spec.metric} comes from "
            "--config and --workdir"
        )
    results = coco_metric.read_results(_RESULTS.value, spec.num_joints)
    metrics = coco_metric.keypoint_ap(_ANNOTATIONS.value, results, spec)
    print(coco_metric.format_table(metrics))
    out = pathlib.Path(_RESULTS.value).with_suffix(".metrics.json")
    out.write_text(json.dumps(metrics, indent=1))


def main() -> None:
    if _RESULTS.value:
        score_results_file()
        return
    if not _WORKDIR.value or not _CONFIG.given:
        raise UserError("give --config and --workdir (or --results and --annotations)")
    config = _CONFIG.value
    runtime.configure(config.xla)
    mesh = parallel.make_mesh()
    predictor = Predictor.from_checkpoint(
        _WORKDIR.value, _STEP.value, best=_BEST.value, config=config, mesh=mesh
    )
    evaluator = Evaluator(config, mesh, predictor)
    out = pathlib.Path(
        _OUT.value
        or pathlib.Path(_WORKDIR.value) / "eval" / f"{predictor.step}-{settings_hash(config)}"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.to_json_best_effort(indent=1))
    evaluator.run(predictor.variables, predictor.step, out)


if __name__ == "__main__":
    cli.run(main, config=_CONFIG)

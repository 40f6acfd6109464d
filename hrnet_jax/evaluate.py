"""Evaluation: flip-test inference on all devices, heatmap decoding, OKS NMS, COCO keypoint AP.

    python -m hrnet_jax.evaluate --config=configs/w32_384x288.py --workdir=DIR [--step=N]
    python -m hrnet_jax.evaluate --results=FILE.json --annotations=GT.json

The first restores a checkpoint of DIR/checkpoints onto whatever devices this process has and
writes DIR/eval/<step>/{keypoints_results.json, metrics.json, vis_*.png}; the second scores an
existing results file and writes FILE.metrics.json. Training calls `evaluate` the same way.
"""

from __future__ import annotations

import functools
import json
import pathlib
import sys
from collections.abc import Callable

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from hrnet_jax import (
    checkpoint,
    coco_metric,
    config_lib,
    models,
    nms,
    parallel,
    runtime,
    visualize,
)
from hrnet_jax.data import coco, pipeline, sources, transforms


def flip_permutation(num_joints: int, flip_pairs) -> np.ndarray:
    perm = np.arange(num_joints)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


def heatmaps_with_flip_test(
    apply: Callable[[jax.Array], jax.Array], images: jax.Array, flip_perm, shift: bool
) -> jax.Array:
    """Averages the heatmaps of the images and of their mirror images, mirrored back with left and
    right joints swapped and (`shift`) moved one pixel right to undo the flip's half-pixel offset."""
    both = apply(jnp.concatenate([images, images[:, :, ::-1]], axis=0)).astype(jnp.float32)
    heatmaps, flipped = jnp.split(both, 2)
    flipped = flipped[:, :, ::-1, :][..., jnp.asarray(flip_perm)]
    if shift:  # column x takes column x - 1; column 0 keeps its value (the reference's shift)
        flipped = jnp.concatenate([flipped[:, :, :1], flipped[:, :, :-1]], axis=2)
    return (heatmaps + flipped) * 0.5


def make_inference(model, config: ml_collections.ConfigDict, mesh) -> Callable:
    """jit(shard_map) of uint8 images → float32 heatmaps over the mesh's `data` axis."""
    mean, std = tuple(config.data.mean), tuple(config.data.std)
    perm = flip_permutation(config.model.num_joints, config.data.flip_pairs)

    def infer(variables, images):
        x = models.normalize(images, mean, std, model.backbone.dtype)
        apply = functools.partial(model.apply, variables)
        if config.eval.flip_test:
            return heatmaps_with_flip_test(apply, x, perm, config.eval.shift_heatmap)
        return apply(x).astype(jnp.float32)

    sharded = jax.shard_map(
        infer, mesh=mesh, in_specs=(P(), P(parallel.DATA_AXIS)), out_specs=P(parallel.DATA_AXIS)
    )
    return jax.jit(sharded)


def predict(config, model, variables, instances, mesh) -> dict[str, np.ndarray]:
    """Keypoints (N, 17, 3: x, y, score) in image pixels for every instance, on every process."""
    codec = pipeline.make_codec(config)
    batches = pipeline.eval_iterator(
        instances,
        pipeline.make_sampler(config, train=False),
        global_batch_size=config.eval.batch_size_per_device * mesh.size,
        options=pipeline.DataOptions.from_config(config.data),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    infer = make_inference(model, config, mesh)
    rows = []
    for batch in batches:
        heatmaps = infer(variables, parallel.global_batch({"image": batch["image"]}, mesh)["image"])
        coords, scores = codec.decode(
            parallel.local_rows(heatmaps), config.codec.decoding, config.codec.blur_kernel_size
        )
        joints = transforms.heatmap_to_image(
            coords, batch["center"], batch["scale"], config.heatmap_size
        )
        rows.append(
            {
                "keypoints": np.concatenate([joints, scores[..., None]], -1).astype(np.float32),
                **{k: batch[k] for k in ("index", "valid", "center", "scale", "score", "image_id")},
            }
        )
    batches.close()
    local = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    if jax.process_count() > 1:  # gathers through JAX: int64 comes back as int32
        local = multihost_utils.process_allgather(local, tiled=True)
    index = local["index"].astype(np.int64)
    order = np.argsort(np.where(local["valid"], index, np.iinfo(np.int64).max))
    return {k: v[order][: int(local["valid"].sum())] for k, v in local.items()}


def rescore_and_nms(preds: dict[str, np.ndarray], config: ml_collections.ConfigDict) -> list[dict]:
    """COCO results: box score x mean joint score over joints above `in_vis_thre`, then OKS NMS per
    image (the reference's COCODataset.evaluate)."""
    kpt_scores = preds["keypoints"][..., 2]
    confident = kpt_scores > config.eval.in_vis_thre
    mean_conf = np.sum(kpt_scores * confident, 1) / np.maximum(confident.sum(1), 1)
    scores = preds["score"] * mean_conf
    areas = np.prod(preds["scale"] * 200.0, axis=1)
    results = []
    for image_id in np.unique(preds["image_id"]):
        idx = np.flatnonzero(preds["image_id"] == image_id)
        args = (preds["keypoints"][idx], scores[idx], areas[idx], config.eval.oks_nms_threshold)
        if config.eval.soft_nms:
            keep = nms.soft_oks_nms(*args, max_dets=config.eval.soft_nms_max_dets)
        else:
            keep = nms.oks_nms(*args)
        for i in idx[keep] if len(keep) else idx:
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": 1,
                    "keypoints": [round(float(v), 3) for v in preds["keypoints"][i].ravel()],
                    "score": float(scores[i]),
                    "center": preds["center"][i].tolist(),
                    "scale": preds["scale"][i].tolist(),
                }
            )
    return results


def evaluate(
    config: ml_collections.ConfigDict,
    model,
    variables,
    mesh,
    workdir: str | pathlib.Path,
    step: int,
    writer=None,
) -> dict[str, float]:
    """Predicts the val split, writes results/metrics/pictures under WORKDIR/eval/<step>, returns AP."""
    instances = sources.load_instances(config, config.data.val_split, train=False)
    preds = predict(config, model, variables, instances, mesh)
    metrics = dict.fromkeys(coco_metric.STAT_NAMES, 0.0)
    if jax.process_index() == 0:
        out = pathlib.Path(workdir) / "eval" / str(step)
        results = rescore_and_nms(preds, config)
        coco_metric.write_results(out / "keypoints_results.json", results)
        annotations, images = sources.split_paths(config, config.data.val_split)
        metrics = coco_metric.keypoint_ap(annotations, results)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        logging.info("step %d: AP %.4f on %d instances", step, metrics["AP"], len(instances))
        print(coco_metric.format_table(metrics), flush=True)
        if writer is not None:
            writer.write(step, metrics, prefix="eval")
        _draw(results, annotations, images, out, config.eval.num_visualize)
    if jax.process_count() > 1:
        values = np.array([metrics[k] for k in coco_metric.STAT_NAMES], np.float32)
        values = multihost_utils.broadcast_one_to_all(values)
        metrics = dict(zip(coco_metric.STAT_NAMES, map(float, values), strict=True))
    return metrics


def _draw(results, annotations, image_dir, out: pathlib.Path, count: int) -> None:
    file_names = {i: info["file_name"] for i, info in coco.load_coco(annotations).imgs.items()}
    by_image: dict[int, list] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r["keypoints"])
    for image_id in sorted(by_image)[:count]:
        image = cv2.imread(str(pathlib.Path(image_dir) / file_names[image_id]))
        if image is None:
            continue
        keypoints = np.array(by_image[image_id]).reshape(-1, 17, 3)
        visualize.save_png(out / f"vis_{image_id}.png", visualize.draw_skeletons(image, keypoints))


def restore_replicated(
    checkpoints: checkpoint.Checkpoints, config, model, mesh, step: int
) -> tuple[dict, int]:
    """Params and BN statistics of checkpoint `step`, replicated over `mesh` whatever devices
    the run was trained on."""
    x = jnp.zeros((1, *config.input_size, 3))
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    sharding = parallel.replicated(mesh)
    abstract = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes
    )
    return checkpoints.restore_variables(dict(abstract), config, step)


def restore_and_evaluate(config, workdir, step: int | None = None) -> dict[str, float]:
    """The CLI's path: restore params and BN statistics into this process's devices, evaluate."""
    mesh = parallel.make_mesh()
    model = models.create_model(config.model)
    step = checkpoint.require_step(workdir, step)
    checkpoints = checkpoint.Checkpoints(workdir, use_async=False)
    try:
        variables, step = restore_replicated(checkpoints, config, model, mesh, step)
    finally:
        checkpoints.close()
    return evaluate(config, model, variables, mesh, workdir, step)


def _define_flags():
    from ml_collections import config_flags

    return {
        "config": config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True),
        "workdir": flags.DEFINE_string("workdir", None, "Run directory holding checkpoints/."),
        "step": flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest)."),
        "results": flags.DEFINE_string("results", None, "Score this COCO results file instead."),
        "annotations": flags.DEFINE_string("annotations", None, "GT annotations for --results."),
    }


def main(argv, defined):
    del argv
    from hrnet_jax import metrics as metrics_lib

    metrics_lib.quiet_library_logs()
    try:
        if defined["results"].value:
            if not defined["annotations"].value:
                raise ValueError("--results needs --annotations (the ground-truth COCO file)")
            results = coco_metric.read_results(defined["results"].value)
            metrics = coco_metric.keypoint_ap(defined["annotations"].value, results)
            print(coco_metric.format_table(metrics))
            out = pathlib.Path(defined["results"].value).with_suffix(".metrics.json")
            out.write_text(json.dumps(metrics, indent=1))
            return
        if defined["config"].value is None or not defined["workdir"].value:
            raise ValueError("give --config and --workdir (or --results and --annotations)")
        config = config_lib.validate(defined["config"].value)
        runtime.configure(config.xla)
        restore_and_evaluate(config, defined["workdir"].value, defined["step"].value)
    except (FileNotFoundError, ValueError, KeyError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    _flags = _define_flags()
    app.run(functools.partial(main, defined=_flags))

"""Exports a trained (or imported) model as a self-contained inference artifact.

    python -m hrnet_jax.export --workdir=DIR [--step=N | --best] --format=onnx|stablehlo
        [--flip_test] [--out=FILE]

The artifact is the evaluator's network function in eval mode, weights included: a uint8 RGB
image batch (B, H, W, 3) in, float32 heatmaps (B, h, w, K) out, for any batch size B; with
`--flip_test` the flipped-and-merged heatmaps the evaluator computes. `onnx` converts it with
jax2onnx (run it with onnxruntime, TensorRT, ...); `stablehlo` serialises it with `jax.export` for
cpu, cuda and tpu (any later JAX loads it). Both carry the run's config, so `hrnet_jax.deploy` can
crop and decode for them without the checkpoint. DIR may also be a folder written by
`python -m hrnet_jax.tools.import_torch`. The default FILE is DIR/export/model_<step>[_flip].<ext>.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging as std_logging
import pathlib
import zipfile

import jax
import jax.numpy as jnp
import ml_collections
from absl import flags, logging

from hrnet_jax import cli, config_lib, models, parallel
from hrnet_jax.deploy import METADATA_KEY
from hrnet_jax.errors import UserError
from hrnet_jax.predictor import Predictor, inference_function

FORMATS = {"onnx": ".onnx", "stablehlo": ".stablehlo"}
PLATFORMS = ("cpu", "cuda", "tpu")  # what a stablehlo artifact is lowered for
INPUT_NAME, OUTPUT_NAME = "images", "heatmaps"

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory holding checkpoints/.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Export the best-AP checkpoint (checkpoints_best/).")
_FORMAT = flags.DEFINE_enum("format", None, list(FORMATS), "Artifact format.")
_FLIP = flags.DEFINE_bool("flip_test", False, "Include the flip test (twice the compute).")
_OUT = flags.DEFINE_string("out", None, "Output file (default: DIR/export/model_<step>...).")


def serving_config(
    config: ml_collections.ConfigDict, flip_test: bool
) -> ml_collections.FrozenConfigDict:
    """`config` for an exported network: `eval.flip_test` as asked, and XLA's own convolution
    gradient (models/conv.py's custom VJP is for training on CPU; exporters need plain ops)."""
    config = ml_collections.ConfigDict(config)
    config.eval.flip_test = flip_test
    config.model.conv_weight_grad = "xla"
    return config_lib.check(config)


def metadata(config: ml_collections.ConfigDict, step: int | None) -> dict:
    """What a runtime needs besides the network: the config (crop, codec, keypoint set, rescoring
    settings), the step, and the tensors' layout."""
    return {
        "format_version": 1,
        "step": step,
        "input": f"{INPUT_NAME}: uint8 RGB (batch, {config.input_size[0]}, {config.input_size[1]}, 3)",
        "output": f"{OUTPUT_NAME}: float32 (batch, {config.heatmap_size[0]}, "
        f"{config.heatmap_size[1]}, {config.model.num_joints})",
        "config": json.loads(config.to_json_best_effort()),
    }


def export(
    config: ml_collections.ConfigDict,
    variables: dict,
    fmt: str,
    path: str | pathlib.Path,
    *,
    flip_test: bool = False,
    step: int | None = None,
) -> pathlib.Path:
    """Writes `variables` of `config`'s network as a `fmt` artifact at `path`; returns the path."""
    if fmt not in FORMATS:
        raise UserError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    config = serving_config(config, flip_test)
    infer = inference_function(config, models.create_model(config.model))
    function = functools.partial(infer, variables)
    (batch,) = jax.export.symbolic_shape("batch")
    images = jax.ShapeDtypeStruct((batch, *config.input_size, 3), jnp.uint8)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = metadata(config, step)
    if fmt == "onnx":
        _write_onnx(function, images, meta, path)
    else:
        exported = jax.export.export(jax.jit(function), platforms=PLATFORMS)(images)
        with zipfile.ZipFile(path, "w") as archive:  # stored: the weights do not compress
            archive.writestr("meta.json", json.dumps(meta))
            archive.writestr("exported.bin", bytes(exported.serialize()))
    return path


def _write_onnx(function, images: jax.ShapeDtypeStruct, meta: dict, path: pathlib.Path) -> None:
    # jax2onnx logs a traceback for each plugin of a library it supports but we do not install
    # (equinox, dm_pix), and onnx_ir a warning per untyped shape constant: noise for this network.
    for name in ("jax2onnx.plugins.plugin_system", "onnx_ir"):
        std_logging.getLogger(name).setLevel(std_logging.ERROR)
    try:
        import jax2onnx
        import onnx
    except ImportError as e:
        raise UserError(
            f"--format=onnx needs jax2onnx and onnx ({e.name} is missing): pip install -e '.[onnx]' "
            "&& pip install --no-deps jax2onnx"
        ) from e
    with _without_slow_passes():
        model = jax2onnx.to_onnx(
            function,
            [images],
            model_name="hrnet_jax",
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
        )
    # jax2onnx annotates the NHWC convolutions' intermediate tensors with NCHW shapes, which
    # onnxruntime rejects; the runtime infers them itself.
    del model.graph.value_info[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, str(path))


# jax2onnx 0.17's two transpose-cancelling passes look up each node's producer by scanning the
# whole graph, until nothing changes: they ran for over 4 minutes without finishing on HRNet-W32's
# 2,700 nodes (the other passes take 3 s in all). onnxruntime cancels those transposes itself when
# it loads the model (its optimised W32 graph has none), so the export skips the two.
_SLOW_PASSES = ("remove_redundant_transpose_add_forests", "remove_redundant_transpose_pairs")


@contextlib.contextmanager
def _without_slow_passes():
    from jax2onnx.converter import ir_optimizations

    passes = getattr(ir_optimizations, "_OPTIMIZER_PASSES", None)
    if passes is not None:
        ir_optimizations._OPTIMIZER_PASSES = tuple(p for p in passes if p.name not in _SLOW_PASSES)
    try:
        yield
    finally:
        if passes is not None:
            ir_optimizations._OPTIMIZER_PASSES = passes


def default_path(workdir: str | pathlib.Path, step: int, fmt: str, flip_test: bool) -> pathlib.Path:
    name = f"model_{step}{'_flip' if flip_test else ''}{FORMATS[fmt]}"
    return pathlib.Path(workdir) / "export" / name


def main() -> None:
    predictor = Predictor.from_checkpoint(
        _WORKDIR.value,
        _STEP.value,
        best=_BEST.value,
        mesh=parallel.make_mesh(jax.devices()[:1]),
    )
    out = _OUT.value or default_path(_WORKDIR.value, predictor.step, _FORMAT.value, _FLIP.value)
    path = export(
        predictor.config,
        predictor.variables,
        _FORMAT.value,
        out,
        flip_test=_FLIP.value,
        step=predictor.step,
    )
    logging.info("exported step %d as %s: %s", predictor.step, _FORMAT.value, path)
    print(json.dumps({"out": str(path), "step": predictor.step, "format": _FORMAT.value}))


if __name__ == "__main__":
    cli.run(main, required=["workdir", "format"])

"""Inference throughput of the evaluator's jitted forward pass, with and without the flip test, or
of the same network exported to ONNX and run by onnxruntime (on this machine's CPU).

python -m benchmarks.inference --config=configs/w32_384x288.py --batch=8 [--dtype=bf16] [--append]
python -m benchmarks.inference --config=configs/w32_384x288.py --batch=8 --backend=onnxruntime
"""

from __future__ import annotations

import functools
import pathlib
import tempfile
import time

import jax
import numpy as np
from absl import flags

from benchmarks import common
from hrnet_jax import cli, config_lib, deploy, export, parallel, runtime
from hrnet_jax.errors import UserError
from hrnet_jax.predictor import Predictor

_CONFIG = cli.ConfigFlag()
_BATCH = flags.DEFINE_integer("batch", 8, "Images per device.")
_DTYPE = flags.DEFINE_enum("dtype", "fp32", ["fp32", "bf16"], "Compute dtype (params stay fp32).")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed batches (after one warm-up batch).")
_APPEND = flags.DEFINE_bool("append", False, "Append the result to BENCHMARKS.md.")
_BACKEND = flags.DEFINE_enum(
    "backend",
    "jax",
    ["jax", "onnxruntime"],
    "jax: the evaluator's jit; onnxruntime: an ONNX export.",
)


def images_per_second(config, mesh, variables, images, flip: bool) -> float:
    config = config.as_configdict()
    config.eval.flip_test = flip
    predictor = Predictor(config_lib.check(config), mesh, variables)
    jax.block_until_ready(predictor.heatmaps(images))  # compile and warm up
    start = time.perf_counter()
    for _ in range(_STEPS.value):
        jax.block_until_ready(predictor.heatmaps(images))
    return _STEPS.value * images.shape[0] / (time.perf_counter() - start)


def onnx_images_per_second(config, variables, images: np.ndarray, flip: bool) -> float:
    """The same network exported to ONNX (hrnet_jax.export) and run by onnxruntime on the CPU."""
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "model.onnx"
        export.export(config, variables, "onnx", path, flip_test=flip)
        heatmaps = deploy.load(path).heatmaps
    heatmaps(images)  # warm up
    start = time.perf_counter()
    for _ in range(_STEPS.value):
        heatmaps(images)
    return _STEPS.value * images.shape[0] / (time.perf_counter() - start)


def main():
    if _BACKEND.value == "onnxruntime" and _DTYPE.value != "fp32":
        raise UserError("--backend=onnxruntime measures the fp32 export; drop --dtype")
    config = _CONFIG.value.as_configdict()
    config.model.dtype = {"fp32": "float32", "bf16": "bfloat16"}[_DTYPE.value]
    config = config_lib.check(config)
    runtime.configure(config.xla)
    mesh = parallel.make_mesh()
    model = Predictor(config, mesh).model
    init = jax.jit(model.init, out_shardings=parallel.replicated(mesh))
    variables = init(jax.random.key(0), np.zeros((1, *config.input_size, 3), np.float32))
    batch = _BATCH.value * mesh.size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, *config.input_size, 3), np.uint8)
    if _BACKEND.value == "onnxruntime":
        rate = functools.partial(onnx_images_per_second, config, variables, images)
    else:
        images = parallel.global_batch({"image": images}, mesh)["image"]
        rate = functools.partial(images_per_second, config, mesh, variables, images)
    result = {
        "config": list(config.input_size),
        "backend": _BACKEND.value,
        "dtype": _DTYPE.value,
        "devices": mesh.size,
        "batch_per_device": _BATCH.value,
        "img_per_s": round(rate(False), 2),
        "img_per_s_flip": round(rate(True), 2),
    }
    common.report(result, _APPEND.value)


if __name__ == "__main__":
    cli.run(main, config=_CONFIG)

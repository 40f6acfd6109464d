"""Train-step throughput: one jitted, sharded step of the real model on all local devices.

    python -m benchmarks.train_step --config=configs/w32_256x192.py --batch_per_device=8 \
        [--dtype=bf16] [--steps=5] [--peak_tflops=989] [--append]

Prints compile time, step time, images/s, XLA's flops per image, achieved TFLOP/s and (given the
device's peak) model FLOPs utilisation. Batches are random; the step is exactly the training one.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import flags

from benchmarks import common
from hrnet_jax import cli, config_lib, models, parallel, runtime, train

_CONFIG = cli.ConfigFlag()
_BATCH = flags.DEFINE_integer("batch_per_device", 8, "Images per device.")
_DTYPE = flags.DEFINE_enum("dtype", "fp32", ["fp32", "bf16"], "Compute dtype (params stay fp32).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps (after one warm-up step).")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Peak TFLOP/s of one device, for MFU.")
_APPEND = flags.DEFINE_bool("append", False, "Append the result to BENCHMARKS.md.")


def random_batch(config, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "image": rng.integers(0, 256, (batch, *config.input_size, 3), np.uint8),
        "heatmaps": rng.random((batch, *config.heatmap_size, config.model.num_joints), np.float32),
        "target_weight": np.ones((batch, config.model.num_joints), np.float32),
    }


def main():
    config = _CONFIG.value.as_configdict()
    config.model.dtype = {"fp32": "float32", "bf16": "bfloat16"}[_DTYPE.value]
    config = config_lib.check(config)
    runtime.configure(config.xla)
    mesh = parallel.make_mesh()
    global_batch = _BATCH.value * mesh.size
    model = models.create_model(config.model)
    schedule = train.learning_rate_schedule(config.train, steps_per_epoch=1000)
    tx = train.create_optimizer(config.train, schedule)
    state = train.init_state(model, tx, config.input_size, 0, mesh)
    batch = parallel.global_batch(random_batch(config, global_batch), mesh)
    step = train.compile_train_step(model, tx, schedule, config, mesh)

    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    flops = compiled.cost_analysis()["flops"]
    state, metrics = compiled(state, batch)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(_STEPS.value):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    step_s = float(np.median(times))
    tflops = flops * mesh.size / step_s / 1e12  # cost_analysis counts one device's program
    result = {
        "config": list(config.input_size),
        "dtype": _DTYPE.value,
        "remat": config.model.remat,
        "devices": mesh.size,
        "batch_per_device": _BATCH.value,
        "compile_s": round(compile_s, 2),
        "step_s": round(step_s, 4),
        "img_per_s": round(global_batch / step_s, 2),
        "flops_per_img": flops * mesh.size / global_batch,
        "tflops": round(tflops, 3),
    }
    if _PEAK.value:
        result["mfu"] = round(tflops / (_PEAK.value * mesh.size), 4)
    common.report(result, _APPEND.value)


if __name__ == "__main__":
    cli.run(main, config=_CONFIG)

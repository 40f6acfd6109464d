"""The real train step (or the evaluator's flip-test inference) compiled for a TPU slice on this
machine, without a TPU: per-chip HBM, XLA's flops and bytes, and a roofline bound on img/s.

    python -m benchmarks.aot --config=configs/w32_384x288.py --topology=v5e:2x4 \
        --batch_per_device=64 --dtype=bfloat16 [--what=train|eval] [--find_max_batch] [--append]

Needs libtpu (`pip install -c requirements/constraints.txt -e '.[tpu]'`), which compiles for a
topology by name ("deviceless AOT"): `jax.experimental.topologies` gives its abstract devices, the
mesh is `parallel.make_mesh` over them, and `train.compile_train_step(...).lower(...).compile()`
runs XLA's TPU compiler on the same program a TPU VM would run. A step that does not fit the chip's
HBM fails to compile (RESOURCE_EXHAUSTED); `--find_max_batch` searches the largest per-chip batch
that compiles. The roofline bound is max(flops / peak bf16 FLOP/s, bytes accessed / HBM
bandwidth) per chip: a lower bound on the step time, so the img/s is an upper bound.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import time
from collections.abc import Callable

import jax
import ml_collections
from absl import flags

from benchmarks import common
from hrnet_jax import cli, config_lib, models, parallel, runtime, train
from hrnet_jax.errors import UserError

_CONFIG = cli.ConfigFlag()
_TOPOLOGY = flags.DEFINE_string(
    "topology", "v5e:2x4", "TPU topology name, e.g. v5e:2x4, v5p:2x2x1."
)
_BATCH = flags.DEFINE_integer(
    "batch_per_device", 32, "Images per chip (the first try with search)."
)
_DTYPE = flags.DEFINE_enum(
    "dtype", None, ["float32", "bfloat16", "fp32", "bf16"], "Compute dtype (default: the config's)."
)
_WHAT = flags.DEFINE_enum(
    "what", "train", ["train", "eval"], "The train step or flip-test inference."
)
_FIND = flags.DEFINE_bool("find_max_batch", False, "Search the largest per-chip batch that fits.")
_RESOLUTION = flags.DEFINE_integer("batch_resolution", 8, "The search's step in images per chip.")
_APPEND = flags.DEFINE_bool("append", False, "Append the result to BENCHMARKS.md.")

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """A TPU chip's published peak numbers (Google Cloud's TPU system architecture pages)."""

    name: str
    peak_bf16_flops: float  # FLOP/s, dense bf16
    hbm_bytes_per_s: float
    hbm_gib: float
    source: str


# Keyed by jax's device_kind. One jax device per chip on each (v4 and v5p: the two TensorCores
# of a chip are one "megacore" device).
CHIPS = {
    # 197 TFLOP/s bf16, 16 GB HBM2 at 819 GB/s per chip.
    "TPU v5 lite": Chip("v5e", 197e12, 819e9, 16, "https://cloud.google.com/tpu/docs/v5e"),
    # 918 TFLOP/s bf16, 32 GB HBM at 1638 GB/s per chip.
    "TPU v6 lite": Chip("v6e", 918e12, 1638e9, 32, "https://cloud.google.com/tpu/docs/v6e"),
    # 459 TFLOP/s bf16, 95 GB HBM2e at 2765 GB/s per chip.
    "TPU v5": Chip("v5p", 459e12, 2765e9, 95, "https://cloud.google.com/tpu/docs/v5p"),
    # 275 TFLOP/s bf16, 32 GiB HBM2 at 1200 GB/s per chip.
    "TPU v4": Chip("v4", 275e12, 1200e9, 32, "https://cloud.google.com/tpu/docs/v4"),
}


class DoesNotFit(Exception):
    """XLA could not fit the program into the chip's HBM; `needed_gib` as XLA reported it."""

    def __init__(self, message: str):
        super().__init__(message)
        found = re.search(r"\(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)", message)
        self.needed_gib = float(found.group(1)) if found else None
        self.available_gib = float(found.group(2)) if found else None


def topology_devices(name: str) -> list:
    """The abstract devices of a TPU topology ("v5e:2x4"); a user error without libtpu or for an
    unknown name."""
    if importlib.util.find_spec("libtpu") is None:
        raise UserError(
            "libtpu is not installed in this interpreter; compiling for a TPU topology needs it: "
            "pip install -c requirements/constraints.txt -e '.[tpu]'"
        )
    from jax.experimental import topologies

    try:
        devices = topologies.get_topology_desc(topology_name=name, platform="tpu").devices
    except RuntimeError as e:
        raise UserError(f"--topology={name}: {str(e).splitlines()[0]}") from None
    if devices[0].device_kind not in CHIPS:
        raise UserError(f"--topology={name}: no published numbers for {devices[0].device_kind!r}")
    return list(devices)


def _abstract(shape, dtype, sharding) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


def lower_train(config: ml_collections.FrozenConfigDict, mesh, batch_per_device: int):
    """The train step exactly as train_loop compiles it, lowered for abstract inputs."""
    axis_name = parallel.DATA_AXIS if config.train.sync_bn else None
    model = models.create_model(config.model, axis_name=axis_name)
    schedule = train.learning_rate_schedule(config.train, steps_per_epoch=1000)
    tx = train.create_optimizer(config.train, schedule)
    state = train.abstract_state(model, tx, config.input_size, mesh)
    n, k = batch_per_device * mesh.size, config.model.num_joints
    rows = parallel.data_sharded(mesh)
    batch = {
        "image": _abstract((n, *config.input_size, 3), "uint8", rows),
        "heatmaps": _abstract((n, *config.heatmap_size, k), config.data.target_dtype, rows),
        "target_weight": _abstract((n, k), "float32", rows),
    }
    return train.compile_train_step(model, tx, schedule, config, mesh).lower(state, batch)


def lower_eval(config: ml_collections.FrozenConfigDict, mesh, batch_per_device: int):
    """The evaluator's jitted (flip-test) inference, lowered for abstract inputs."""
    from hrnet_jax.predictor import Predictor

    predictor = Predictor(config, mesh)
    variables = models.abstract_variables(
        predictor.model, config.input_size, parallel.replicated(mesh)
    )
    n = batch_per_device * mesh.size
    images = _abstract((n, *config.input_size, 3), "uint8", parallel.data_sharded(mesh))
    return predictor._infer.lower(variables, images)


def compile_and_measure(lowered, chip: Chip, batch_per_device: int) -> dict:
    """Compiles; per-chip HBM, flops and bytes, and the roofline bound. Raises DoesNotFit."""
    start = time.perf_counter()
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:
        if "RESOURCE_EXHAUSTED" in str(e):
            raise DoesNotFit(str(e)) from None
        raise
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    hbm = {
        "arguments": memory.argument_size_in_bytes,
        "outputs": memory.output_size_in_bytes,
        "aliased": memory.alias_size_in_bytes,  # donated state: counted in arguments and outputs
        "temporaries": memory.temp_size_in_bytes,
        "code": memory.generated_code_size_in_bytes,
    }
    total = hbm["arguments"] + hbm["outputs"] - hbm["aliased"] + hbm["temporaries"] + hbm["code"]
    flops, accessed = cost["flops"], cost["bytes accessed"]
    step_s = max(flops / chip.peak_bf16_flops, accessed / chip.hbm_bytes_per_s)
    return {
        "compile_s": round(compile_s, 1),
        **{f"hbm_{k}_gib": round(v / GIB, 3) for k, v in hbm.items()},
        "hbm_total_gib": round(total / GIB, 3),
        "hbm_capacity_gib": chip.hbm_gib,
        "fits": total <= chip.hbm_gib * GIB,
        "flops_per_step": flops,
        "bytes_per_step": accessed,
        "roofline_step_s": float(f"{step_s:.4g}"),
        "roofline_bound": "compute" if flops / chip.peak_bf16_flops >= step_s else "memory",
        "roofline_img_per_s_per_chip": round(batch_per_device / step_s, 1),
    }


def find_max_batch(measure: Callable[[int], dict], start: int, resolution: int) -> tuple[int, dict]:
    """The largest multiple of `resolution` that compiles (0 if none does), and its result.

    Doubles from `start` until a compile fails, then narrows the bracket; each probe is where the
    HLO temporaries, linear in the batch, reach the HBM that XLA's failure said was available.
    """
    temporaries, results = {}, {}  # batch -> GiB of HLO temporaries; batch -> result
    lo, hi, available = 0, None, None
    batch = max(resolution, start // resolution * resolution)
    while hi is None or hi - lo > resolution:
        try:
            results[batch] = measure(batch)
            temporaries[batch], lo = results[batch]["hbm_temporaries_gib"], batch
        except DoesNotFit as e:
            temporaries[batch], hi = e.needed_gib, batch
            available = e.available_gib or available
        batch = _next_probe(lo, hi, temporaries, available, resolution)
    return lo, results.get(lo, {})


def _next_probe(lo: int, hi: int | None, temporaries: dict, available, resolution: int) -> int:
    if hi is None:
        return 2 * lo
    guess = (lo + hi) // 2
    if lo and available and (temporaries[hi] or 0) > temporaries[lo]:
        slope = (temporaries[hi] - temporaries[lo]) / (hi - lo)
        guess = int(lo + (available - temporaries[lo]) / slope)
    guess = guess // resolution * resolution
    return min(max(guess, lo + resolution), hi - resolution)


def main():
    # Only the topology's abstract devices are used: never this machine's accelerators, and libtpu
    # may be loaded by several processes at once (it opens no TPU).
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    jax.config.update("jax_platforms", "cpu")
    config = _CONFIG.value.as_configdict()
    if _DTYPE.value:
        config.model.dtype = {"fp32": "float32", "bf16": "bfloat16"}.get(_DTYPE.value, _DTYPE.value)
    if config.model.conv_weight_grad == "auto":
        config.model.conv_weight_grad = "xla"  # what "auto" picks on a TPU
    config.xla.compilation_cache_dir = ""  # executables for abstract devices are not cached
    config = config_lib.check(config)
    runtime.configure(config.xla)
    devices = topology_devices(_TOPOLOGY.value)
    chip = CHIPS[devices[0].device_kind]
    mesh = parallel.make_mesh(devices)
    lower = lower_train if _WHAT.value == "train" else lower_eval

    def measure(batch: int) -> dict:
        return compile_and_measure(lower(config, mesh, batch), chip, batch)

    result = {
        "config": list(config.input_size),
        "what": _WHAT.value,
        "dtype": config.model.dtype,
        "remat": config.model.remat,
        "topology": _TOPOLOGY.value,
        "chip": chip.name,
        "chips": mesh.size,
        "hosts": len({d.process_index for d in devices}),  # libtpu: 4 chips a host by default
    }
    if _FIND.value:
        batch, measured = find_max_batch(measure, _BATCH.value, _RESOLUTION.value)
        result |= {"max_batch_per_device": batch, "batch_per_device": batch, **measured}
    else:
        try:
            result |= {"batch_per_device": _BATCH.value, **measure(_BATCH.value)}
        except DoesNotFit as e:
            raise UserError(
                f"batch {_BATCH.value} per chip does not fit {chip.name}'s HBM: "
                f"{str(e).splitlines()[0]}"
            ) from None
    common.report(result, _APPEND.value)


if __name__ == "__main__":
    cli.run(main, config=_CONFIG)

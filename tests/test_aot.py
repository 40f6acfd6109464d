"""Accelerator readiness on a CPU machine: rematerialisation keeps the model, and the real train
step compiles for a TPU slice (benchmarks/aot.py) where libtpu is installed."""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from testing_utils import ROOT, TINY_CONFIG, run_module, subprocess_env, tiny_model_config

from benchmarks import aot
from hrnet_jax import config_lib, models, parallel
from hrnet_jax.models import summary

REMATS = ("save_convs", "full")


def _small_model(remat: str):
    """Two branches, one block each (a bottleneck and basic blocks): small to compile, and the
    blocks' BN synchronised over the `data` axis, so that remat recomputes a collective too."""
    model_config = tiny_model_config()
    for name in ("stage3", "stage4"):
        model_config[name] = model_config.stage2.to_dict()
    model_config.remat = remat
    return models.create_model(model_config, axis_name=parallel.DATA_AXIS)


def _loss_outputs_and_grads(model, mesh, variables, images, targets):
    """Loss, heatmaps, new BN statistics and parameter gradients of a step on two devices."""

    def per_device(variables, images, targets):
        def loss_fn(params):
            heatmaps, updates = model.apply(
                {"params": params, "batch_stats": variables["batch_stats"]},
                images,
                train=True,
                mutable=["batch_stats"],
            )
            loss = jax.lax.pmean(jnp.mean((heatmaps - targets) ** 2), parallel.DATA_AXIS)
            return loss, (heatmaps, updates["batch_stats"])

        return jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])

    data = P(parallel.DATA_AXIS)
    out_specs = ((P(), (data, P())), P())
    step = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), data, data), out_specs=out_specs)
    return jax.device_get(jax.jit(step)(variables, images, targets))


@pytest.fixture(scope="module")
def reference():
    """Inputs, the variables of the model without remat, and its step's results."""
    mesh = parallel.make_mesh(jax.devices()[:2])
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(4, 32, 32, 3)), jnp.float32)
    targets = jnp.asarray(rng.random((4, 8, 8, 17)), jnp.float32)
    model = _small_model("none")
    variables = model.init(jax.random.key(0), images)
    # Kernels scaled so that activations and gradients are O(1), as after training.
    params = jax.tree.map(lambda p: p * 300 if p.ndim == 4 else p, variables["params"])
    variables = {"params": params, "batch_stats": variables["batch_stats"]}
    inputs = (mesh, variables, images, targets)
    return inputs, _loss_outputs_and_grads(model, *inputs)


@pytest.mark.parametrize("remat", REMATS)
def test_remat_keeps_param_names_outputs_and_gradients(reference, remat):
    (mesh, variables, images, targets), expected = reference
    model = _small_model(remat)
    shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)  # noqa: E731
    # The same parameter and statistics names, shapes and dtypes (checkpoints, weight import).
    assert shapes(jax.eval_shape(model.init, jax.random.key(0), images)) == shapes(variables)
    result = _loss_outputs_and_grads(model, mesh, variables, images, targets)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), result, expected
    )


def test_remat_keeps_the_w32_parameter_count():
    model_config = config_lib.hrnet_model(32)
    model_config.remat = "full"
    variables = models.abstract_variables(models.create_model(model_config), (256, 192))
    assert sum(x.size for x in jax.tree.leaves(variables["params"])) == 28_536_113


@pytest.mark.parametrize("start", [8, 64, 512])
def test_max_batch_search_finds_the_largest_multiple_that_fits(start):
    """Against a fake compiler whose temporaries grow linearly (0.2 GiB + 0.1 GiB an image) and
    which fails past 15.75 GiB, as XLA's TPU compiler reports it."""
    tried = []

    def measure(batch):
        tried.append(batch)
        needed = 0.2 + 0.1 * batch
        if needed > 15.75:
            raise aot.DoesNotFit(
                f"RESOURCE_EXHAUSTED: HLO temporaries ({needed:.2f}G) exceeds available HBM "
                "(15.75G)"
            )
        return {"hbm_temporaries_gib": needed, "batch": batch}

    batch, result = aot.find_max_batch(measure, start, resolution=8)
    assert batch == 152 and result["batch"] == 152
    assert len(tried) <= 8  # doubling to the first failure, then two interpolated probes


def test_without_libtpu_the_benchmark_says_so_in_one_line():
    if importlib.util.find_spec("libtpu"):
        pytest.skip("libtpu is installed in this interpreter")
    result = run_module("benchmarks.aot", f"--config={TINY_CONFIG}", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: libtpu is not installed")


def _tpu_python() -> str:
    """The interpreter with libtpu: HRNET_JAX_TPU_PYTHON (CI's .venv-tpu), else this one."""
    return os.environ.get("HRNET_JAX_TPU_PYTHON", sys.executable)


def test_train_step_compiles_for_a_tpu_slice_and_fits_its_hbm():
    python = _tpu_python()
    probe = subprocess.run(
        [python, "-c", "import libtpu, hrnet_jax"], capture_output=True, text=True
    )
    if probe.returncode:
        why = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(
            f"libtpu and hrnet_jax do not import in {python} ({why}); set HRNET_JAX_TPU_PYTHON to "
            "an interpreter of this project installed with the tpu extra (docs/tpu.md)"
        )
    env = subprocess_env()
    env.pop("JAX_COMPILATION_CACHE_DIR")
    out = subprocess.run(
        [python, "-m", "benchmarks.aot", f"--config={TINY_CONFIG}", "--topology=v5e:2x2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert (result["chip"], result["chips"], result["what"]) == ("v5e", 4, "train")
    assert 0 < result["hbm_total_gib"] <= result["hbm_capacity_gib"] == 16 and result["fits"]
    # One chip's program: forward and backward (input and weight gradients), 2 flops per
    # multiply-add, over its 32 images; XLA skips the taps on zero padding, hence 0.9.
    macs = summary.summarize(config_lib.load_config(TINY_CONFIG), with_xla=False)["gmacs"] * 2**30
    assert result["batch_per_device"] == 32
    assert result["flops_per_step"] > 0.9 * 3 * 2 * macs * 32
    step_s = result["roofline_step_s"]
    assert result["roofline_img_per_s_per_chip"] == pytest.approx(32 / step_s, rel=0.01)

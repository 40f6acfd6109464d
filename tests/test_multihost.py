"""Several JAX processes on localhost (jax.distributed, gloo): the same training as one process."""

import json
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from testing_utils import (
    ROOT,
    TINY_CONFIG,
    logged_losses,
    restore_variables,
    run_module,
    subprocess_env,
    tiny_train_config,
)

from hrnet_jax import models


def _params(workdir, data_root):
    config = tiny_train_config(data_root, num_epochs=1)
    variables, step = restore_variables(config, workdir)
    return step, variables


# Adam's first steps move each weight by about +-lr whatever the gradient's size, so weights with
# near-zero gradients would differ by ~lr between any two summation orders; a large epsilon makes
# the update proportional to the gradient, so that the comparison sees the gradients themselves.
# The runs' float32 rounding differs (gloo's all-reduce, and each process's XLA programs split
# work over 4 devices instead of 8), so the training must not amplify rounding: per-device BN over
# one image per device, or a learning rate of 1 on kernels of std 0.001 (each followed by BN, whose
# effective step is lr / |w|^2), grew 1e-7 differences to 2% within 5 steps. With synchronised BN
# and lr 0.1 the runs agree to ~1e-7 while weights move by ~7e-4.
COMPARABLE = (
    "--config.train.adam_eps=1.0",
    "--config.train.sync_bn=true",
    "--config.train.learning_rate=0.1",
    # 16 val persons in global batches of 24: process 1's rows are padding, dropped after the gather.
    "--config.eval.batch_size_per_device=3",
)


def _initial(data_root):
    config = tiny_train_config(data_root, num_epochs=1)
    model = models.create_model(config.model)
    return jax.jit(model.init)(
        jax.random.split(jax.random.key(config.seed))[0], np.zeros((1, *config.input_size, 3))
    )["params"]


@pytest.fixture(scope="module")
def two_process_run(synthetic_root, tmp_path_factory):
    """launch/local.sh 2: two processes with four CPU devices each, one epoch of the tiny config."""
    workdir = tmp_path_factory.mktemp("two_processes")
    result = subprocess.run(
        ["bash", str(ROOT / "launch" / "local.sh"), "2", f"--config={TINY_CONFIG}",
         f"--workdir={workdir}", f"--config.data.root={synthetic_root}", "--config.train.num_epochs=1",
         *COMPARABLE],
        cwd=ROOT, env=subprocess_env(PYTHON=sys.executable), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir


def test_two_processes_train_exactly_like_one_process_with_eight_devices(
    two_process_run, synthetic_root, tmp_path
):
    single = tmp_path / "one_process"
    run_module(
        "hrnet_jax.main", f"--config={TINY_CONFIG}", f"--workdir={single}",
        f"--config.data.root={synthetic_root}", "--config.train.num_epochs=1", "--cpu_devices=8",
        *COMPARABLE,
    )  # fmt: skip
    losses_2, losses_1 = logged_losses(two_process_run), logged_losses(single)
    assert len(losses_2) == len(losses_1) >= 5
    # Equal up to float32 rounding: gloo's cross-process all-reduce sums in another order.
    np.testing.assert_allclose(losses_2, losses_1, rtol=1e-4, atol=0)
    (step_2, params_2), (step_1, params_1) = (
        _params(two_process_run, synthetic_root),
        _params(single, synthetic_root),
    )
    assert step_2 == step_1 == len(losses_1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), params_2, params_1)
    moved = jax.tree.map(
        lambda a, b: np.max(np.abs(a - b)), params_1["params"], _initial(synthetic_root)
    )
    assert max(jax.tree.leaves(moved)) > 1e-4  # training moved weights 10x beyond the tolerance
    # The evaluation at the end, spread over both processes' devices, scored the same persons.
    results_2, results_1 = (
        json.loads((w / "eval" / str(step_2) / "keypoints_results.json").read_text())
        for w in (two_process_run, single)
    )
    instances = [
        sorted((r["image_id"], *np.round(r["center"], 2), *np.round(r["scale"], 4)) for r in rs)
        for rs in (results_2, results_1)
    ]
    assert instances[0] == instances[1] and len({i[0] for i in instances[0]}) > 1


def test_two_process_checkpoint_resumes_in_one_process(two_process_run, synthetic_root):
    steps_before = len(logged_losses(two_process_run))
    out = run_module(
        "hrnet_jax.main", f"--config={TINY_CONFIG}", f"--workdir={two_process_run}",
        f"--config.data.root={synthetic_root}", "--config.train.num_epochs=2",
        *COMPARABLE,
    )  # fmt: skip
    assert f"at step {steps_before}" in out.stderr
    assert len(logged_losses(two_process_run)) == 2 * steps_before


def test_a_dead_process_fails_the_others_in_bounded_time(synthetic_root, tmp_path):
    workdir = tmp_path / "dies"
    common = [
        sys.executable, "-m", "hrnet_jax.main", f"--config={TINY_CONFIG}", f"--workdir={workdir}",
        f"--config.data.root={synthetic_root}", "--config.train.num_epochs=1000",
        "--coordinator_address=localhost:23457", "--num_processes=2", "--cpu_devices=2",
        "--heartbeat_timeout_seconds=10",
    ]  # fmt: skip
    env = subprocess_env()
    procs = [
        subprocess.Popen(
            [*common, f"--process_id={i}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 0)
    ]
    survivor, victim = procs[1], procs[0]
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 600
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        assert survivor.poll() is None and victim.poll() is None, "training stopped early"
        assert time.time() < deadline, "training did not start"
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    start = time.time()
    try:
        survivor.wait(timeout=180)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert survivor.returncode != 0
    assert time.time() - start < 180

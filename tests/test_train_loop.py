"""The training loop end to end on the synthetic set: learning, exact resume, preemption, faults."""

import json
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from testing_utils import ROOT, TINY_CONFIG, run_module, subprocess_env, tiny_train_config

from hrnet_jax import checkpoint, models, parallel, train, train_loop


def _losses(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["train/loss"] for x in lines if '"train/loss"' in x]


def _final_params(config, workdir):
    model = models.create_model(config.model)
    shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, *config.input_size, 3)))
    variables, step = checkpoint.Checkpoints(workdir, use_async=False).restore_variables(
        dict(shapes), config
    )
    return step, variables


@pytest.fixture(scope="session")
def trained(synthetic_root, tmp_path_factory):
    """30+ steps of a tiny HRNet on 8 devices, evaluated at the end (shared by several tests)."""
    workdir = tmp_path_factory.mktemp("trained")
    config = tiny_train_config(synthetic_root, num_epochs=6)
    result = train_loop.train_and_evaluate(config, workdir)
    return config, workdir, result


def test_loss_decreases_over_training(trained):
    _, workdir, result = trained
    losses = _losses(workdir)
    assert len(losses) >= 30
    # From the untrained start (heatmaps ~0) to well below it, over batches of only 8 figures.
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:3])
    assert result["step"] == len(losses)
    assert 0.0 <= result["eval/AP"] <= 1.0
    assert (workdir / "eval" / str(result["step"]) / "keypoints_results.json").is_file()
    assert list((workdir / "eval" / str(result["step"])).glob("vis_*.png"))


def test_eight_device_checkpoint_evaluates_on_one_device_with_the_same_ap(trained):
    config, workdir, result = trained
    step = result["step"]
    metrics_8 = json.loads((workdir / "eval" / str(step) / "metrics.json").read_text())
    (workdir / "eval" / str(step) / "metrics.json").unlink()
    run_module(
        "hrnet_jax.evaluate",
        f"--config={TINY_CONFIG}",
        f"--config.data.root={config.data.root}",
        f"--workdir={workdir}",
        JAX_NUM_CPU_DEVICES=1,
    )
    metrics_1 = json.loads((workdir / "eval" / str(step) / "metrics.json").read_text())
    assert metrics_1 == pytest.approx(metrics_8, abs=1e-6)


def test_resume_is_exact(synthetic_root, tmp_path):
    """2N steps straight == N steps, stop, resume, N steps: bitwise params, same losses."""
    config = tiny_train_config(synthetic_root, num_epochs=2)
    straight = tmp_path / "straight"
    train_loop.train_and_evaluate(config, straight)
    resumed = tmp_path / "resumed"
    train_loop.train_and_evaluate(tiny_train_config(synthetic_root, num_epochs=1), resumed)
    first_half = _losses(resumed)
    train_loop.train_and_evaluate(config, resumed)
    assert _losses(resumed) == _losses(straight)
    assert len(first_half) * 2 == len(_losses(straight))
    step_a, params_a = _final_params(config, straight)
    step_b, params_b = _final_params(config, resumed)
    assert step_a == step_b
    jax.tree.map(np.testing.assert_array_equal, params_a, params_b)


def test_checkpoint_of_another_model_is_refused_by_name(synthetic_root, trained, tmp_path):
    _, workdir, _ = trained
    config = tiny_train_config(synthetic_root, num_epochs=7)
    config.model.stage4.num_channels = (4, 8, 16, 48)
    with pytest.raises(checkpoint.CheckpointMismatchError) as error:
        train_loop.train_and_evaluate(config, workdir)
    message = str(error.value)
    assert (
        "model.stage4.num_channels is [4, 8, 16, 32] in the checkpoint but [4, 8, 16, 48]"
        in message
    )
    assert "shape (3, 3, 16, 32) in the checkpoint, (3, 3, 16, 48) in the model" in message


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    synthetic_root, tmp_path, monkeypatch
):
    config = tiny_train_config(synthetic_root, num_epochs=3)
    config.train.checkpoint_every_steps = 2
    poison_from = 5  # the 5th step's batch onwards carries NaN targets
    global_batch = parallel.global_batch
    steps = {"n": 0}

    def poisoned(batch, mesh):
        steps["n"] += 1
        if steps["n"] >= poison_from:
            batch = {**batch, "heatmaps": batch["heatmaps"] * np.nan}
        return global_batch(batch, mesh)

    monkeypatch.setattr(parallel, "global_batch", poisoned)
    workdir = tmp_path / "nan"
    with pytest.raises(train_loop.NonFiniteLossError, match=f"loss is nan at step {poison_from};"):
        train_loop.train_and_evaluate(config, workdir)
    steps = checkpoint.Checkpoints(workdir, use_async=False).all_steps()
    assert max(steps) == poison_from - 1  # saved before the NaN step, nothing after it
    step, params = _final_params(config, workdir)
    assert step == poison_from - 1
    assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))


def _start_training(workdir, *overrides):
    return subprocess.Popen(
        [sys.executable, "-m", "hrnet_jax.main", f"--config={TINY_CONFIG}",
         f"--workdir={workdir}", *overrides],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for(predicate, process, timeout=600):
    deadline = time.time() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(
                f"training exited early ({process.returncode}): {process.stderr.read()[-3000:]}"
            )
        if time.time() > deadline:
            process.kill()
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_sigterm_saves_the_current_step_and_exits_cleanly(synthetic_root, tmp_path):
    workdir = tmp_path / "preempted"
    proc = _start_training(
        workdir, f"--config.data.root={synthetic_root}", "--config.train.num_epochs=100"
    )
    metrics = workdir / "metrics.jsonl"
    _wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    saved = int(stderr.split("preempted: saved step ")[1].split(",")[0])
    assert checkpoint.Checkpoints(workdir, use_async=False).latest_step() == saved
    assert saved >= 3 and saved % 1000  # not a scheduled checkpoint step


def test_kill_during_async_save_resumes_from_the_previous_checkpoint(synthetic_root, tmp_path):
    workdir = tmp_path / "killed"
    common = [f"--config.data.root={synthetic_root}", "--config.train.checkpoint_every_steps=4"]
    proc = _start_training(workdir, *common, "--config.train.num_epochs=100")
    ckpts = workdir / "checkpoints"

    def saving_after_a_complete_one():
        if not ckpts.is_dir():
            return False
        complete = [p for p in ckpts.iterdir() if p.name.isdigit()]
        return complete and any(p.name.endswith("orbax-checkpoint-tmp") for p in ckpts.iterdir())

    _wait_for(saving_after_a_complete_one, proc)
    proc.kill()  # SIGKILL in the middle of writing a checkpoint
    proc.wait()
    complete = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    assert any(p.name.endswith("orbax-checkpoint-tmp") for p in ckpts.iterdir())
    out = run_module(
        "hrnet_jax.main", f"--config={TINY_CONFIG}", f"--workdir={workdir}",
        *common, f"--config.train.num_epochs={1 + complete[-1] // 7}",
    )  # fmt: skip
    assert f"at step {complete[-1]}" in out.stderr
    assert not any(p.name.endswith("orbax-checkpoint-tmp") for p in ckpts.iterdir())


def test_train_state_shapes_are_known_before_allocation(synthetic_root):
    config = tiny_train_config(synthetic_root, num_epochs=1)
    model = models.create_model(config.model)
    schedule = train.learning_rate_schedule(config.train, 10)
    tx = train.create_optimizer(config.train, schedule)
    abstract = train.abstract_state(model, tx, config.input_size, parallel.make_mesh())
    leaves = jax.tree.leaves(abstract)
    assert all(isinstance(x, jax.ShapeDtypeStruct) and x.sharding is not None for x in leaves)
    assert abstract.params["final_layer"]["kernel"].shape == (1, 1, 4, 17)

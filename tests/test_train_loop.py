"""The training loop end to end on the synthetic set: learning, exact resume, preemption, faults."""

import collections
import json
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import cv2
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

from hrnet_jax import checkpoint, models, parallel, train, train_loop
from hrnet_jax import predictor as predictor_lib


def _final_params(config, workdir):
    variables, step = restore_variables(config, workdir)
    return step, variables


def test_loss_decreases_over_training(trained):
    _, workdir, result = trained
    losses = logged_losses(workdir)
    assert len(losses) >= 30
    # From the untrained start (heatmaps ~0) to well below it, over batches of only 8 figures.
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:3])
    assert result["step"] == len(losses)
    assert 0.0 <= result["eval/AP"] <= 1.0
    assert (workdir / "eval" / str(result["step"]) / "keypoints_results.json").is_file()
    assert list((workdir / "eval" / str(result["step"])).glob("vis_*.png"))


def _assert_reevaluation_agrees(out, workdir, data_root, num_devices: int) -> None:
    """Evaluates `workdir`'s checkpoint again on `num_devices` devices: the same metrics and
    predictions as the evaluation in `out`, written to a folder of its own (the run's own files
    stay byte-identical)."""
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    run_module(
        "hrnet_jax.evaluate",
        f"--config={TINY_CONFIG}",
        f"--config.data.root={data_root}",
        f"--workdir={workdir}",
        JAX_NUM_CPU_DEVICES=num_devices,
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (again,) = [p for p in (workdir / "eval").iterdir() if p.name.startswith(f"{out.name}-")]
    assert len(again.name) == len(out.name) + 9  # <step>-<8 hex digits of the eval settings>
    metrics = json.loads((out / "metrics.json").read_text())
    results = json.loads((out / "keypoints_results.json").read_text())
    metrics_again = json.loads((again / "metrics.json").read_text())
    results_again = json.loads((again / "keypoints_results.json").read_text())
    assert metrics_again == pytest.approx(metrics, abs=1e-6)
    assert len(results_again) == len(results) > 0
    for before, again in zip(results, results_again, strict=True):
        assert again["image_id"] == before["image_id"]
        np.testing.assert_allclose(again["keypoints"], before["keypoints"], atol=1e-3)
        assert again["score"] == pytest.approx(before["score"], abs=1e-5)


def test_eight_device_checkpoint_evaluates_on_one_device_with_the_same_ap(trained):
    config, workdir, result = trained
    out = workdir / "eval" / str(result["step"])
    _assert_reevaluation_agrees(out, workdir, config.data.root, num_devices=1)


def test_evaluate_cli_names_a_missing_checkpoint_or_step(trained, tmp_path):
    config, workdir, result = trained
    common = [f"--config={TINY_CONFIG}", f"--config.data.root={config.data.root}"]
    empty = run_module("hrnet_jax.evaluate", *common, f"--workdir={tmp_path}", check=False)
    assert empty.returncode != 0 and "Traceback" not in empty.stderr
    assert f"no complete checkpoint in {tmp_path / 'checkpoints'}" in empty.stderr
    missing = run_module(
        "hrnet_jax.evaluate", *common, f"--workdir={workdir}", "--step=999999", check=False
    )
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert f"no checkpoint for step 999999 in {workdir / 'checkpoints'}" in missing.stderr
    assert str(result["step"]) in missing.stderr  # the steps it does have
    udp = ("--config.codec.udp=True", "--config.eval.shift_heatmap=False")
    other_crop = run_module(
        "hrnet_jax.evaluate", *common, *udp, f"--workdir={workdir}", check=False
    )
    assert other_crop.returncode != 0 and "Traceback" not in other_crop.stderr
    assert "trained with codec.udp=False, but the config has codec.udp=True" in other_crop.stderr


def test_resume_is_exact(synthetic_root, tmp_path):
    """2N steps straight == N steps, stop, resume, N steps: bitwise params, same losses."""
    config = tiny_train_config(synthetic_root, num_epochs=2)
    straight = tmp_path / "straight"
    train_loop.train_and_evaluate(config, straight)
    resumed = tmp_path / "resumed"
    train_loop.train_and_evaluate(tiny_train_config(synthetic_root, num_epochs=1), resumed)
    first_half = logged_losses(resumed)
    train_loop.train_and_evaluate(config, resumed)
    assert logged_losses(resumed) == logged_losses(straight)
    assert len(first_half) * 2 == len(logged_losses(straight))
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


def test_checkpoint_of_another_input_size_is_refused_by_name(synthetic_root, trained):
    # Every parameter has the same shape at another input size: only the config check sees it.
    _, workdir, _ = trained
    config = tiny_train_config(synthetic_root, num_epochs=7)
    config.input_size, config.heatmap_size = (96, 64), (24, 16)
    with pytest.raises(checkpoint.CheckpointMismatchError, match=r"input_size is \[64, 64\]"):
        train_loop.train_and_evaluate(config, workdir)


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
    steps = checkpoint.complete_steps(workdir)
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
    assert max(checkpoint.complete_steps(workdir), default=None) == saved
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
    # The steps the killed run logged after its last checkpoint were trained again: one row each.
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in rows if "train/loss" in r]
    assert train_steps == list(range(1, max(train_steps) + 1))


def test_train_state_shapes_are_known_before_allocation(synthetic_root):
    config = tiny_train_config(synthetic_root, num_epochs=1)
    model = models.create_model(config.model)
    schedule = train.learning_rate_schedule(config.train, 10)
    tx = train.create_optimizer(config.train, schedule)
    abstract = train.abstract_state(model, tx, config.input_size, parallel.make_mesh())
    leaves = jax.tree.leaves(abstract)
    assert all(isinstance(x, jax.ShapeDtypeStruct) and x.sharding is not None for x in leaves)
    assert abstract.params["final_layer"]["kernel"].shape == (1, 1, 4, 17)


def test_one_device_checkpoint_evaluates_on_eight_devices_with_the_same_predictions(
    synthetic_root, tmp_path
):
    """The other direction: trained (and evaluated) on one device, evaluated again on eight."""
    workdir = tmp_path / "one_device"
    run_module(
        "hrnet_jax.main", f"--config={TINY_CONFIG}", f"--config.data.root={synthetic_root}",
        f"--workdir={workdir}", "--config.train.num_epochs=1", JAX_NUM_CPU_DEVICES=1,
    )  # fmt: skip
    (out,) = (workdir / "eval").iterdir()
    _assert_reevaluation_agrees(out, workdir, synthetic_root, num_devices=8)


def test_predict_cli_matches_the_evaluator_on_the_same_box(trained, tmp_path):
    """predict on a GT box gives the keypoints the evaluator wrote for that person."""
    config, workdir, result = trained
    root = pathlib.Path(config.data.root)
    gt = json.loads((root / "annotations" / "person_keypoints_val.json").read_text())
    results = json.loads(
        (workdir / "eval" / str(result["step"]) / "keypoints_results.json").read_text()
    )
    images = {im["id"]: im for im in gt["images"]}
    ann = max(
        (a for a in gt["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]),
        key=lambda a: a["area"],
    )
    image = images[ann["image_id"]]
    # The reference's box cleaning (clip to the image, drop the inclusive end pixel), which the
    # evaluator applies to GT boxes and predict leaves to its caller.
    x, y, w, h = ann["bbox"]
    x2 = min(image["width"] - 1.0, x + max(0.0, w - 1.0))
    y2 = min(image["height"] - 1.0, y + max(0.0, h - 1.0))
    x, y, w, h = max(0.0, x), max(0.0, y), x2 - max(0.0, x), y2 - max(0.0, y)
    center = np.array([x + w / 2, y + h / 2])
    expected = min(
        (r for r in results if r["image_id"] == ann["image_id"]),
        key=lambda r: np.abs(np.array(r["center"]) - center).max(),
    )
    out = tmp_path / "skeleton.png"
    printed = run_module(
        "hrnet_jax.predict", f"--workdir={workdir}", f"--image={root / 'images' / 'val' / image['file_name']}",
        f"--box={x},{y},{w},{h}", f"--out={out}",
    ).stdout  # fmt: skip
    keypoints = np.array(json.loads(printed.strip().splitlines()[-1])["keypoints"])
    assert keypoints.shape == (1, 17, 3)
    np.testing.assert_allclose(
        keypoints[0, :, :2], np.reshape(expected["keypoints"], (17, 3))[:, :2], atol=0.02
    )
    drawn = cv2.imread(str(out))
    assert drawn.shape[:2] == (image["height"], image["width"])


def test_demo_runs_end_to_end_with_a_short_schedule(tmp_path):
    """The README's first command, on a freshly generated small set and one epoch."""
    data, workdir = tmp_path / "synthetic", tmp_path / "demo"
    args = (
        "--config=configs/demo.py", f"--workdir={workdir}", f"--config.data.root={data}",
        "--config.data.synthetic.num_train_images=48", "--config.data.synthetic.num_val_images=4",
        "--config.train.num_epochs=1",
    )  # fmt: skip
    out = run_module("hrnet_jax.main", *args)
    assert logged_losses(workdir)
    assert (data / "annotations" / "person_keypoints_train.json").is_file()
    step = max(checkpoint.complete_steps(workdir), default=None)
    assert step is not None and step > 0
    metrics = json.loads((workdir / "eval" / str(step) / "metrics.json").read_text())
    assert set(metrics) >= {"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}
    assert 0.0 <= metrics["AP"] <= 1.0
    assert "AP50 |" in out.stdout  # the printed table
    # Quiet, complete logs: only our own INFO lines; the same lines in train.log; the config.
    own = {p.name for p in (ROOT / "hrnet_jax").rglob("*.py")}
    info = [line for line in out.stderr.splitlines() if re.match(r"I\d{4} ", line)]
    assert info and all(line.split("]")[0].split()[-1].split(":")[0] in own for line in info)
    log = (workdir / "train.log").read_text()
    for line in (f"step {step}/{step}: loss", f"checkpoint: step {step}", f"step {step}: AP"):
        assert line in log and line in out.stderr, line
    assert json.loads((workdir / "config.json").read_text())["data"]["root"] == str(data)
    # Running the finished demo again trains nothing, prints the final step's AP again and adds
    # no row to metrics.jsonl.
    rows = (workdir / "metrics.jsonl").read_text()
    again = run_module("hrnet_jax.main", *args)
    assert f"holds the final step {step}" in again.stderr and "AP50 |" in again.stdout
    assert (workdir / "metrics.jsonl").read_text() == rows


def test_unreadable_training_images_are_skipped_and_counted_each_epoch(synthetic_root, tmp_path):
    data = tmp_path / "synthetic"
    shutil.copytree(synthetic_root, data)
    gt = json.loads((data / "annotations" / "person_keypoints_train.json").read_text())
    persons = collections.Counter(a["image_id"] for a in gt["annotations"] if a["num_keypoints"])
    image_id, count = persons.most_common(1)[0]
    (name,) = [im["file_name"] for im in gt["images"] if im["id"] == image_id]
    (data / "images" / "train" / name).write_bytes(b"\xff\xd8" + bytes(5000))  # corrupt JPEG
    config = tiny_train_config(data, num_epochs=2)
    config.data.strict = False
    workdir = tmp_path / "run"
    train_loop.train_and_evaluate(config, workdir)
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    skipped = [json.loads(x)["data/skipped_records"] for x in lines if "skipped_records" in x]
    # Reported at the end of each epoch: the figure's persons, less any in the dropped remainder.
    assert len(skipped) == 2 and all(1 <= n <= count for n in skipped), skipped


def test_evaluation_every_epoch_keeps_the_best_checkpoint_and_compiles_once(
    synthetic_root, tmp_path, monkeypatch
):
    predictors = []
    build = predictor_lib.Predictor.__init__

    def recorded(self, *args, **kwargs):
        predictors.append(self)
        build(self, *args, **kwargs)

    monkeypatch.setattr(predictor_lib.Predictor, "__init__", recorded)
    config = tiny_train_config(synthetic_root, num_epochs=3)
    config.train.eval_every_epochs = 1
    config.train.keep_checkpoints = 1
    workdir = tmp_path / "run"
    train_loop.train_and_evaluate(config, workdir)
    # Three evaluations, one Predictor, its inference traced (so compiled) once.
    assert len(predictors) == 1 and predictors[0].traces == 1
    steps_per_epoch = len(logged_losses(workdir)) // 3
    evaluated = sorted(int(p.name) for p in (workdir / "eval").iterdir())
    assert evaluated == [steps_per_epoch, 2 * steps_per_epoch, 3 * steps_per_epoch]
    ap = {
        s: json.loads((workdir / "eval" / str(s) / "metrics.json").read_text())["AP"]
        for s in evaluated
    }
    best = max(evaluated, key=lambda s: (ap[s], s))
    assert checkpoint.complete_steps(workdir) == [3 * steps_per_epoch]  # keep_checkpoints=1
    assert checkpoint.complete_steps(workdir, best=True) == [best], ap
    variables, step = restore_variables(config, workdir, best=True)
    assert step == best and set(variables) == {"params", "batch_stats"}

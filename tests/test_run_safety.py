"""Runs never lose work, and mistakes fail before the first step: the repros of the issue
"Runs never lose work, and every mistake fails at startup in one line"."""

import json
import shutil
import signal
import subprocess
import sys

import pytest
from testing_utils import (
    ROOT,
    TINY_CONFIG,
    restore_variables,
    run_module,
    subprocess_env,
    tiny_train_config,
)

from hrnet_jax import checkpoint, train_loop
from hrnet_jax.data import sources
from hrnet_jax.errors import ConfigError

CORRUPT_JPEG = b"\xff\xd8" + bytes(5000)


def _val_image_with_persons(root):
    gt = json.loads((root / "annotations" / "person_keypoints_val.json").read_text())
    counts = {}
    for a in gt["annotations"]:
        if a["num_keypoints"] and not a["iscrowd"]:
            counts[a["image_id"]] = counts.get(a["image_id"], 0) + 1
    image_id = max(counts, key=counts.get)
    (name,) = [im["file_name"] for im in gt["images"] if im["id"] == image_id]
    return root / "images" / "val" / name, counts[image_id]


def test_missing_detection_file_fails_before_the_first_step(synthetic_root, tmp_path):
    workdir = tmp_path / "run"
    result = run_module(
        "hrnet_jax.main", f"--config={TINY_CONFIG}", f"--workdir={workdir}",
        f"--config.data.root={synthetic_root}", "--config.eval.use_gt_bbox=false", check=False,
    )  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(errors) == 1 and "eval.det_file" in errors[0], result.stderr
    assert "step 1/" not in result.stderr and not (workdir / "checkpoints").exists()


def test_a_failed_final_evaluation_keeps_the_steps_checkpoint(synthetic_root, tmp_path):
    # A JPEG that exists (the startup check passes) but does not decode: the final evaluation fails.
    data = tmp_path / "synthetic"
    shutil.copytree(synthetic_root, data)
    image, _ = _val_image_with_persons(data)
    image.write_bytes(CORRUPT_JPEG)
    workdir = tmp_path / "run"
    args = (f"--config={TINY_CONFIG}", f"--workdir={workdir}", f"--config.data.root={data}")
    result = run_module("hrnet_jax.main", *args, "--config.train.num_epochs=1", check=False)
    output = result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and "Traceback" not in output, output[-3000:]
    assert len(errors) == 1 and "corrupt or truncated JPEG" in errors[0], output[-3000:]
    final = int(errors[0].split("evaluation at step ")[1].split()[0])
    assert str(workdir / "checkpoints" / str(final)) in result.stderr
    assert checkpoint.complete_steps(workdir)[-1] == final
    assert not any("tmp" in p.name for p in (workdir / "checkpoints").iterdir())
    config = tiny_train_config(data, num_epochs=1)
    _, step = restore_variables(config, workdir)
    assert step == final
    # Repaired, the same command evaluates the saved step without training again.
    shutil.copy(synthetic_root / image.relative_to(data), image)
    again = run_module("hrnet_jax.main", *args, "--config.train.num_epochs=1")
    assert f"step {final} has no evaluation yet" in again.stderr and "step 1/" not in again.stderr
    assert (workdir / "eval" / str(final) / "metrics.json").is_file()


def test_ctrl_c_saves_the_current_step_and_a_rerun_resumes_there(synthetic_root, tmp_path):
    workdir = tmp_path / "interrupted"
    command = [
        sys.executable, "-m", "hrnet_jax.main", f"--config={TINY_CONFIG}", f"--workdir={workdir}",
        f"--config.data.root={synthetic_root}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [*command, "--config.train.num_epochs=100"], cwd=ROOT, env=subprocess_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = workdir / "metrics.jsonl"
    for _ in range(60000):
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            break
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        subprocess.run(["sleep", "0.01"])
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    saved = int(stderr.split("interrupted: saved step ")[1].split(",")[0])
    assert checkpoint.complete_steps(workdir)[-1] == saved and saved % 1000
    assert f"interrupted: saved step {saved}" in (workdir / "train.log").read_text()
    per_epoch = int(stderr.split(" steps per epoch")[0].split()[-1])
    epochs = -(-saved // per_epoch)
    result = subprocess.run(
        [*command, f"--config.train.num_epochs={epochs}"], cwd=ROOT, env=subprocess_env(),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {workdir / 'checkpoints'} at step {saved}" in result.stderr


def test_skipped_val_persons_are_reported_as_misses(synthetic_root, tmp_path, capsys):
    data = tmp_path / "synthetic"
    shutil.copytree(synthetic_root, data)
    image, persons = _val_image_with_persons(data)
    image.write_bytes(CORRUPT_JPEG)
    config = tiny_train_config(data, num_epochs=1)
    config.data.strict = False
    result = train_loop.train_and_evaluate(config, tmp_path / "run")
    (out,) = (tmp_path / "run" / "eval").iterdir()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["skipped"] == persons and metrics["AP"] == result["eval/AP"]
    printed = capsys.readouterr().out
    assert f"{persons} val persons skipped" in printed and "counts them as misses" in printed


def test_model_joint_count_must_match_the_data(synthetic_root):
    config = tiny_train_config(synthetic_root, num_epochs=1)
    config.model.num_joints = 14
    with pytest.raises(ConfigError, match="model.num_joints is 14 but the train data .* has 17"):
        sources.load_instances(config, "train", train=True)


def test_a_synthetic_set_made_with_other_settings_is_refused(synthetic_root):
    config = tiny_train_config(synthetic_root, num_epochs=1)
    config.data.synthetic.enabled = True
    config.data.synthetic.num_train_images = 3000
    with pytest.raises(ConfigError, match="num_train_images is 3000 but the set has 24"):
        sources.ensure_synthetic(config)

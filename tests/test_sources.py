"""Where instances come from: COCO folders, the TFDS data set built from them, and what happens
without either. TensorFlow is not installed: TFDS builds and reads without it."""

import importlib.util
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from testing_utils import TINY_CONFIG, logged_losses, run_module, tiny_train_config

from hrnet_jax import checkpoint, config_lib, parallel, train_loop
from hrnet_jax.data import pipeline, sources, tfds_builder
from hrnet_jax.data.samples import ImageError, TopDownSampler
from hrnet_jax.evaluator import Evaluator
from hrnet_jax.predictor import Predictor

MINI = (
    "--config.data.annotation_file=annotations/person_keypoints_mini.json",
    "--config.data.image_dir=images",
    "--config.data.train_split=mini",
    "--config.data.val_split=mini",
)


def _mini_config(root, data_dir=None):
    config = config_lib.load_config(TINY_CONFIG, [tuple(a[9:].split("=", 1)) for a in MINI])
    config.data.root = str(root)
    if data_dir is not None:
        config.data.format, config.data.tfds_data_dir = "tfds", str(data_dir)
    return config


@pytest.fixture(scope="module")
def built(coco_mini, tmp_path_factory):
    """coco_mini built with the pack command (both splits are "mini" here)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    run_module(
        "hrnet_jax.data.pack", f"--config={TINY_CONFIG}", f"--config.data.root={coco_mini}",
        *MINI, f"--data_dir={data_dir}",
    )  # fmt: skip
    return data_dir


def test_tensorflow_is_not_installed():
    # The TFDS tests here build and read without it.
    assert importlib.util.find_spec("tensorflow") is None


def test_the_tfds_source_holds_the_folder_sources_instances_in_order(coco_mini, built):
    folder = sources.load_instances(_mini_config(coco_mini), "mini", train=True)[0]
    tfds = sources.load_instances(_mini_config(coco_mini, built), "mini", train=True)[0]
    assert isinstance(tfds, tfds_builder.TfdsInstances) and len(tfds) == len(folder) == 12
    for i in range(len(folder)):
        a, b = folder[i], tfds[i]
        assert b["image_bytes"] == pathlib.Path(a["image_file"]).read_bytes()
        for key in a:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def test_train_batches_from_both_sources_are_bit_identical(coco_mini, built):
    def batches(config, workers=0):
        instances = sources.load_instances(config, "mini", train=True)[0]
        options = pipeline.DataOptions(num_workers=workers, num_threads=2)
        iterator = pipeline.train_iterator(
            instances, TopDownSampler.from_config(config, train=True), seed=3, global_batch_size=4,
            num_epochs=2, options=options,
        )  # fmt: skip
        try:
            return list(iterator)
        finally:
            iterator.close()

    folder = batches(_mini_config(coco_mini))
    # The TFDS source also in two grain worker processes (it pickles into them).
    for tfds in (
        batches(_mini_config(coco_mini, built)),
        batches(_mini_config(coco_mini, built), 2),
    ):
        assert len(folder) == len(tfds) == 6
        for a, b in zip(folder, tfds, strict=True):
            for key in ("image", "heatmaps", "target_weight", "index"):
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_evaluation_from_both_sources_gives_the_same_ap(coco_mini, built, tmp_path):
    config = config_lib.check(_mini_config(coco_mini))
    mesh = parallel.make_mesh()
    predictor = Predictor(config, mesh)
    init = jax.jit(predictor.model.init, out_shardings=parallel.replicated(mesh))
    variables = init(jax.random.key(1), np.zeros((1, *config.input_size, 3), np.float32))
    folder = Evaluator(config, mesh, predictor).run(variables, 0, tmp_path / "folder")
    tfds_config = config_lib.check(_mini_config(coco_mini, built))
    tfds = Evaluator(tfds_config, mesh, predictor).run(variables, 0, tmp_path / "tfds")
    assert folder == tfds and folder["AP"] >= 0.0
    results = [
        json.loads((tmp_path / d / "keypoints_results.json").read_text())
        for d in ("folder", "tfds")
    ]
    assert results[0] == results[1]


def test_a_corrupt_jpeg_fails_a_strict_build_and_is_counted_otherwise(coco_mini, tmp_path):
    data = tmp_path / "coco_mini"
    shutil.copytree(coco_mini, data)
    gt = json.loads((data / "annotations" / "person_keypoints_mini.json").read_text())
    name = gt["images"][0]["file_name"]
    instances = sources.load_instances(_mini_config(data), "mini", train=True)[0]
    persons = int(np.sum(instances.image_id == gt["images"][0]["id"]))
    (data / "images" / name).write_bytes((data / "images" / name).read_bytes()[:3000])  # truncated
    with pytest.raises(ImageError, match=f"corrupt or truncated JPEG .*{name}"):
        tfds_builder.builder(_mini_config(data), tmp_path / "strict").download_and_prepare()
    lenient = _mini_config(data)
    lenient.data.strict = False
    built = tfds_builder.builder(lenient, tmp_path / "lenient")
    built.download_and_prepare()
    assert built.info.metadata["skipped_images"] == 1 and persons > 0
    assert built.info.metadata["skipped_instances"] == persons
    assert built.info.splits["mini"].num_examples == 12 - persons


def test_pack_builds_only_the_split_asked_for(synthetic_root, tmp_path):
    pack = (
        "hrnet_jax.data.pack", f"--config={TINY_CONFIG}", f"--config.data.root={synthetic_root}",
        f"--data_dir={tmp_path}",
    )  # fmt: skip
    run_module(*pack, "--split=val")
    config = tiny_train_config(synthetic_root, num_epochs=1)
    built = tfds_builder.builder(config, tmp_path)
    val = sources.load_instances(config, config.data.val_split, train=False)[0]
    assert dict(built.info.splits).keys() == {config.data.val_split}
    assert built.info.splits[config.data.val_split].num_examples == len(val)
    # The built data set is not rebuilt to add a split: one error line says so.
    result = run_module(*pack, "--split=train", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"without split(s) {config.data.train_split}: build" in result.stderr.splitlines()[-1]


def test_a_missing_built_data_set_names_the_pack_command(tmp_path):
    config = _mini_config(tmp_path, data_dir=tmp_path / "none")
    with pytest.raises(FileNotFoundError, match=r"hrnet_jax.data.pack .*--data_dir=.*none"):
        sources.load_instances(config, "mini", train=True)


def test_training_from_tfds_resumes_step_exactly_after_dying_mid_epoch(
    synthetic_root, tmp_path, monkeypatch
):
    """A run that dies at step 4 (last checkpoint: step 2) and is started again ends with the
    same losses, row for row, as a run that never died, reading the TFDS source."""
    data_dir = tmp_path / "tfds"
    run_module(
        "hrnet_jax.data.pack", f"--config={TINY_CONFIG}", f"--config.data.root={synthetic_root}",
        f"--data_dir={data_dir}",
    )  # fmt: skip
    config = tiny_train_config(synthetic_root, num_epochs=2)
    config.data.format, config.data.tfds_data_dir = "tfds", str(data_dir)
    config.train.checkpoint_every_steps = 2

    train_loop.train_and_evaluate(config, tmp_path / "straight")
    global_batch, calls = parallel.global_batch, {"n": 0}

    def dies_at_step_4(batch, mesh):
        calls["n"] += 1
        if calls["n"] == 4:
            raise SystemExit("killed")
        return global_batch(batch, mesh)

    monkeypatch.setattr(parallel, "global_batch", dies_at_step_4)
    with pytest.raises(SystemExit):
        train_loop.train_and_evaluate(config, tmp_path / "resumed")
    monkeypatch.setattr(parallel, "global_batch", global_batch)
    assert max(checkpoint.complete_steps(tmp_path / "resumed")) == 2
    train_loop.train_and_evaluate(config, tmp_path / "resumed")
    straight = logged_losses(tmp_path / "straight")
    assert logged_losses(tmp_path / "resumed") == straight and len(straight) == 10


def test_missing_coco_names_the_path_and_the_download_command(tmp_path):
    config = config_lib.recipe()
    config.data.root = str(tmp_path / "coco")
    with pytest.raises(FileNotFoundError) as error:
        sources.load_instances(config, "train2017", train=True)[0]
    message = str(error.value)
    assert str(tmp_path / "coco") in message
    assert "python -m hrnet_jax.data.download --data_dir" in message

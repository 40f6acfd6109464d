"""Where instances come from: COCO folders, packed ArrayRecord shards, and what happens without COCO."""

import numpy as np
import pytest
from testing_utils import ROOT, run_module

from hrnet_jax import config_lib
from hrnet_jax.data import packed, pipeline, sources


def _mini_config(root):
    config = config_lib.recipe()
    config.data.root = str(root)
    config.data.annotation_file = "annotations/person_keypoints_mini.json"
    config.data.image_dir = "images"
    config.input_size, config.heatmap_size = (64, 48), (16, 12)
    return config


def test_packed_shards_give_the_same_samples_as_the_folder(coco_mini, tmp_path):
    config = _mini_config(coco_mini)
    folder = sources.load_instances(config, "val2017", train=True)[0]
    run_module(
        "hrnet_jax.data.pack",
        f"--config={ROOT / 'configs' / 'w32_256x192.py'}",
        f"--config.data.root={coco_mini}",
        "--config.data.annotation_file=annotations/person_keypoints_mini.json",
        "--config.data.image_dir=images",
        "--split=val2017",
        f"--out={tmp_path}",
        "--num_shards=3",
    )
    assert len(list(tmp_path.glob("val2017.array_record-*-of-00003"))) == 3
    config.data.format, config.data.packed_dir = "array_record", str(tmp_path)
    shards = sources.load_instances(config, "val2017", train=True)[0]
    assert isinstance(shards, packed.PackedInstances) and len(shards) == len(folder) == 12
    sampler = pipeline.make_sampler(config, train=True)
    by_ann = {int(shards[i]["ann_id"]): shards[i] for i in range(len(shards))}
    for i in range(len(folder)):
        record = folder[i]
        rng_a, rng_b = np.random.default_rng(i), np.random.default_rng(i)
        a = sampler(record, rng_a)
        b = sampler(by_ann[int(record["ann_id"])], rng_b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_missing_coco_names_the_path_and_the_download_command(tmp_path):
    config = config_lib.recipe()
    config.data.root = str(tmp_path / "coco")
    with pytest.raises(FileNotFoundError) as error:
        sources.load_instances(config, "train2017", train=True)[0]
    message = str(error.value)
    assert str(tmp_path / "coco") in message
    assert "python -m hrnet_jax.data.download --data_dir" in message


def test_missing_packed_shards_are_named(tmp_path):
    config = config_lib.recipe()
    config.data.format, config.data.packed_dir = "array_record", str(tmp_path)
    with pytest.raises(FileNotFoundError, match="train2017.array_record-.*hrnet_jax.data.pack"):
        sources.load_instances(config, "train2017", train=True)[0]

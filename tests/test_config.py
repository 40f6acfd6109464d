"""Config files, command-line overrides and the startup checks of config_lib."""

import ml_collections
import pytest
from testing_utils import TINY_CONFIG

from hrnet_jax import config_lib
from hrnet_jax.errors import ConfigError


def _load(*overrides):
    pairs = [tuple(o.split("=", 1)) if "=" in o else (o, None) for o in overrides]
    return config_lib.load_config(TINY_CONFIG, overrides=pairs)


def test_overrides_are_parsed_by_the_fields_type():
    config = _load(
        "eval.use_gt_bbox=false",
        "train.sync_bn",
        "train.num_epochs=7",
        "train.learning_rate=1e-3",
        "train.lr_decay_epochs=(170,200)",
        "data.custom_keypoints.flip_pairs=((1,2),(3,4))",
        "data.root=/data/coco",
        "input_size=128,96",
    )
    assert config.eval.use_gt_bbox is False and config.train.sync_bn is True
    assert config.train.num_epochs == 7 and config.train.learning_rate == 1e-3
    assert config.train.lr_decay_epochs == (170, 200)
    assert config.data.custom_keypoints.flip_pairs == ((1, 2), (3, 4))
    assert config.data.root == "/data/coco" and config.input_size == (128, 96)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "train.num_epoch=3",
            "unknown config key 'train.num_epoch'; did you mean 'train.num_epochs'?",
        ),
        ("nothing.like.this=1", "unknown config key 'nothing.like.this'"),
        ("model", "config key 'model' is a section"),
        ("train.num_epochs=3.5", "--config.train.num_epochs=3.5: expected an integer"),
        ("eval.flip_test=maybe", "expected true or false"),
        ("input_size=big", "expected a tuple"),
        ("train.learning_rate", "--config.train.learning_rate needs a value"),
    ],
)
def test_a_bad_override_names_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        _load(override)
    assert message in str(error.value)


def test_check_reports_every_problem_at_once_and_freezes_the_config():
    config = _load(
        "model.dtype=bf16",
        "codec.decoding=bogus",
        "input_size=(96,64)",
        "train.global_batch_size=0",
        "model.num_joints=10",
    )
    with pytest.raises(ConfigError) as error:
        config_lib.check(config)
    lines = str(error.value).splitlines()[1:]
    expected = [
        "model.dtype is 'bf16'; expected one of float32, bfloat16, float16 (write 'bfloat16')",
        "train.global_batch_size is 0; it must be > 0",
        "input_size (96, 64) is not 4x heatmap_size (16, 16)",
        "model.num_joints is 10 but data.keypoints 'coco' has 17 joints: set model.num_joints=17",
        "codec.decoding is 'bogus'; expected one of quarter_offset, dark",
    ]
    assert len(lines) == len(expected)
    for line, text in zip(lines, expected, strict=True):
        assert text in line
    frozen = config_lib.check(_load())
    assert isinstance(frozen, ml_collections.FrozenConfigDict)
    with pytest.raises((AttributeError, TypeError, ValueError)):
        frozen.train.num_epochs = 3


def test_input_size_must_fuse_at_the_lowest_branch():
    with pytest.raises(ConfigError, match=r"input_size \(72, 72\) must be multiples of 32"):
        config_lib.check(_load("input_size=(72,72)", "heatmap_size=(18,18)"))


def test_a_saved_config_comes_back_with_the_recipes_types():
    config = config_lib.check(_load("train.lr_decay_epochs=(5,9)"))
    saved = config_lib.from_saved(__import__("json").loads(config.to_json_best_effort()))
    assert config_lib.check(saved) == config

"""Training that starts from imported PyTorch weights: `train.init_from_torch` and `train.init_from`."""

import jax
import numpy as np
import pytest
from test_import_torch import (
    classifier_only,
    flax_path,
    loaded_keys,
    official_shapes,
    random_state_dict,
)
from testing_utils import restore_variables, tiny_train_config

from hrnet_jax import train_loop
from hrnet_jax.tools import torch_weights as import_torch


def _trained_params(config, workdir):
    variables, _ = restore_variables(config, workdir)
    return {tuple(p.key for p in path): np.asarray(v) for path, v in
            jax.tree_util.tree_leaves_with_path(variables["params"])}  # fmt: skip


def _expected_params(state_dict, keys):
    return {
        flax_path(k, state_dict[k].ndim)[1:]: (
            state_dict[k].transpose(2, 3, 1, 0) if state_dict[k].ndim == 4 else state_dict[k]
        )
        for k in keys
        if flax_path(k, state_dict[k].ndim)[0] == "params"
    }


def test_training_starts_from_imported_weights(synthetic_root, tmp_path):
    """init_from_torch (ImageNet backbone) and init_from (an imported pose checkpoint) give the
    first step's params; a zero learning rate keeps them to the end of the epoch."""
    save_file = pytest.importorskip("safetensors.numpy").save_file
    config = tiny_train_config(synthetic_root, num_epochs=1)
    config.train.learning_rate = 0.0

    imagenet = official_shapes(config.model, "imagenet")
    imagenet_dict = random_state_dict(imagenet, seed=5)
    save_file(imagenet_dict, tmp_path / "imagenet.safetensors")
    from_torch = config.copy_and_resolve_references()
    from_torch.train.init_from_torch = str(tmp_path / "imagenet.safetensors")
    train_loop.train_and_evaluate(from_torch, tmp_path / "from_torch")
    params = _trained_params(config, tmp_path / "from_torch")
    expected = _expected_params(
        imagenet_dict, set(loaded_keys(imagenet)) - classifier_only(config.model)
    )
    assert {k for k in params if k[0] != "final_layer"} == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(params[key], value, err_msg=str(key))

    pose = official_shapes(config.model, "pose")
    pose_dict = random_state_dict(pose, seed=6)
    save_file(pose_dict, tmp_path / "pose.safetensors")
    import_torch.import_file(tmp_path / "pose.safetensors", "pose", config, tmp_path / "imported")
    from_pose = config.copy_and_resolve_references()
    from_pose.train.init_from = str(tmp_path / "imported")
    train_loop.train_and_evaluate(from_pose, tmp_path / "from_pose")
    params = _trained_params(config, tmp_path / "from_pose")
    expected = _expected_params(pose_dict, loaded_keys(pose))
    assert set(params) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(params[key], value, err_msg=str(key))

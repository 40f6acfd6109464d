"""The Flax HRNet against the official architecture's numbers and PyTorch's layer semantics."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from testing_utils import ROOT, run_module, tiny_model_config

from hrnet_jax import config_lib, models
from hrnet_jax.errors import ConfigError
from hrnet_jax.models import summary
from hrnet_jax.models.hrnet import upsample_nearest


def _abstract_variables(model_config, input_size):
    model = models.create_model(model_config)
    x = jax.ShapeDtypeStruct((2, *input_size, 3), jnp.float32)
    return model, jax.eval_shape(model.init, jax.random.key(0), x), x


def _num_params(variables):
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize(
    "config_file,expected",
    [
        ("w32_256x192.py", 28_536_113),
        ("w32_384x288.py", 28_536_113),
        ("w48_384x288.py", 63_595_745),
    ],
)
def test_parameter_count_matches_official(config_file, expected):
    config = config_lib.load_config(ROOT / "configs" / config_file)
    _, variables, _ = _abstract_variables(config.model, config.input_size)
    assert _num_params(variables) == expected


@pytest.mark.parametrize(
    "input_size,heatmap_shape", [((256, 192), (64, 48, 17)), ((384, 288), (96, 72, 17))]
)
def test_output_is_one_heatmap_per_joint_at_stride_4(input_size, heatmap_shape):
    model, variables, x = _abstract_variables(config_lib.hrnet_model(32), input_size)
    out = jax.eval_shape(model.apply, variables, x)
    assert out.shape == (2, *heatmap_shape)


@pytest.mark.parametrize(
    "width,input_size,gmacs",
    [
        (32, (256, 192), 7.12),
        (32, (384, 288), 16.02),
        (48, (256, 192), 14.61),
        (48, (384, 288), 32.88),
    ],
)
def test_conv_gmacs_match_official_readme(width, input_size, gmacs):
    model, variables, x = _abstract_variables(config_lib.hrnet_model(width), input_size)
    x1 = jnp.zeros((1, *input_size, 3))
    macs = summary.conv_macs(lambda v, x: model.apply(v, x), variables, x1)
    assert macs / 2**30 == pytest.approx(gmacs, rel=0.005)


def test_summary_cli_prints_one_json_line():
    out = run_module("hrnet_jax.tools.summary", f"--config={ROOT}/configs/w32_256x192.py").stdout
    line = json.loads(out.splitlines()[-1])
    assert line["params"] == 28_536_113
    assert line["gmacs"] == pytest.approx(7.12, rel=0.005)
    # XLA counts 2 flops per multiply-add but skips the taps that fall on zero padding (~1% of them
    # at these sizes), and adds BN, ReLU and sums: about 2x the 7.645e9 MACs.
    assert 1.95 * 7.645 < line["xla_gflops"] < 2.2 * 7.645
    assert line["input_size"] == [256, 192] and line["heatmap_size"] == [64, 48]


@pytest.fixture(scope="module")
def w32_init():
    model = models.create_model(config_lib.hrnet_model(32))
    # lazy_init leaves the forward pass out of the program: a third of jit(model.init)'s compile.
    return model.lazy_init(jax.random.key(0), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))


def test_init_follows_reference(w32_init):
    params = w32_init["params"]
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    kernels = [v for p, v in flat if p[-1].key == "kernel"]
    all_kernels = np.concatenate([np.ravel(k) for k in kernels])
    assert all_kernels.size > 28_000_000
    assert np.std(all_kernels) == pytest.approx(0.001, rel=0.01)
    assert abs(np.mean(all_kernels)) < 1e-5
    scales = [v for p, v in flat if p[-1].key == "scale"]
    biases = [v for p, v in flat if p[-1].key == "bias"]
    assert scales and all(np.all(s == 1.0) for s in scales)
    assert biases and all(np.all(b == 0.0) for b in biases)  # BN betas and the head's bias
    assert params["final_layer"]["bias"].shape == (17,)
    stats = jax.tree.leaves(w32_init["batch_stats"])
    assert stats and all(np.all((s == 0) | (s == 1)) for s in stats)


def test_convs_pad_symmetrically_like_pytorch():
    """The stem's stride-2 3x3 conv pads 1 on every side (PyTorch), not SAME's (0, 1) at even sizes."""
    model = models.create_model(tiny_model_config())
    x = jax.random.normal(jax.random.key(1), (1, 32, 64, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    capture = lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"])  # noqa: E731
    _, state = jax.jit(capture)(variables, x)
    stem = state["intermediates"]["backbone"]["conv1"]["__call__"][0]
    kernel = variables["params"]["backbone"]["conv1"]["kernel"]
    # Direct evaluation of out[y, x] = sum over the 3x3 window centred on input (2y, 2x), zero outside.
    padded = np.pad(np.asarray(x[0]), ((1, 1), (1, 1), (0, 0)))
    expected = np.zeros((16, 32, kernel.shape[-1]))
    for oy in range(16):
        for ox in range(32):
            window = padded[2 * oy : 2 * oy + 3, 2 * ox : 2 * ox + 3]
            expected[oy, ox] = np.einsum("hwc,hwco->o", window, np.asarray(kernel))
    np.testing.assert_allclose(stem[0], expected, rtol=1e-4, atol=1e-7)


def test_upsample_nearest_repeats_pixels():
    x = jnp.arange(2 * 3 * 2).reshape(1, 3, 2, 2).astype(jnp.float32)
    expected = np.repeat(np.repeat(np.asarray(x), 4, axis=1), 4, axis=2)
    np.testing.assert_array_equal(upsample_nearest(x, 4), expected)


def test_fuse_layers_follow_official_structure():
    """Names and shapes of a stage-4 module's fuse paths, as pose_hrnet.py's _make_fuse_layers builds them."""
    model, variables, _ = _abstract_variables(config_lib.hrnet_model(32), (256, 192))
    bb = variables["params"]["backbone"]
    mod = bb["stage4_0"]
    assert mod["fuse_layers_0_3_0"]["kernel"].shape == (
        1,
        1,
        256,
        32,
    )  # 1x1 conv, then BN, upsample x8
    assert "fuse_layers_0_3_1" in mod and "scale" in mod["fuse_layers_0_3_1"]
    assert mod["fuse_layers_3_0_0_0"]["kernel"].shape == (3, 3, 32, 32)  # chain keeps c_j ...
    assert mod["fuse_layers_3_0_1_0"]["kernel"].shape == (3, 3, 32, 32)
    assert mod["fuse_layers_3_0_2_0"]["kernel"].shape == (3, 3, 32, 256)  # ... until the last conv
    assert not any(
        k.startswith("fuse_layers_1") for k in bb["stage4_2"]
    )  # single-output last module
    assert "fuse_layers_3_2_0_0" in bb["stage4_1"]
    assert bb["transition1_0_0"]["kernel"].shape == (3, 3, 256, 32)
    assert bb["transition1_1_0_0"]["kernel"].shape == (3, 3, 256, 64)
    assert bb["transition3_3_0_0"]["kernel"].shape == (3, 3, 128, 256)
    assert "transition2_0_0" not in bb  # unchanged branches pass through
    assert bb["layer1_0"]["downsample_0"]["kernel"].shape == (1, 1, 64, 256)


@pytest.fixture(scope="module")
def tiny():
    model = models.create_model(tiny_model_config())
    x = jax.random.normal(jax.random.key(2), (4, 64, 32, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    # Scale the std-0.001 kernels so that activations are O(1), as after training.
    return model, jax.tree.map(lambda v: v * 300 if v.ndim == 4 else v, variables), x


def test_train_mode_uses_and_updates_batch_statistics(tiny):
    model, variables, x = tiny
    out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    # Running statistics do not enter a train-mode forward: replacing them changes nothing.
    shifted = jax.tree.map(lambda s: s + 3.0, variables["batch_stats"])
    out2, _ = model.apply(
        {**variables, "batch_stats": shifted}, x, train=True, mutable=["batch_stats"]
    )
    np.testing.assert_array_equal(out, out2)
    # The stem BN's running mean moves 10% of the way to the batch mean of conv1's output.
    kernel = variables["params"]["backbone"]["conv1"]["kernel"]
    conv1 = jax.lax.conv_general_dilated(
        x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    expected_mean = 0.9 * 0.0 + 0.1 * np.mean(np.asarray(conv1), axis=(0, 1, 2))
    new_mean = updates["batch_stats"]["backbone"]["bn1"]["mean"]
    np.testing.assert_allclose(new_mean, expected_mean, rtol=1e-4, atol=1e-9)


def test_eval_mode_uses_running_statistics_and_changes_nothing(tiny):
    model, variables, x = tiny
    out, updates = model.apply(variables, x, train=False, mutable=["batch_stats"])
    chex_equal = jax.tree.map(np.array_equal, updates["batch_stats"], variables["batch_stats"])
    assert all(jax.tree.leaves(chex_equal))
    shifted = jax.tree.map(lambda s: s + 3.0, variables["batch_stats"])
    out2 = model.apply({**variables, "batch_stats": shifted}, x)
    assert float(jnp.max(jnp.abs(out - out2))) > 0.1 * float(jnp.max(jnp.abs(out)))


def test_batchnorm_normalises_with_pytorchs_epsilon_in_eval_mode(tiny):
    model, variables, x = tiny
    # A small running variance, so that eps = 1e-5 (not flax's default 1e-6) shows in the output.
    stats = jax.tree.map(lambda s: s, variables["batch_stats"])
    bn1 = stats["backbone"]["bn1"]
    stats["backbone"]["bn1"] = {
        "mean": jnp.full_like(bn1["mean"], 0.5),
        "var": jnp.full_like(bn1["var"], 1e-4),
    }
    _, state = model.apply(
        {**variables, "batch_stats": stats},
        x,
        capture_intermediates=lambda module, _: module.name == "bn1",
        mutable=["intermediates"],
    )
    (out,) = state["intermediates"]["backbone"]["bn1"]["__call__"]
    kernel = variables["params"]["backbone"]["conv1"]["kernel"]
    conv1 = jax.lax.conv_general_dilated(
        x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    expected = (np.asarray(conv1) - 0.5) / np.sqrt(1e-4 + 1e-5)  # scale 1, bias 0 at init
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)


def test_bfloat16_compute_keeps_float32_params():
    model32 = models.create_model(tiny_model_config())
    model16 = models.create_model(tiny_model_config(dtype="bfloat16"))
    x = jax.random.normal(jax.random.key(3), (2, 64, 32, 3))
    variables = jax.jit(model16.init)(jax.random.key(0), x)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    # Scale the weights so that heatmaps are O(1), as after training, rather than O(1e-6).
    variables = jax.tree.map(lambda v: v * 300 if v.ndim == 4 else v, variables)
    out16 = jax.jit(model16.apply)(variables, x)
    out32 = jax.jit(model32.apply)(variables, x)
    assert out16.dtype == jnp.bfloat16 and out32.dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(out32)))
    # bf16 keeps 8 mantissa bits; ~20 layers of rounding stay within a few percent of the range.
    err = float(jnp.max(jnp.abs(out16.astype(jnp.float32) - out32)))
    assert scale > 0.1
    assert err < 0.05 * scale


def test_input_not_divisible_by_the_lowest_stride_is_rejected(tiny):
    model, variables, _ = tiny
    with pytest.raises(ValueError, match="multiples of 32.*48x40"):
        model.apply(variables, jnp.zeros((1, 48, 40, 3)))


def test_unknown_config_key_is_named():
    config = config_lib.recipe()
    config.model.stage2.num_blokcs = (4, 4)
    with pytest.raises(ConfigError, match=r"model\.stage2\.num_blokcs.*num_blocks"):
        config_lib.validate(config)


def test_stage_spec_with_lists_of_wrong_length_is_named():
    m = config_lib.hrnet_model(32)
    m.stage3.num_channels = (32, 64)
    with pytest.raises(
        ValueError, match=r"model\.stage3\.num_channels has 2 entries.*num_branches is 3"
    ):
        models.create_model(m)

"""Importing PyTorch HRNet state dicts: names, layouts, mismatch errors, and parity with timm.

The state dicts here are generated from the architecture as the official code lays it out (the
recipe's section 1), independently of the converter, which derives its keys from the Flax tree.
"""

import json
import math
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from testing_utils import ROOT, TINY_CONFIG, run_module, tiny_model_config

from hrnet_jax import config_lib, deploy, export, models, predictor
from hrnet_jax.tools import torch_weights as import_torch

EXPANSION = {"basic": 1, "bottleneck": 4}
BN_ENTRIES = ("weight", "bias", "running_mean", "running_var")


def official_shapes(model_config, kind: str) -> dict[str, tuple[int, ...]]:
    """Every key of the official state dict with its shape: pose_hrnet.py's for "pose", and
    cls_hrnet.py's (the ImageNet classifier) for "imagenet"."""
    shapes = {}

    def conv(name, c_out, c_in, k):
        shapes[f"{name}.weight"] = (c_out, c_in, k, k)

    def bn(name, c):
        shapes.update({f"{name}.{e}": (c,) for e in BN_ENTRIES})
        shapes[f"{name}.num_batches_tracked"] = ()

    def block(name, block_type, c_in, planes):
        c_out = planes * EXPANSION[block_type]
        if block_type == "bottleneck":  # 1x1 -> 3x3 -> 1x1 (x4)
            conv(f"{name}.conv1", planes, c_in, 1)
            conv(f"{name}.conv2", planes, planes, 3)
            conv(f"{name}.conv3", c_out, planes, 1)
            bn(f"{name}.bn3", c_out)
        else:  # two 3x3
            conv(f"{name}.conv1", planes, c_in, 3)
            conv(f"{name}.conv2", planes, planes, 3)
        bn(f"{name}.bn1", planes)
        bn(f"{name}.bn2", planes)
        if c_in != c_out:
            conv(f"{name}.downsample.0", c_out, c_in, 1)
            bn(f"{name}.downsample.1", c_out)
        return c_out

    stem = model_config.stem_channels
    conv("conv1", stem, 3, 3), bn("bn1", stem), conv("conv2", stem, stem, 3), bn("bn2", stem)
    s1 = model_config.stage1
    c = stem
    for b in range(s1.num_blocks[0]):
        c = block(f"layer1.{b}", s1.block, c, s1.num_channels[0])
    prev = [c]
    for n in (2, 3, 4):
        s = model_config[f"stage{n}"]
        cur = [ch * EXPANSION[s.block] for ch in s.num_channels]
        for i, c_i in enumerate(cur):  # transition{n-1}: adapt or grow branches
            t = f"transition{n - 1}.{i}"
            if i < len(prev) and c_i != prev[i]:
                conv(f"{t}.0", c_i, prev[i], 3), bn(f"{t}.1", c_i)
            elif i >= len(prev):
                steps = i + 1 - len(prev)
                for k in range(steps):
                    c_k = c_i if k == steps - 1 else prev[-1]
                    conv(f"{t}.{k}.0", c_k, prev[-1], 3), bn(f"{t}.{k}.1", c_k)
        for m in range(s.num_modules):
            mod = f"stage{n}.{m}"
            for i in range(s.num_branches):
                for b in range(s.num_blocks[i]):
                    block(f"{mod}.branches.{i}.{b}", s.block, cur[i], s.num_channels[i])
            pose_last = kind == "pose" and n == 4 and m == s.num_modules - 1
            for i in range(1 if pose_last else s.num_branches):
                for j in range(s.num_branches):
                    f = f"{mod}.fuse_layers.{i}.{j}"
                    if j > i:  # 1x1 conv + BN, then upsampling
                        conv(f"{f}.0", cur[i], cur[j], 1), bn(f"{f}.1", cur[i])
                    for k in range(i - j):  # stride-2 3x3 chain
                        c_k = cur[i] if k == i - j - 1 else cur[j]
                        conv(f"{f}.{k}.0", c_k, cur[j], 3), bn(f"{f}.{k}.1", c_k)
        prev = cur
    if kind == "pose":
        k = model_config.final_conv_kernel
        conv("final_layer", model_config.num_joints, prev[0], k)
        shapes["final_layer.bias"] = (model_config.num_joints,)
        return shapes
    # The classifier's head: bottleneck "incre" blocks to 128..1024, strided 3x3 merges (with
    # bias), a 1x1 to 2048 and the linear classifier.
    head = [128, 256, 512, 1024]
    for i, c_in in enumerate(prev):
        block(f"incre_modules.{i}.0", "bottleneck", c_in, head[i] // 4)
    for i in range(3):
        conv(f"downsamp_modules.{i}.0", head[i + 1], head[i], 3)
        shapes[f"downsamp_modules.{i}.0.bias"] = (head[i + 1],)
        bn(f"downsamp_modules.{i}.1", head[i + 1])
    conv("final_layer.0", 2048, 1024, 1)
    shapes["final_layer.0.bias"] = (2048,)
    bn("final_layer.1", 2048)
    shapes.update({"classifier.weight": (1000, 2048), "classifier.bias": (1000,)})
    return shapes


def random_state_dict(shapes, seed=0, fill=True) -> dict[str, np.ndarray]:
    """Seeded values (positive running variances); `fill=False`: uninitialised, for shape tests."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            out[key] = np.array(1000, np.int64)
        elif not fill:
            out[key] = np.empty(shape, np.float32)
        elif key.endswith("running_var"):
            out[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            out[key] = rng.standard_normal(shape, dtype=np.float32)
    return out


def flax_path(key: str, ndim: int) -> tuple[str, ...]:
    """The Flax leaf an official key goes to: numeric components folded into the preceding name,
    the head at the top level and the rest under the backbone."""
    *modules, entry = re.sub(r"\.(?=\d)", "_", key).split(".")
    leaf = {"running_mean": "mean", "running_var": "var", "bias": "bias"}.get(entry)
    leaf = leaf or ("kernel" if ndim == 4 else "scale")
    collection = "batch_stats" if entry.startswith("running_") else "params"
    top = () if modules[0] == "final_layer" else ("backbone",)
    return (collection, *top, *modules, leaf)


def assert_imported(variables, state_dict, keys):
    """Each key's tensor, in Flax's layout, is the leaf `flax_path(key)`; and nothing else is."""
    flat = {
        tuple(p.key for p in path): np.asarray(v)
        for path, v in jax.tree_util.tree_leaves_with_path(variables)
    }
    assert set(flat) == {flax_path(k, state_dict[k].ndim) for k in keys}
    for key in keys:
        src = state_dict[key]
        expected = src.transpose(2, 3, 1, 0) if src.ndim == 4 else src
        np.testing.assert_array_equal(flat[flax_path(key, src.ndim)], expected, err_msg=key)


def abstract_variables(model_config, final_multi_scale=False):
    model = models.create_model(model_config, final_multi_scale=final_multi_scale)
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    return model, jax.eval_shape(model.init, jax.random.key(0), x)


def loaded_keys(shapes):
    return [k for k in shapes if not k.endswith("num_batches_tracked")]


def classifier_only(model_config) -> set[str]:
    """The ImageNet classifier's keys that the pose network has no place for."""
    pose = official_shapes(model_config, "pose")
    return set(loaded_keys(official_shapes(model_config, "imagenet"))) - set(pose)


@pytest.fixture(scope="module")
def w32():
    return abstract_variables(config_lib.hrnet_model(32))[1]


def test_w32_pose_file_fills_every_leaf(w32):
    shapes = official_shapes(config_lib.hrnet_model(32), "pose")
    learned = [s for k, s in shapes.items() if not re.search(r"running_|num_batches", k)]
    assert sum(math.prod(s) for s in learned) == 28_536_113  # the official count
    state_dict = random_state_dict(shapes)
    variables, report = import_torch.convert(state_dict, w32, "pose")
    assert report.unused == [] and report.missing == [] and report.layout == "official"
    assert len(report.used) == len(jax.tree.leaves(w32)) == len(loaded_keys(shapes))
    assert_imported(variables, state_dict, loaded_keys(shapes))


def test_w32_imagenet_file_fills_the_backbone_and_leaves_the_classifier(w32):
    shapes = official_shapes(config_lib.hrnet_model(32), "imagenet")
    state_dict = random_state_dict(shapes, fill=False)
    _, report = import_torch.convert(state_dict, w32, "imagenet")
    unused = classifier_only(config_lib.hrnet_model(32))
    assert {"classifier.weight", "stage4.2.fuse_layers.3.0.2.0.weight"} <= unused
    assert {k.split(".")[0] for k in unused} == {
        "incre_modules",
        "downsamp_modules",
        "final_layer",
        "classifier",
        "stage4",
    }
    assert set(report.unused) == unused
    assert set(report.used) == set(loaded_keys(shapes)) - unused
    assert report.missing == ["params/final_layer/bias", "params/final_layer/kernel"]


def _restore(out_dir):
    manager = ocp.CheckpointManager(out_dir / "checkpoints", item_names=("state", "config"))
    assert manager.all_steps() == [0]
    restored = manager.restore(
        0, args=ocp.args.Composite(state=ocp.args.StandardRestore(), config=ocp.args.JsonRestore())
    )
    manager.close()
    return restored.state, restored.config, json.loads((out_dir / "import_report.json").read_text())


def test_cli_imports_a_wrapped_data_parallel_pth(tmp_path):
    torch = pytest.importorskip("torch", reason="reading .pth files needs torch")
    shapes = official_shapes(tiny_model_config(), "pose")
    state_dict = random_state_dict(shapes, seed=1)
    wrapped = {
        "epoch": 3,
        "state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in state_dict.items()},
    }
    torch.save(wrapped, tmp_path / "pose.pth")
    out = tmp_path / "out"
    run_module(
        "hrnet_jax.tools.import_torch",
        f"--src={tmp_path / 'pose.pth'}",
        "--kind=pose",
        f"--config={TINY_CONFIG}",
        f"--out={out}",
    )
    state, config, report = _restore(out)
    assert_imported(state, state_dict, loaded_keys(shapes))
    assert report["unused"] == [] and report["missing"] == [] and report["kind"] == "pose"
    assert config["model"]["stage4"]["num_channels"] == [4, 8, 16, 32]
    # The imported folder exports like a run's, and the artifact computes the imported network.
    run_module("hrnet_jax.export", f"--workdir={out}", "--format=stablehlo", f"--out={out}/m.hlo")
    checked = export.serving_config(config_lib.from_saved(config), flip_test=False)
    infer = predictor.inference_function(checked, models.create_model(checked.model))
    crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), np.uint8)
    expected = np.asarray(jax.jit(infer)(state, crops))
    got = deploy.load(out / "m.hlo").heatmaps(crops)  # random weights: values up to ~1e12
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_imagenet_safetensors_keeps_the_initialised_head(tmp_path):
    save_file = pytest.importorskip("safetensors.numpy").save_file

    config = config_lib.load_config(TINY_CONFIG)
    shapes = official_shapes(config.model, "imagenet")
    state_dict = random_state_dict(shapes, seed=2)
    save_file(state_dict, tmp_path / "imagenet.safetensors")
    report = import_torch.import_file(
        tmp_path / "imagenet.safetensors", "imagenet", config, tmp_path
    )
    state, _, saved_report = _restore(tmp_path)
    head = state["params"].pop("final_layer")
    backbone = set(loaded_keys(shapes)) - classifier_only(config.model)
    assert_imported(state, state_dict, backbone)
    initial = import_torch.initial_variables(config)["params"]["final_layer"]  # all, as training
    jax.tree.map(np.testing.assert_array_equal, head, initial)
    assert set(saved_report["unused"]) == set(report.unused) == set(loaded_keys(shapes)) - backbone
    assert saved_report["missing"] == ["params/final_layer/bias", "params/final_layer/kernel"]


def test_mmpose_layout_is_recognised():
    shapes = official_shapes(tiny_model_config(), "pose")
    state_dict = random_state_dict(shapes, seed=3)
    mmpose = {
        (f"head.{k}" if k.startswith("final_layer") else f"backbone.{k}"): v
        for k, v in state_dict.items()
    }
    variables, report = import_torch.convert(
        mmpose, abstract_variables(tiny_model_config())[1], "pose"
    )
    assert report.layout == "mmpose" and report.unused == []
    assert_imported(variables, state_dict, loaded_keys(shapes))


def test_w48_file_into_w32_names_keys_and_shapes(w32):
    state_dict = random_state_dict(official_shapes(config_lib.hrnet_model(48), "pose"), fill=False)
    with pytest.raises(import_torch.ImportMismatchError) as e:
        import_torch.convert(state_dict, w32, "pose")
    problems = e.value.problems
    assert (
        "stage2.0.branches.1.2.conv1.weight: shape (96, 96, 3, 3) in the file, (64, 64, 3, 3) in "
        "the model (params/backbone/stage2_0/branches_1_2/conv1/kernel)" in problems
    )
    assert "stage4.0.fuse_layers.0.3.1.running_var: shape (48,) in the file, (32,)" in str(problems)
    assert len(problems) > 1000 and "more" in str(e.value)  # all collected; the message is capped


def test_classification_head_into_the_pose_path_is_refused(w32):
    state_dict = random_state_dict(
        official_shapes(config_lib.hrnet_model(32), "imagenet"), fill=False
    )
    with pytest.raises(import_torch.ImportMismatchError, match="use kind 'imagenet'") as e:
        import_torch.convert(state_dict, w32, "pose")
    problems = "\n".join(e.value.problems)
    assert "final_layer.weight: not in the file (model expects (17, 32, 1, 1)" in problems
    assert "final_layer.0.weight: shape (2048, 1024, 1, 1) in the file, no place" in problems
    assert "classifier.weight: shape (1000, 2048) in the file" in problems


def test_pose_file_without_stage4_is_refused(w32):
    shapes = official_shapes(config_lib.hrnet_model(32), "pose")
    state_dict = random_state_dict(shapes, fill=False)
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("stage4.")}
    with pytest.raises(import_torch.ImportMismatchError) as e:
        import_torch.convert(state_dict, w32, "pose")
    stage4 = [k for k in loaded_keys(shapes) if k.startswith("stage4.")]
    assert len(e.value.problems) == len(stage4)
    assert (
        "stage4.0.branches.0.0.conv1.weight: not in the file (model expects (32, 32, 3, 3)"
        in str(e.value)
    )


# --- numerical parity with timm's hrnet_w32 (optional) -------------------------------------------

TIMM_SCRIPT = textwrap.dedent(
    """
    import sys
    import timm, torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    # feature_location='': the raw stage-4 branch outputs ('incre' would add the classifier's
    # incre_modules); out_indices 1..4 are the four branches (0 is the stride-2 stem).
    model = timm.create_model(
        "hrnet_w32", features_only=True, pretrained=False, feature_location="", out_indices=(1, 2, 3, 4)
    ).eval()
    with torch.no_grad():
        for m in model.modules():
            # timm starts every BN at weight 1, bias 0, mean 0, var 1: randomise them all.
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.eps == 1e-5
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
        x = torch.randn(2, 3, 96, 64)
        features = model(x)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[1])
    save_file({"x": x, **{f"f{i}": f for i, f in enumerate(features)}}, sys.argv[2])
    """
)


def test_matches_timm_hrnet_w32(tmp_path):
    python = os.environ.get("HRNET_JAX_TIMM_PYTHON", sys.executable)
    probe = subprocess.run([python, "-c", "import timm, torch"], capture_output=True, text=True)
    if probe.returncode:
        why = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(
            f"timm and torch do not import in {python} ({why}); set HRNET_JAX_TIMM_PYTHON to an "
            "interpreter that has them (docs/import_torch.md)"
        )
    load_file = pytest.importorskip("safetensors.numpy").load_file
    weights, outputs = tmp_path / "timm.safetensors", tmp_path / "out.safetensors"
    subprocess.run([python, "-c", TIMM_SCRIPT, weights, outputs], check=True, cwd=ROOT, timeout=300)
    model, abstract = abstract_variables(config_lib.hrnet_model(32), final_multi_scale=True)
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
    variables, report = import_torch.convert(load_file(weights), zeros, "imagenet")
    assert report.unused == []  # timm's features_only model has no classifier parts
    ref = load_file(outputs)
    x = jnp.asarray(ref["x"].transpose(0, 2, 3, 1))
    with jax.default_matmul_precision("highest"):
        features = jax.jit(lambda v, x: model.apply(v, x, method="features"))(variables, x)
    errors = []
    for i, f in enumerate(features):
        expected = ref[f"f{i}"].transpose(0, 2, 3, 1)
        errors.append(float(np.max(np.abs(f - expected)) / np.max(np.abs(expected))))
    print(f"max relative error per branch vs timm: {errors}")
    assert max(errors) < 1e-4, errors  # relative to the largest value: activations reach ~1e8

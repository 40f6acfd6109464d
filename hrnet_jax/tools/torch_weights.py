"""Official PyTorch HRNet weights → the Flax model's variables, and an orbax checkpoint of them.

The command line is `hrnet_jax.tools.import_torch`:

    python -m hrnet_jax.tools.import_torch --src=hrnet_w32-36af842e.pth --kind=imagenet \
        --config=configs/w32_384x288.py --out=/tmp/w32_imagenet
    python -m hrnet_jax.tools.import_torch --src=pose_hrnet_w32_384x288.pth --kind=pose \
        --config=configs/w32_384x288.py --out=/tmp/w32_pose

`--kind=imagenet` loads the backbone of the ImageNet classifier (HRNet-Image-Classification's
hrnet_w32-36af842e.pth, or timm's hrnet_w32) as the reference initialises pose training; the head
keeps its initialisation. `--kind=pose` loads a whole pose network (the official pose_hrnet_*.pth,
with or without DataParallel's `module.` prefix, or mmpose's `backbone.*` / `head.final_layer.*`).
DIR/checkpoints then serves `train.init_from` and the evaluator; DIR/import_report.json lists
what was used, left unused and kept from the initialisation.

The Flax module names are the state-dict keys with numeric components folded into the preceding
name (models/hrnet.py), so the mapping is computed from the Flax tree: each Flax leaf names the
one PyTorch tensor it needs, and whatever the file has beyond that is checked against the parts
of the classifier the pose network leaves out.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from hrnet_jax import checkpoint
from hrnet_jax.errors import UserError

KINDS = ("imagenet", "pose")

# Keys of the ImageNet classifier's head, which the pose network has no use for.
CLASSIFIER_HEAD = re.compile(r"^(incre_modules|downsamp_modules|classifier)\.|^final_layer\.\d+\.")
# mmpose's pose models: `backbone.<official key>` and the head under `head.` (1.x) or
# `keypoint_head.` (0.x).
MMPOSE_HEAD = re.compile(r"^(head|keypoint_head)\.(?=final_layer\.)")
# (collection, Flax leaf name) -> PyTorch parameter or buffer name.
LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
MAX_LISTED = 25  # problems an error message lists; ImportMismatchError.problems has them all


class ImportMismatchError(UserError, ValueError):
    """The file does not fit the model; `problems` lists every mismatched key with its shapes."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """What a conversion did: PyTorch key -> Flax path used, keys left unused, leaves kept."""

    kind: str
    layout: str  # "official" (with or without `module.`) or "mmpose"
    used: dict[str, str]
    unused: list[str]  # keys of the file the model has no place for (num_batches_tracked aside)
    missing: list[str]  # Flax leaves the file does not provide: kept at their initial values

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_state_dict(
    path: str | pathlib.Path, *, trust_pickle: bool = False
) -> dict[str, np.ndarray]:
    """A PyTorch state dict from `.safetensors` or a torch `.pth`/`.pt` file, as numpy arrays.

    torch is imported only for `.pth` files (it is an optional dependency). Those are read with
    `weights_only=True` unless `trust_pickle`: full checkpoints of some trainers (mmpose 1.x) pickle
    other objects besides the tensors, and unpickling those runs code from the file.
    A checkpoint dict that wraps the weights in 'state_dict' (or 'model') is unwrapped.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"reading {path.name} needs PyTorch (pip install torch); .safetensors files do not"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as e:
        if trust_pickle:
            raise
        raise ValueError(
            f"torch.load({path}, weights_only=True) failed: {e}\nIf the file comes from a source "
            "you trust, pass --trust_pickle (trust_pickle=True) to unpickle its other objects."
        ) from e
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
    out = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
                value = value.float()  # numpy has no bfloat16
            out[key] = value.numpy()
    return out


def normalize_keys(state_dict: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The official key names (DataParallel's `module.` dropped, mmpose's prefixes mapped back)."""
    keys = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if not any(k.startswith("backbone.") for k in keys):
        return keys, "official"
    out = {}
    for key, value in keys.items():
        new = MMPOSE_HEAD.sub("", key.removeprefix("backbone."))
        if new in out:
            raise ValueError(f"two keys of the file map to {new!r} (one of them is {key!r})")
        out[new] = value
    return out, "mmpose"


def torch_key(path: tuple[str, ...]) -> str:
    """The PyTorch key of a Flax leaf: ('params', 'backbone', 'stage2_0', 'fuse_layers_1_0_0',
    'kernel') -> 'stage2.0.fuse_layers.1.0.0.weight' (the backbone is the top level there)."""
    collection, *modules, leaf = path
    if modules and modules[0] == "backbone":
        modules = modules[1:]
    return ".".join([*map(_torch_name, modules), LEAF_NAMES[(collection, leaf)]])


def _torch_name(module: str) -> str:
    """'fuse_layers_1_0_0' -> 'fuse_layers.1.0.0', 'stage2_0' -> 'stage2.0'."""
    return re.sub(r"_(?=\d)", ".", module)


def to_flax_layout(value: np.ndarray, leaf: str) -> np.ndarray:
    """PyTorch's OIHW conv weight -> Flax's HWIO kernel; BN vectors and biases as they are."""
    value = np.asarray(value)
    return value.transpose(2, 3, 1, 0) if leaf == "kernel" and value.ndim == 4 else value


def convert(
    state_dict: Mapping[str, Any], init_variables: Mapping[str, Any], kind: str
) -> tuple[dict[str, Any], ImportReport]:
    """Fills the Flax variables {'params', 'batch_stats'} from a PyTorch state dict.

    `init_variables` (a freshly initialised model's variables; for "pose" abstract leaves such as
    jax.ShapeDtypeStruct do) defines the expected tree and supplies the values the file does not:
    for "imagenet", everything outside the backbone (the head). Every mismatch — a leaf the file
    lacks, a shape that differs, a key the model has no place for — is collected into one
    ImportMismatchError. Keys of the ImageNet classifier's own parts are unused by design.
    """
    from flax import traverse_util

    if kind not in KINDS:
        raise ValueError(f"kind is {kind!r}; expected one of {KINDS}")
    source, layout = normalize_keys(state_dict)
    flat = traverse_util.flatten_dict(
        {c: init_variables[c] for c in ("params", "batch_stats") if c in init_variables}
    )
    out, used, missing, problems, seen = {}, {}, [], [], set()
    for path, init in flat.items():
        name = "/".join(path)
        expected = tuple(init.shape)
        if not _from_file(path, kind):
            out[path] = init  # the head: the classifier's is of no use to the pose network
            missing.append(name)
            continue
        key = torch_key(path)
        if key not in source:
            problems.append(
                f"{key}: not in the file (model expects {_torch_shape(expected, path[-1])}"
                f" for {name})"
            )
            continue
        seen.add(key)
        value = to_flax_layout(source[key], path[-1])
        if value.shape != expected:
            problems.append(
                f"{key}: shape {tuple(np.shape(source[key]))} in the file, "
                f"{_torch_shape(expected, path[-1])} in the model ({name})"
            )
            continue
        out[path] = value.astype(init.dtype)
        used[key] = name
    # The classifier's last module also fuses into branches 1.., which the pose network's omits.
    modules = {m for p in flat for m in p[2:3] if re.fullmatch(r"stage\d+_\d+", m)}
    last = _torch_name(max(modules, key=_numbers))
    last_fuse = re.compile(rf"^{re.escape(last)}\.fuse_layers\.[1-9]")
    unused, unexpected = [], []
    for key in sorted(set(source) - seen):
        if key.endswith(".num_batches_tracked"):
            continue
        by_design = kind == "imagenet" and (CLASSIFIER_HEAD.search(key) or last_fuse.search(key))
        (unused if by_design else unexpected).append(key)
    problems += [
        f"{k}: shape {tuple(np.shape(source[k]))} in the file, no place for it in the model"
        for k in unexpected
    ]
    if problems:
        raise ImportMismatchError(_mismatch_message(problems, unexpected, kind), problems)
    report = ImportReport(kind, layout, used, unused, missing)
    return traverse_util.unflatten_dict(out), report


def _numbers(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def _torch_shape(shape: tuple[int, ...], leaf: str) -> tuple[int, ...]:
    """A Flax HWIO kernel shape in PyTorch's OIHW order, for messages that name PyTorch keys."""
    return (
        (shape[3], shape[2], shape[0], shape[1]) if leaf == "kernel" and len(shape) == 4 else shape
    )


def _mismatch_message(problems: list[str], unexpected: list[str], kind: str) -> str:
    lines = problems[:MAX_LISTED]
    if len(problems) > MAX_LISTED:
        lines.append(f"... and {len(problems) - MAX_LISTED} more")
    hint = ""
    if kind == "pose" and any(CLASSIFIER_HEAD.search(k) for k in unexpected):
        hint = "\nThe file looks like an ImageNet classifier: use kind 'imagenet' for its backbone."
    return (
        f"the state dict does not fit the model ({len(problems)} problems; PyTorch layout, "
        f"shapes as (out, in, kh, kw) for convolutions):\n  " + "\n  ".join(lines) + hint
    )


def initial_variables(config: Any, kind: str | None = None) -> dict[str, Any]:
    """The pose model's initial {'params', 'batch_stats'} for `config`, as training draws them.

    With a `kind`, only what `convert` takes from them for that kind has values, the rest being
    jax.ShapeDtypeStructs: nothing for "pose", the head for "imagenet". Compiling the whole
    initialisation of a W32 takes half a minute on a CPU; the head's alone, a second.
    """
    import jax
    import jax.numpy as jnp
    from flax import traverse_util

    from hrnet_jax import models

    model = models.create_model(config.model)
    stride = 4 * 2 ** (config.model.stage4.num_branches - 1)
    x = jnp.zeros((1, stride, stride, 3), jnp.float32)  # parameter shapes do not depend on size
    rng = jax.random.key(config.seed)
    flat = traverse_util.flatten_dict(jax.eval_shape(model.init, rng, x))

    def init(rng):
        variables = traverse_util.flatten_dict(model.init(rng, x))
        return {"/".join(p): v for p, v in variables.items() if not _from_file(p, kind)}

    if kind != "pose":
        values = jax.jit(init)(rng)
        flat.update({p: np.asarray(values["/".join(p)]) for p in flat if "/".join(p) in values})
    return traverse_util.unflatten_dict(flat)


def _from_file(path: tuple[str, ...], kind: str | None) -> bool:
    """Whether `convert` takes the leaf at `path` (collection first) from the file for `kind`."""
    return kind == "pose" or (kind == "imagenet" and path[1] == "backbone")


def import_file(
    src: str | pathlib.Path,
    kind: str,
    config: Any,
    out_dir: str | pathlib.Path,
    *,
    trust_pickle: bool = False,
) -> ImportReport:
    """read_state_dict -> convert -> a checkpoint in OUT/checkpoints, plus OUT/import_report.json."""
    if checkpoint.complete_steps(out_dir):
        raise FileExistsError(f"{out_dir} already holds checkpoints; choose another --out")
    state_dict = read_state_dict(src, trust_pickle=trust_pickle)
    variables, report = convert(state_dict, initial_variables(config, kind), kind)
    state = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    checkpoint.save_variables(out_dir, state, config)
    record = {"src": str(pathlib.Path(src).resolve()), **report.to_dict()}
    (pathlib.Path(out_dir) / "import_report.json").write_text(json.dumps(record, indent=1))
    return report

"""Models: HRNet built from a config's stage specs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from hrnet_jax.errors import ConfigError
from hrnet_jax.models import conv
from hrnet_jax.models.hrnet import HRNetBackbone, PoseHRNet, StageSpec

STAGE_NAMES = ("stage1", "stage2", "stage3", "stage4")


def stage_specs(model_config: ml_collections.ConfigDict) -> tuple[StageSpec, ...]:
    """Reads and checks `model.stage1..stage4`; errors name the offending field."""
    specs = []
    prev_branches = 0
    for name in STAGE_NAMES:
        s = model_config[name]
        where = f"model.{name}"
        if s.block not in ("basic", "bottleneck"):
            raise ConfigError(f"{where}.block is {s.block!r}; expected 'basic' or 'bottleneck'")
        for field in ("num_blocks", "num_channels"):
            if len(s[field]) != s.num_branches:
                raise ConfigError(
                    f"{where}.{field} has {len(s[field])} entries {tuple(s[field])} "
                    f"but {where}.num_branches is {s.num_branches}"
                )
        if s.num_modules < 1 or s.num_branches < max(prev_branches, 1):
            raise ConfigError(
                f"{where}: num_modules must be >= 1 and num_branches >= the previous stage's "
                f"({prev_branches}); got {s.num_modules} and {s.num_branches}"
            )
        specs.append(
            StageSpec(
                s.num_modules, s.num_branches, s.block, tuple(s.num_blocks), tuple(s.num_channels)
            )
        )
        prev_branches = s.num_branches
    if specs[0].num_branches != 1:
        raise ConfigError("model.stage1.num_branches must be 1 (stage 1 is a single branch)")
    return tuple(specs)


def create_model(
    model_config: ml_collections.ConfigDict,
    *,
    axis_name: str | None = None,
    final_multi_scale: bool = False,
) -> PoseHRNet:
    """Builds the pose network described by `config.model`.

    `axis_name` names the mapped device axis over which BatchNorm averages batch statistics (None:
    per-device statistics, as the reference's DataParallel/DDP training does).
    """
    backbone = HRNetBackbone(
        conv_general_dilated=_conv_implementation(model_config.conv_weight_grad),
        stem_channels=model_config.stem_channels,
        stages=stage_specs(model_config),
        final_multi_scale=final_multi_scale,
        bn_momentum=model_config.bn_momentum,
        bn_epsilon=model_config.bn_epsilon,
        axis_name=axis_name,
        dtype=jnp.dtype(model_config.dtype),
        param_dtype=jnp.dtype(model_config.param_dtype),
        remat=model_config.remat,
    )
    return PoseHRNet(
        backbone,
        num_joints=model_config.num_joints,
        final_conv_kernel=model_config.final_conv_kernel,
    )


def _conv_implementation(name: str):
    """`model.conv_weight_grad`: "row_shift" (models/conv.py), "xla", or "auto" (row_shift on CPU,
    where XLA's own weight gradient transposes activations; XLA's on GPU/TPU)."""
    if name == "auto":
        name = "row_shift" if jax.default_backend() == "cpu" else "xla"
    if name == "row_shift":
        return conv.conv_general_dilated
    if name == "xla":
        return None
    raise ConfigError(f"model.conv_weight_grad is {name!r}; expected 'auto', 'row_shift' or 'xla'")


def abstract_variables(
    model: PoseHRNet, input_size: tuple[int, int], sharding: jax.sharding.Sharding | None = None
) -> dict:
    """Shapes and dtypes of the model's `params` and `batch_stats` (placed by `sharding`), without
    allocating them: the target of every restore."""
    x = jax.ShapeDtypeStruct((1, *input_size, 3), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    return dict(
        jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)
    )


def normalize(
    images: jax.Array, mean: tuple[float, ...], std: tuple[float, ...], dtype=jnp.float32
) -> jax.Array:
    """uint8 RGB images → the network's input: (x / 255 - mean) / std (ImageNet statistics)."""
    scale = 1.0 / (255.0 * jnp.asarray(std, jnp.float32))
    offset = jnp.asarray(mean, jnp.float32) / jnp.asarray(std, jnp.float32)
    return (images.astype(jnp.float32) * scale - offset).astype(dtype)


__all__ = [
    "HRNetBackbone",
    "PoseHRNet",
    "StageSpec",
    "abstract_variables",
    "create_model",
    "normalize",
    "stage_specs",
]

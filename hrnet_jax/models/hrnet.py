"""HRNet for top-down pose estimation (Sun et al., CVPR 2019) in flax.linen, NHWC.

The architecture follows the official PyTorch code (leoxiaobin/deep-high-resolution-net.pytorch,
lib/models/pose_hrnet.py) layer for layer. Module names mirror its state-dict keys, with the numeric
path components folded into the name: `stage2.0.fuse_layers.1.0.0.weight` is
`stage2_0/fuse_layers_1_0_0/kernel` here, so importing official weights is a rename and a transpose.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

EXPANSION = {"basic": 1, "bottleneck": 4}

ModuleDef = Callable[..., nn.Module]


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage of HRNet, as the official yaml's EXTRA.STAGEn describes it."""

    num_modules: int
    num_branches: int
    block: str  # "basic" or "bottleneck"
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]

    @property
    def out_channels(self) -> tuple[int, ...]:
        return tuple(c * EXPANSION[self.block] for c in self.num_channels)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual (ResNet's basic block)."""

    planes: int
    conv: ModuleDef
    norm: ModuleDef
    downsample: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.relu(self.norm(name="bn1")(self.conv(self.planes, 3, name="conv1")(x)))
        y = self.norm(name="bn2")(self.conv(self.planes, 3, name="conv2")(y))
        return nn.relu(y + _residual(self, x, self.planes))


class Bottleneck(nn.Module):
    """1x1 → 3x3 → 1x1 (×4 channels) with a residual (ResNet's bottleneck block)."""

    planes: int
    conv: ModuleDef
    norm: ModuleDef
    downsample: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.relu(self.norm(name="bn1")(self.conv(self.planes, 1, name="conv1")(x)))
        y = nn.relu(self.norm(name="bn2")(self.conv(self.planes, 3, name="conv2")(y)))
        y = self.norm(name="bn3")(self.conv(self.planes * 4, 1, name="conv3")(y))
        return nn.relu(y + _residual(self, x, self.planes * 4))


def _residual(block: nn.Module, x: jax.Array, features: int) -> jax.Array:
    if not block.downsample:
        return x
    return block.norm(name="downsample_1")(block.conv(features, 1, name="downsample_0")(x))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}

# `model.remat`: what a residual block keeps for the backward pass; the rest is recomputed there.
REMAT_POLICIES = {
    "save_convs": jax.checkpoint_policies.dots_saveable,  # the convolutions' outputs
    "full": jax.checkpoint_policies.nothing_saveable,  # only the block's input
}


@functools.cache
def block_class(kind: str, remat: str = "none") -> type[nn.Module]:
    """The residual block of `kind`, rematerialised per `remat` (nn.remat keeps the param names)."""
    if remat == "none":
        return BLOCKS[kind]
    return nn.remat(BLOCKS[kind], policy=REMAT_POLICIES[remat])


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
    """Nearest-neighbour upsampling by an integer factor (PyTorch's nn.Upsample(mode='nearest'))."""
    b, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, factor, w, factor, c))
    return x.reshape(b, h * factor, w * factor, c)


def run_branch(
    x, spec: StageSpec, i: int, in_channels: int, conv, norm, prefix: str, remat: str = "none"
) -> jax.Array:
    """Runs the residual blocks of branch i; the first block adapts the channel count if needed."""
    planes = spec.num_channels[i]
    block = block_class(spec.block, remat)
    for b in range(spec.num_blocks[i]):
        downsample = b == 0 and in_channels != spec.out_channels[i]
        x = block(planes, conv, norm, downsample, name=f"{prefix}_{b}")(x)
    return x


class HighResolutionModule(nn.Module):
    """Parallel branches followed by the exchange (fuse) of every branch into every output."""

    spec: StageSpec
    in_channels: tuple[int, ...]
    multi_scale_output: bool
    conv: ModuleDef
    norm: ModuleDef
    remat: str = "none"

    @nn.compact
    def __call__(self, xs: Sequence[jax.Array]) -> list[jax.Array]:
        spec, conv, norm = self.spec, self.conv, self.norm
        xs = [
            run_branch(x, spec, i, self.in_channels[i], conv, norm, f"branches_{i}", self.remat)
            for i, x in enumerate(xs)
        ]
        if spec.num_branches == 1:
            return xs
        channels = spec.out_channels
        outputs = []
        for i in range(spec.num_branches if self.multi_scale_output else 1):
            y = None
            for j, x in enumerate(xs):
                name = f"fuse_layers_{i}_{j}"
                if j > i:  # lower resolution: 1x1 conv, BN, then nearest upsampling.
                    x = norm(name=f"{name}_1")(conv(channels[i], 1, name=f"{name}_0")(x))
                    x = upsample_nearest(x, 2 ** (j - i))
                elif j < i:  # higher resolution: a chain of stride-2 3x3 convs.
                    for k in range(i - j):
                        last = k == i - j - 1
                        x = conv(channels[i] if last else channels[j], 3, 2, name=f"{name}_{k}_0")(
                            x
                        )
                        x = norm(name=f"{name}_{k}_1")(x)
                        x = x if last else nn.relu(x)
                y = x if y is None else y + x
            outputs.append(nn.relu(y))
        return outputs


class HRNetBackbone(nn.Module):
    """Stem, stage 1 (layer1) and the high-resolution stages; returns the branch features.

    With `final_multi_scale=False` (the pose network) the last module fuses only into the
    highest-resolution branch and a one-element list comes back; with True, all branches come back
    (as in the ImageNet classifier and timm's feature extractor).
    """

    stem_channels: int
    stages: tuple[StageSpec, ...]
    final_multi_scale: bool = False
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    conv_general_dilated: Callable | None = None  # None: lax's; see models/conv.py
    remat: str = "none"  # see REMAT_POLICIES

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
        stride = 4 * 2 ** (self.stages[-1].num_branches - 1)
        if x.shape[1] % stride or x.shape[2] % stride:
            raise ValueError(
                f"input height and width must be multiples of {stride} (the lowest branch's stride) "
                f"for the branches to fuse; got {x.shape[1]}x{x.shape[2]}"
            )
        conv = functools.partial(
            _conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            use_bias=False,
            conv_general_dilated=self.conv_general_dilated,
        )
        norm = functools.partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            axis_name=self.axis_name if train else None,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        x = nn.relu(norm(name="bn1")(conv(self.stem_channels, 3, 2, name="conv1")(x)))
        x = nn.relu(norm(name="bn2")(conv(self.stem_channels, 3, 2, name="conv2")(x)))

        stage1, *hr_stages = self.stages
        x = run_branch(x, stage1, 0, self.stem_channels, conv, norm, "layer1", self.remat)
        xs, channels = [x], stage1.out_channels
        for n, spec in enumerate(hr_stages, start=2):
            xs = _transition(xs, channels, spec.out_channels, conv, norm, f"transition{n - 1}")
            channels = spec.out_channels
            for m in range(spec.num_modules):
                last = n == len(self.stages) and m == spec.num_modules - 1
                xs = HighResolutionModule(
                    spec,
                    channels,
                    multi_scale_output=self.final_multi_scale or not last,
                    conv=conv,
                    norm=norm,
                    remat=self.remat,
                    name=f"stage{n}_{m}",
                )(xs)
        return xs


def _transition(xs, prev: Sequence[int], cur: Sequence[int], conv, norm, name: str) -> list:
    """Adapts existing branches' channels and grows new, half-resolution branches from the last one."""
    out = []
    for i, c in enumerate(cur):
        if i < len(prev):
            x = xs[i]
            if c != prev[i]:
                x = nn.relu(norm(name=f"{name}_{i}_1")(conv(c, 3, name=f"{name}_{i}_0")(x)))
        else:
            x = xs[-1]
            steps = i + 1 - len(prev)
            for k in range(steps):
                features = c if k == steps - 1 else prev[-1]
                x = conv(features, 3, 2, name=f"{name}_{i}_{k}_0")(x)
                x = nn.relu(norm(name=f"{name}_{i}_{k}_1")(x))
        out.append(x)
    return out


def _conv(features: int, kernel: int, strides: int = 1, **kwargs) -> nn.Conv:
    """nn.Conv with PyTorch's symmetric padding (k // 2 each side, also at stride 2) and HRNet's init."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(strides, strides),
        padding=kernel // 2,
        kernel_init=nn.initializers.normal(stddev=0.001),
        **kwargs,
    )


class PoseHRNet(nn.Module):
    """HRNet backbone + the final 1x1 convolution to one heatmap per joint (no activation)."""

    backbone: HRNetBackbone
    num_joints: int
    final_conv_kernel: int = 1

    def setup(self):
        bb = self.backbone
        self.final_layer = _conv(
            self.num_joints,
            self.final_conv_kernel,
            use_bias=True,
            dtype=bb.dtype,
            param_dtype=bb.param_dtype,
        )

    def features(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
        """The backbone's branch features, without the head."""
        return self.backbone(x, train)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.final_layer(self.backbone(x, train)[0])

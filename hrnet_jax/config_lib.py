"""The recipe as a ConfigDict, the HRNet presets, and config checking.

Config files in `configs/` start from `recipe()` and change what their variant changes. Anchors cited:
  HRN = the official PyTorch code (leoxiaobin/deep-high-resolution-net.pytorch),
  PD  = PaddleDetection's hrnet_w32_{256x192,384x288}.yml (the reference this library follows),
  MMP = mmpose's td-hm_hrnet-w32_8xb64-210e_coco configs.
"""

from __future__ import annotations

import difflib
import importlib.util
import pathlib

import ml_collections

COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


def hrnet_model(width: int, num_joints: int = 17) -> ml_collections.ConfigDict:
    """HRNet-W{width}: the official stage specs (HRN experiments/coco/hrnet/w32_*.yaml, EXTRA)."""
    w = width
    return ml_collections.ConfigDict(
        dict(
            num_joints=num_joints,
            stem_channels=64,
            stage1=dict(
                num_modules=1,
                num_branches=1,
                block="bottleneck",
                num_blocks=(4,),
                num_channels=(64,),
            ),
            stage2=dict(
                num_modules=1,
                num_branches=2,
                block="basic",
                num_blocks=(4, 4),
                num_channels=(w, 2 * w),
            ),
            stage3=dict(
                num_modules=4,
                num_branches=3,
                block="basic",
                num_blocks=(4, 4, 4),
                num_channels=(w, 2 * w, 4 * w),
            ),
            stage4=dict(
                num_modules=3,
                num_branches=4,
                block="basic",
                num_blocks=(4, 4, 4, 4),
                num_channels=(w, 2 * w, 4 * w, 8 * w),
            ),
            final_conv_kernel=1,  # HRN FINAL_CONV_KERNEL
            bn_momentum=0.9,  # flax convention: PyTorch's BN_MOMENTUM 0.1
            bn_epsilon=1e-5,  # PyTorch default, all HRN BNs
            dtype="float32",  # compute dtype; "bfloat16" for mixed precision
            param_dtype="float32",
        )
    )


def recipe() -> ml_collections.ConfigDict:
    """HRNet-W32 at 256x192 trained as PD trains it: the schema every config must fit."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.input_size = (256, 192)  # (h, w); HRN IMAGE_SIZE is [w, h]
    c.heatmap_size = (64, 48)  # (h, w); output stride 4
    c.model = hrnet_model(32)

    c.codec = ml_collections.ConfigDict()
    c.codec.sigma = 2.0  # PD: 2 at both sizes; HRN and MMP use 3 at 384x288

    c.train = ml_collections.ConfigDict()
    c.train.global_batch_size = 512  # PD: 64 per GPU x 8 GPUs (MMP 8xb64 as well)
    c.train.num_epochs = 210  # HRN/PD/MMP END_EPOCH
    c.train.optimizer = "adam"  # "adam" or "adamw"
    c.train.learning_rate = 5e-4  # PD/MMP base_lr at batch 512 (HRN: 1e-3 at batch 128)
    c.train.b1 = 0.9
    c.train.b2 = 0.999
    c.train.weight_decay = 0.0  # HRN's Adam gets no weight decay; PD's L2 regularizer is 0
    c.train.warmup_steps = 1000  # PD LinearWarmup steps (MMP: 500)
    c.train.warmup_start_factor = 0.001  # PD/MMP start_factor
    c.train.lr_decay_epochs = (170, 200)  # HRN LR_STEP, PD PiecewiseDecay milestones
    c.train.lr_decay_factor = 0.1  # HRN LR_FACTOR, PD gamma
    return c


def hrnet_w(width: int, input_size: tuple[int, int], sigma: float) -> ml_collections.ConfigDict:
    """The recipe for HRNet-W{width} at input_size (h, w) with heatmap Gaussian sigma."""
    c = recipe()
    c.model = hrnet_model(width)
    c.input_size = tuple(input_size)
    c.heatmap_size = (input_size[0] // 4, input_size[1] // 4)
    c.codec.sigma = sigma
    return c


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Fails with the key's dotted name on a key that the recipe does not know (a typo)."""
    _check_keys(config, recipe(), "")
    return config


def _check_keys(config, schema, prefix: str) -> None:
    for key in config:
        name = f"{prefix}{key}"
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema.keys()), n=1)
            hint = f"; did you mean {prefix}{close[0]!r}?" if close else ""
            raise KeyError(f"unknown config key {name!r}{hint}")
        if isinstance(config[key], ml_collections.ConfigDict):
            if not isinstance(schema[key], ml_collections.ConfigDict):
                raise TypeError(f"config key {name!r} is a section, the recipe has a value there")
            _check_keys(config[key], schema[key], f"{name}.")


def load_config(path: str | pathlib.Path, arg: str | None = None) -> ml_collections.ConfigDict:
    """Loads `get_config()` from a config file outside of absl flags (tools, tests, notebooks)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"hrnet_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg is not None else module.get_config()
    return validate(config)

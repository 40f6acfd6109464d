"""The recipe as a ConfigDict, the HRNet presets, and config checking.

Config files in `configs/` start from `recipe()` and change what their variant changes. Anchors cited:
  HRN = the official PyTorch code (leoxiaobin/deep-high-resolution-net.pytorch),
  PD  = PaddleDetection's hrnet_w32_{256x192,384x288}.yml (the reference this library follows),
  MMP = mmpose's td-hm_hrnet-w32_8xb64-210e_coco configs.
"""

from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Sequence

import ml_collections

from hrnet_jax import overrides as overrides_lib
from hrnet_jax.data import keypoints
from hrnet_jax.errors import ConfigError

OUTPUT_STRIDE = 4  # HRNet's heatmaps: the stem's two stride-2 convolutions


def hrnet_model(
    width: int, num_joints: int = keypoints.COCO.num_joints
) -> ml_collections.ConfigDict:
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
            # "auto": the row-shift weight gradient (models/conv.py) on CPU, XLA's own on GPU/TPU;
            # "row_shift" or "xla" force one (BENCHMARKS.md compares them).
            conv_weight_grad="auto",
            param_dtype="float32",
            # Rematerialisation of the residual blocks in the backward pass, for accelerator memory
            # (docs/tpu.md): "none"; "save_convs" keeps each block's convolution outputs and
            # recomputes its BN and ReLUs; "full" keeps only each block's input. Same params.
            remat="none",
        )
    )


def recipe() -> ml_collections.ConfigDict:
    """HRNet-W32 at 256x192 trained as PD trains it: the schema every config must fit."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.input_size = (256, 192)  # (h, w); HRN IMAGE_SIZE is [w, h]
    c.heatmap_size = (64, 48)  # (h, w); output stride 4
    c.model = hrnet_model(32)

    c.data = ml_collections.ConfigDict()
    c.data.root = "data/coco"  # holds annotations/ and images/ (python -m hrnet_jax.data.download)
    c.data.annotation_file = "annotations/person_keypoints_{split}.json"  # relative to root
    c.data.image_dir = "images/{split}"  # relative to root
    c.data.train_split = "train2017"
    c.data.val_split = "val2017"
    c.data.format = "folder"  # or "tfds": the data set python -m hrnet_jax.data.pack builds
    c.data.tfds_data_dir = ""  # TFDS's data_dir of the built data set (with format="tfds")
    c.data.synthetic = ml_collections.ConfigDict()  # the built-in demo set, generated at data.root
    c.data.synthetic.enabled = False
    c.data.synthetic.num_train_images = 1000
    c.data.synthetic.num_val_images = 64
    c.data.synthetic.seed = 0
    c.data.synthetic.image_size = (192, 256)  # (h, w)
    c.data.mean = (0.485, 0.456, 0.406)  # ImageNet RGB mean and std on [0, 1] images (HRN/PD/MMP)
    c.data.std = (0.229, 0.224, 0.225)
    c.data.bbox_padding = 1.25  # HRN/PD/MMP: box -> crop padding
    # The keypoint set (data/keypoints.py): "coco", "crowdpose", "aic", "ochuman",
    # "coco_wholebody", "mpii" or "custom".
    c.data.keypoints = "coco"
    c.data.custom_keypoints = ml_collections.ConfigDict()  # with data.keypoints="custom"
    c.data.custom_keypoints.joint_names = ()  # empty: the annotation file's category names them
    c.data.custom_keypoints.flip_pairs = ()  # ((left, right), ...), 0-based
    c.data.custom_keypoints.skeleton = ()  # 0-based links; empty: the category's skeleton
    c.data.custom_keypoints.sigmas = ()  # OKS sigma per joint
    c.data.custom_keypoints.upper_body_ids = ()  # half-body augmentation's upper joints
    c.data.custom_keypoints.use_area = True  # OKS scale: GT area (False: box area)
    c.data.strict = True  # False: skip (and count) unreadable images and bad annotations
    c.data.reduced_decode = True  # decode JPEGs at 1/2..1/8 size where the crop averages that much
    c.data.target_dtype = "float32"  # or "bfloat16": heatmap targets leave the pipeline in it
    c.data.num_workers = -1  # grain worker processes per JAX process; -1: one per CPU core but one
    c.data.num_threads = 8  # grain reader threads (per worker)
    c.data.prefetch_buffer_size = 32  # elements read ahead per worker
    c.data.worker_buffer_size = 2  # batches each worker process keeps ready

    c.augment = ml_collections.ConfigDict()
    c.augment.scale_factor = 0.5  # PD scale 0.5 (HRN SCALE_FACTOR 0.35): s *= clip(1 + sf N(0,1))
    c.augment.rotation_factor = 40.0  # PD rot 40 (HRN ROT_FACTOR 45): r = clip(rf N(0,1), +-2rf)
    c.augment.rotation_prob = 0.6  # HRN/PD: rotate with probability 0.6
    c.augment.flip = True  # HRN FLIP
    c.augment.flip_prob = 0.5
    c.augment.half_body_prob = 0.3  # HRN PROB_HALF_BODY, PD 0.3
    c.augment.num_joints_half_body = 8  # HRN NUM_JOINTS_HALF_BODY: needs more visible joints
    c.augment.half_body_upper_prob = 0.6915  # HRN picks the upper body if randn() < 0.5: Phi(0.5)
    c.augment.half_body_padding = 1.5  # HRN/MMP half-body box padding

    c.codec = ml_collections.ConfigDict()
    c.codec.sigma = 2.0  # PD: 2 at both sizes; HRN and MMP use 3 at 384x288
    c.codec.unbiased = False  # DARK's unbiased (sub-pixel, full-map) Gaussian targets
    c.codec.decoding = "dark"  # PD: DARK (use_dark); HRN/MMP: "quarter_offset"; UDP: "dark_udp"
    c.codec.blur_kernel_size = 3  # DARK's Gaussian blur: PD 3, MMP 11
    # UDP (Huang et al. 2020; MMP's *_udp configs): the crop maps pixel centres, targets and
    # decoding use the unbiased stride (size - 1) / (heatmap - 1), the flip test needs no shift.
    c.codec.udp = False

    c.eval = ml_collections.ConfigDict()
    c.eval.use_gt_bbox = True  # HRN/PD training-time validation; False: detector boxes (det_file)
    # Person detection results (HRN: detector AP 56.4 on val2017), relative to data.root.
    c.eval.det_file = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"
    c.eval.det_score_threshold = 0.0  # HRN IMAGE_THRE: keep every box
    c.eval.batch_size_per_device = 32  # HRN TEST.BATCH_SIZE_PER_GPU
    c.eval.flip_test = True  # average with the mirrored input's flipped-back heatmaps
    c.eval.shift_heatmap = True  # shift the flipped heatmaps right by one pixel (HRN SHIFT_HEATMAP)
    c.eval.in_vis_thre = 0.2  # joints scoring above it count in the instance's rescoring
    c.eval.oks_nms_threshold = 0.9  # HRN OKS_THRE
    c.eval.soft_nms = False  # HRN SOFT_NMS
    c.eval.soft_nms_max_dets = 20
    # MPII: the official gt_valid.mat (relative to data.root) whose head boxes normalise PCKh.
    c.eval.mpii_headboxes = ""
    c.eval.num_visualize = 4  # images drawn with their predicted skeletons per evaluation

    c.xla = ml_collections.ConfigDict()  # hrnet_jax/runtime.py explains each
    c.xla.compilation_cache_dir = "~/.cache/hrnet_jax/xla"  # "" turns the persistent cache off
    c.xla.matmul_precision = "default"  # or "highest" for exact fp32 on GPUs with TF32
    c.xla.gpu_flags = True  # the latency-hiding scheduler on GPUs

    c.train = ml_collections.ConfigDict()
    c.train.global_batch_size = 512  # PD: 64 per GPU x 8 GPUs (MMP 8xb64 as well)
    c.train.num_epochs = 210  # HRN/PD/MMP END_EPOCH
    c.train.optimizer = "adam"  # "adam" or "adamw"
    c.train.learning_rate = 5e-4  # PD/MMP base_lr at batch 512 (HRN: 1e-3 at batch 128)
    c.train.b1 = 0.9
    c.train.b2 = 0.999
    c.train.adam_eps = 1e-8  # PyTorch/optax default
    c.train.weight_decay = 0.0  # HRN's Adam gets no weight decay; PD's L2 regularizer is 0
    c.train.warmup_steps = 1000  # PD LinearWarmup steps (MMP: 500)
    c.train.warmup_start_factor = 0.001  # PD/MMP start_factor
    c.train.lr_decay_epochs = (170, 200)  # HRN LR_STEP, PD PiecewiseDecay milestones
    c.train.lr_decay_factor = 0.1  # HRN LR_FACTOR, PD gamma
    c.train.grad_clip_norm = 0.0  # global-norm clipping; 0: off (as HRN/PD/MMP)
    c.train.sync_bn = False  # BN statistics over all devices; the reference uses per-device BN
    c.train.log_every_steps = 50
    c.train.checkpoint_every_steps = 1000
    c.train.keep_checkpoints = 3  # the latest N, plus the best by AP when evaluation runs
    c.train.eval_every_epochs = 0  # 0: evaluate only at the end (HRN: every epoch; MMP: every 10)
    c.train.init_from = ""  # a workdir or checkpoint directory whose params start the run
    c.train.init_from_torch = ""  # an ImageNet HRNet .pth/.safetensors for the backbone
    return c


def hrnet_w(width: int, input_size: tuple[int, int], sigma: float) -> ml_collections.ConfigDict:
    """The recipe for HRNet-W{width} at input_size (h, w) with heatmap Gaussian sigma."""
    c = recipe()
    c.model = hrnet_model(width)
    c.input_size = tuple(input_size)
    c.heatmap_size = (input_size[0] // OUTPUT_STRIDE, input_size[1] // OUTPUT_STRIDE)
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
            raise ConfigError(
                f"unknown config key {name!r}{overrides_lib.suggestion(name, recipe())}"
            )
        if isinstance(config[key], ml_collections.ConfigDict):
            if not isinstance(schema[key], ml_collections.ConfigDict):
                raise ConfigError(f"config key {name!r} is a section, the recipe has a value there")
            _check_keys(config[key], schema[key], f"{name}.")


# Value choices, and the spellings people reach for.
CHOICES = {
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.param_dtype": ("float32", "bfloat16"),
    "model.conv_weight_grad": ("auto", "row_shift", "xla"),
    "model.remat": ("none", "save_convs", "full"),
    "data.format": ("folder", "tfds"),
    "data.target_dtype": ("float32", "bfloat16"),
    "train.optimizer": ("adam", "adamw"),
}
_ALIASES = {
    "bf16": "bfloat16",
    "fp32": "float32",
    "f32": "float32",
    "fp16": "float16",
    "f16": "float16",
}
POSITIVE = (
    "train.global_batch_size",
    "train.log_every_steps",
    "train.checkpoint_every_steps",
    "train.keep_checkpoints",
    "eval.batch_size_per_device",
)
NON_NEGATIVE = (
    "train.num_epochs",
    "train.eval_every_epochs",
    "train.warmup_steps",
    "eval.num_visualize",
)


def check(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
    """Everything a config can get wrong by itself, all reported at once (one line per problem,
    naming the keys and the fix); returns the config read-only."""
    validate(config)
    problems = []
    for key, choices in CHOICES.items():
        value = _get(config, key)
        if value not in choices:
            alias = _ALIASES.get(str(value).lower())
            fix = f" (write {alias!r})" if alias in choices else ""
            problems.append(f"{key} is {value!r}; expected one of {', '.join(choices)}{fix}")
    for key in POSITIVE:
        if not _get(config, key) > 0:
            problems.append(f"{key} is {_get(config, key)!r}; it must be > 0")
    for key in NON_NEGATIVE:
        if not _get(config, key) >= 0:
            problems.append(f"{key} is {_get(config, key)!r}; it must be >= 0")
    problems += _geometry_problems(config)
    problems += _joint_problems(config)
    if config.codec.udp and config.eval.flip_test and config.eval.shift_heatmap:
        problems.append(
            "codec.udp is True but eval.shift_heatmap is True: UDP's crop needs no flip-test "
            "shift; set eval.shift_heatmap=False"
        )
    if config.data.format == "tfds" and not config.data.tfds_data_dir:
        problems.append(
            "data.format is 'tfds' but data.tfds_data_dir is empty: name the data set's data_dir"
        )
    from hrnet_jax import models
    from hrnet_jax.data.heatmaps import HeatmapCodec

    for build in (
        lambda: models.stage_specs(config.model),
        lambda: HeatmapCodec.from_config(config),
    ):
        try:
            build()
        except ConfigError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError(
            "\n".join(problems)
            if len(problems) == 1
            else "the config has problems:\n  " + "\n  ".join(problems)
        )
    return ml_collections.FrozenConfigDict(config)


def _geometry_problems(config) -> list[str]:
    sizes = (tuple(config.input_size), tuple(config.heatmap_size))
    if any(len(s) != 2 or not all(isinstance(v, int) and v > 0 for v in s) for s in sizes):
        return [
            f"input_size {sizes[0]} and heatmap_size {sizes[1]} must each be two positive integers (h, w)"
        ]
    (ih, iw), (hh, hw) = sizes
    problems = []
    lowest = OUTPUT_STRIDE * 2 ** (config.model.stage4.num_branches - 1)
    if ih % lowest or iw % lowest:
        problems.append(
            f"input_size {sizes[0]} must be multiples of {lowest} (the lowest branch's stride) "
            "for HRNet's branches to fuse"
        )
    if (ih, iw) != (hh * OUTPUT_STRIDE, hw * OUTPUT_STRIDE):
        problems.append(
            f"input_size {sizes[0]} is not {OUTPUT_STRIDE}x heatmap_size {sizes[1]} (HRNet's output "
            f"stride): set heatmap_size to ({ih // OUTPUT_STRIDE}, {iw // OUTPUT_STRIDE}) or input_size "
            f"to ({hh * OUTPUT_STRIDE}, {hw * OUTPUT_STRIDE})"
        )
    return problems


def _joint_problems(config) -> list[str]:
    try:
        spec = keypoints.from_config(config)
    except ConfigError as e:
        return [str(e)]
    if config.model.num_joints != spec.num_joints:
        return [
            f"model.num_joints is {config.model.num_joints} but data.keypoints {spec.name!r} has "
            f"{spec.num_joints} joints: set model.num_joints={spec.num_joints}"
        ]
    return []


def _get(config, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def from_saved(saved: dict) -> ml_collections.ConfigDict:
    """A config saved as JSON (in a checkpoint) back into the recipe's schema and types."""
    config = recipe()

    def fill(section, values, prefix=""):
        for key, value in values.items():
            if key not in section:
                raise ConfigError(
                    f"saved config has {prefix}{key}, which this version does not know"
                )
            if isinstance(value, dict):
                fill(section[key], value, f"{prefix}{key}.")
            else:
                section[key] = (
                    overrides_lib.tuples(value) if isinstance(section[key], tuple) else value
                )

    fill(config, saved)
    return config


def load_config(
    path: str | pathlib.Path, overrides: Sequence[tuple[str, str | None]] = ()
) -> ml_collections.ConfigDict:
    """`get_config()` of a config file (`FILE:ARG` passes ARG), with command-line style overrides;
    key-checked but still writable (tests and notebooks change it; `check` makes it read-only)."""
    path, _, arg = str(path).partition(":")
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"hrnet_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} has no get_config() function")
    config = module.get_config(arg) if arg else module.get_config()
    validate(config)
    for key, text in overrides:
        overrides_lib.apply(config, key, text)
    return config

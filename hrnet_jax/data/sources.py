"""Where a split's person instances come from: COCO folders, packed ArrayRecord shards, or the
built-in synthetic set (generated on first use)."""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections
from absl import logging

from hrnet_jax.data import coco, packed


def split_paths(config: ml_collections.ConfigDict, split: str) -> tuple[pathlib.Path, pathlib.Path]:
    """The annotation file and image folder of `split` under `config.data.root`."""
    root = pathlib.Path(config.data.root)
    return (
        root / config.data.annotation_file.format(split=split),
        root / config.data.image_dir.format(split=split),
    )


def ensure_synthetic(config: ml_collections.ConfigDict) -> None:
    """Generates the synthetic data set at `data.root` if the config asks for it and it is missing."""
    spec = config.data.synthetic
    if not spec.enabled:
        return
    from hrnet_jax.data import synthetic  # only the demo needs it

    if not synthetic.exists(config.data.root):
        logging.info("generating the synthetic data set in %s", config.data.root)
        synthetic.generate(
            config.data.root,
            num_train_images=spec.num_train_images,
            num_val_images=spec.num_val_images,
            seed=spec.seed,
            image_size=tuple(spec.image_size),
        )


def folder_instances(
    config: ml_collections.ConfigDict, split: str, *, train: bool
) -> coco.Instances:
    """Instances of a COCO-layout folder: GT boxes for training, GT or detector boxes for eval."""
    annotations, images = split_paths(config, split)
    if not annotations.is_file():
        from hrnet_jax.data import download

        raise FileNotFoundError(download.missing_coco_message(config.data.root, split))
    aspect_ratio = config.input_size[1] / config.input_size[0]
    padding = config.data.bbox_padding
    if train or config.eval.use_gt_bbox:
        instances, report = coco.gt_instances(
            annotations,
            images,
            aspect_ratio=aspect_ratio,
            padding=padding,
            strict=config.data.strict,
        )
    else:
        det_file = pathlib.Path(config.data.root) / config.eval.det_file
        instances, report = coco.detection_instances(
            det_file,
            annotations,
            images,
            aspect_ratio=aspect_ratio,
            padding=padding,
            score_threshold=config.eval.det_score_threshold,
        )
    coco.log_report(f"{split} ({annotations})", report)
    return instances


def load_instances(config: ml_collections.ConfigDict, split: str, *, train: bool) -> Any:
    """The random-access source of `split` that the config names (`data.format`)."""
    if config.data.format == "folder":
        return folder_instances(config, split, train=train)
    if config.data.format == "array_record":
        paths = sorted(pathlib.Path(config.data.packed_dir).glob(f"{split}.array_record-*"))
        if not paths:
            raise FileNotFoundError(
                f"no packed shards {split}.array_record-* in data.packed_dir={config.data.packed_dir!r}"
                f" (write them with python -m hrnet_jax.data.pack)"
            )
        return packed.PackedInstances([str(p) for p in paths])
    raise ValueError(f"data.format is {config.data.format!r}; expected 'folder' or 'array_record'")

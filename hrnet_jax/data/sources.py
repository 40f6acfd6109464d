"""Where a split's person instances come from: COCO folders, the TFDS data set built from them, or the
built-in synthetic set (generated on first use). Each loader checks what it can before training
starts: files present, the joint count, a generated set that matches its config."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import ml_collections
import numpy as np
from absl import logging
from pycocotools.coco import COCO

from hrnet_jax.data import coco, keypoints, mpii
from hrnet_jax.errors import ConfigError


def split_paths(config: ml_collections.ConfigDict, split: str) -> tuple[pathlib.Path, pathlib.Path]:
    """The annotation file and image folder of `split` under `config.data.root`."""
    root = pathlib.Path(config.data.root)
    return (
        root / config.data.annotation_file.format(split=split),
        root / config.data.image_dir.format(split=split),
    )


def ensure_synthetic(config: ml_collections.ConfigDict) -> None:
    """Generates the synthetic set at `data.root` if the config asks for it and it is missing, and
    refuses an existing one generated with other `data.synthetic` settings."""
    spec = config.data.synthetic
    if not spec.enabled:
        return
    from hrnet_jax.data import synthetic  # only the demo needs it

    wanted = {
        "num_train_images": spec.num_train_images,
        "num_val_images": spec.num_val_images,
        "seed": spec.seed,
        "image_size": tuple(spec.image_size),
    }
    if not synthetic.exists(config.data.root):
        logging.info("generating the synthetic data set in %s", config.data.root)
        synthetic.generate(config.data.root, **wanted)
        return
    found = synthetic.settings(config.data.root)
    differ = [
        f"data.synthetic.{k} is {v} but the set has {found.get(k)}"
        for k, v in wanted.items()
        if found.get(k) != v
    ]
    if differ:
        raise ConfigError(
            f"{config.data.root} holds a synthetic set generated with other settings: "
            f"{'; '.join(differ)}. Delete {config.data.root} to generate it anew, or set data.root "
            "to another folder"
        )


def load_annotations(config: ml_collections.ConfigDict, split: str) -> COCO:
    """The split's COCO annotations, parsed; a missing file names the download command."""
    annotations, _ = split_paths(config, split)
    if not annotations.is_file():
        from hrnet_jax.data import fetch

        raise FileNotFoundError(fetch.missing_coco_message(config.data.root, split))
    return coco.load_coco(annotations)


def folder_instances(
    config: ml_collections.ConfigDict, split: str, *, train: bool, gt: COCO | None = None
) -> tuple[coco.Instances, coco.LoadReport]:
    """Instances of a COCO-layout folder: GT boxes for training, GT or detector boxes for eval."""
    annotations, images = split_paths(config, split)
    gt = gt if gt is not None else load_annotations(config, split)
    aspect_ratio = config.input_size[1] / config.input_size[0]
    padding = config.data.bbox_padding
    spec = keypoints.from_config(config)
    if train or config.eval.use_gt_bbox:
        instances, report = coco.gt_instances(
            gt,
            images,
            aspect_ratio=aspect_ratio,
            padding=padding,
            strict=config.data.strict,
            name=annotations,
            fields=spec.fields,
        )
    else:
        det_file = pathlib.Path(config.data.root) / config.eval.det_file
        if not det_file.is_file():
            raise FileNotFoundError(
                f"eval.use_gt_bbox is False but the person detection file {det_file} (eval.det_file, "
                f"relative to data.root) does not exist: download it (python -m hrnet_jax.data.download "
                "--det_url=...) or set eval.use_gt_bbox=true"
            )
        instances, report = coco.detection_instances(
            det_file,
            gt,
            images,
            aspect_ratio=aspect_ratio,
            padding=padding,
            score_threshold=config.eval.det_score_threshold,
            name=annotations,
            num_joints=spec.num_joints,
        )
    coco.log_report(f"{split} ({annotations})", report)
    if config.data.strict:
        _check_images_exist(instances.image_file, split, images)
    return instances, report


def _check_images_exist(files: np.ndarray, split: str, image_dir: pathlib.Path) -> None:
    if not image_dir.is_dir():
        raise FileNotFoundError(
            f"image folder {image_dir} of split {split} does not exist (data.image_dir)"
        )
    missing = [f for f in np.unique(files) if not os.path.isfile(f)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images of split {split} are missing, e.g. {missing[0]} (or set "
            "data.strict=false to skip their persons)"
        )


def load_instances(
    config: ml_collections.ConfigDict, split: str, *, train: bool, gt: COCO | None = None
) -> tuple[Any, coco.LoadReport]:
    """The random-access source of `split` that the config names (`data.format`), with what the
    loader left out; the joint count is checked against `model.num_joints`."""
    if config.data.format == "folder" and keypoints.from_config(config).metric == "pckh":
        where, images = split_paths(config, split)  # MPII's json layout
        source, report = mpii.load_instances(where, images), coco.LoadReport()
        report.kept = len(source)
    elif config.data.format == "folder":
        source, report = folder_instances(config, split, train=train, gt=gt)
        where = split_paths(config, split)[0]
    else:
        from hrnet_jax.data import tfds_builder  # imports tensorflow_datasets: only when used

        source, report = tfds_builder.data_source(config, split), coco.LoadReport()
        report.kept, where = len(source), pathlib.Path(config.data.tfds_data_dir)
    if len(source):
        joints = len(source[0]["joints_vis"])
        if joints != config.model.num_joints:
            raise ConfigError(
                f"model.num_joints is {config.model.num_joints} but the {split} data ({where}) has "
                f"{joints} joints per person: set model.num_joints={joints}"
            )
    return source, report

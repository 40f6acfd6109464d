"""A keypoint set's person instances as a TensorFlow Datasets builder, in ArrayRecord files that
grain reads through `tfds.data_source` (no TensorFlow needed to build or to read).

    python -m hrnet_jax.data.pack --config=configs/w32_384x288.py --data_dir=D

builds `coco_person_keypoints/<data.keypoints>/<version>` in D from the config's COCO-layout folder
(`data.root`, TFDS's manual-dir pattern): one example per person instance of the train split (GT
boxes) and of the val split (GT or detector boxes, as the evaluator loads it), in the folder
source's order, each with its image's encoded bytes. Every image is decoded once while building: a
corrupt one is an error naming the file, or with `data.strict=false` its persons are skipped and
counted in the data set's metadata (`skipped_images`, `skipped_instances`). Train with
`--config.data.format=tfds --config.data.tfds_data_dir=D`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from hrnet_jax.data import keypoints

NAME = "coco_person_keypoints"
_STRING = np.object_  # TFDS's string dtype without TensorFlow


class CocoPersonKeypoints(tfds.core.GeneratorBasedBuilder):
    """Person instances (crop box, joints, visibility) with their images' bytes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Person instances of a COCO-format keypoint set, in ArrayRecord."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "A COCO-layout folder (config data.root: annotations/ and images/), e.g. from "
        "python -m hrnet_jax.data.download."
    )
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=name, description=f"data.keypoints={name}")
        for name in (*keypoints.PRESETS, "custom")
    ]

    def __init__(
        self,
        *,
        hrnet_config: ml_collections.ConfigDict | None = None,
        roles: Sequence[str] = ("train", "val"),
        **kwargs,
    ):
        self._hrnet_config = hrnet_config  # only needed to build
        self._roles = tuple(roles)  # which of the config's splits to build
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        f = tfds.features
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=f.FeaturesDict(
                {
                    "image_bytes": f.Tensor(shape=(), dtype=_STRING),
                    "image_file": f.Tensor(shape=(), dtype=_STRING),
                    "image_id": f.Tensor(shape=(), dtype=np.int64),
                    "ann_id": f.Tensor(shape=(), dtype=np.int64),
                    "image_size": f.Tensor(shape=(2,), dtype=np.int32),
                    "center": f.Tensor(shape=(2,), dtype=np.float32),
                    "scale": f.Tensor(shape=(2,), dtype=np.float32),
                    "joints": f.Tensor(shape=(None, 2), dtype=np.float32),
                    "joints_vis": f.Tensor(shape=(None,), dtype=np.float32),
                    "score": f.Tensor(shape=(), dtype=np.float32),
                    "area": f.Tensor(shape=(), dtype=np.float32),
                }
            ),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,  # the folder source's order, so batches match it
        )

    def _split_generators(self, dl_manager) -> dict:
        from hrnet_jax.data import sources

        if self._hrnet_config is None:
            raise ValueError("building needs hrnet_config (python -m hrnet_jax.data.pack)")
        config = ml_collections.ConfigDict(self._hrnet_config)
        config.data.format = "folder"  # built from the folder, whatever the config reads later
        self.info.metadata.update(skipped_images=0, skipped_instances=0)
        splits = {}
        if "train" in self._roles:
            splits[config.data.train_split] = True
        if "val" in self._roles:
            splits.setdefault(config.data.val_split, False)
        generators = {}
        for split, train in splits.items():
            instances, _ = sources.load_instances(config, split, train=train)
            generators[split] = self._generate_examples(instances, config.data.strict)
        return generators

    def _generate_examples(self, instances, strict: bool):
        images: dict[str, bytes | None] = {}
        for i in range(len(instances)):
            record = instances[i]
            path = str(record["image_file"])
            if path not in images:
                images[path] = _checked_bytes(record, strict)
                self.info.metadata["skipped_images"] += images[path] is None
            if images[path] is None:
                self.info.metadata["skipped_instances"] += 1
                continue
            yield (
                i,
                {
                    "image_bytes": images[path],
                    **{k: np.asarray(v) for k, v in record.items() if k != "image_file"},
                    "image_file": path,
                },
            )


def _checked_bytes(record: dict[str, Any], strict: bool) -> bytes | None:
    """The record's image bytes if they decode (to the annotated size) as training reads them; a
    corrupt image raises (strict) or gives None."""
    from hrnet_jax.data.samples import ImageError, read_image

    data = pathlib.Path(str(record["image_file"])).read_bytes()
    try:
        read_image({**record, "image_bytes": data})
    except ImageError:
        if strict:
            raise
        return None
    return data


def builder(
    config: ml_collections.ConfigDict,
    data_dir: str | pathlib.Path,
    roles: Sequence[str] = ("train", "val"),
) -> CocoPersonKeypoints:
    """The builder of `config`'s keypoint set in `data_dir`; building makes the splits of `roles`
    (`data.train_split` for "train", `data.val_split` for "val")."""
    return CocoPersonKeypoints(
        data_dir=str(data_dir),
        config=config.data.keypoints,
        file_format="array_record",
        hrnet_config=config,
        roles=roles,
    )


class TfdsInstances:
    """A split of a built data set as the record dicts the sampler reads (a grain source).

    Records are read as raw bytes and parsed here, straight from the `tf.train.Example` into the
    folder source's numpy types: TFDS's generic numpy parse and feature decoding cost 150 us a
    record, several times the ArrayRecord read itself (BENCHMARKS.md)."""

    def __init__(self, source: Any, features: tfds.features.FeaturesDict):
        self._source = source
        self._plan = _parse_plan(features)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        feature = tf_example_pb2.Example.FromString(self._source[i]).features.feature
        record = {}
        for name, kind, dtype, shape in self._plan:
            values = getattr(feature[name], kind).value
            if dtype is None:
                record[name] = values[0]
            elif shape is None:
                record[name] = dtype.type(values[0])
            else:
                record[name] = np.array(values, dtype).reshape(shape)
        record["image_file"] = record["image_file"].decode()
        return record

    def __repr__(self) -> str:
        return f"TfdsInstances(n={len(self)})"


def _parse_plan(features: tfds.features.FeaturesDict) -> tuple:
    """(name, Example list field, numpy dtype or None for bytes, shape or None for a scalar) for
    each feature, from the data set's own feature spec."""
    plan = []
    for name, info in features.get_tensor_info().items():
        dtype = np.dtype(info.np_dtype)
        if dtype == _STRING:
            plan.append((name, "bytes_list", None, None))
        else:
            kind = "float_list" if dtype.kind == "f" else "int64_list"
            plan.append((name, kind, dtype, (-1, *info.shape[1:]) if info.shape else None))
    return tuple(plan)


def data_source(config: ml_collections.ConfigDict, split: str) -> TfdsInstances:
    """The built split, or a clear error naming the pack command and the data_dir."""
    data_dir = pathlib.Path(config.data.tfds_data_dir)
    found = builder(config, data_dir)
    if not found.is_prepared() or split not in found.info.splits:
        raise FileNotFoundError(
            f"no TFDS data set {NAME}/{config.data.keypoints} with split {split!r} in "
            f"data.tfds_data_dir={str(data_dir)!r}: build it with python -m hrnet_jax.data.pack "
            f"--config=... --data_dir={data_dir}"
        )
    raw = found.as_data_source(
        split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
    )
    return TfdsInstances(raw, found.info.features)

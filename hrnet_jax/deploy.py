"""Top-down pose estimation from an exported model (hrnet_jax.export): crop → network → decode.

    estimator = deploy.load("model_1000.onnx")       # or a .stablehlo file
    preds = estimator.predict_image(image_rgb, boxes_xywh)
    preds["keypoints"]                                # (N, K, 3): image x, y, score

The crop and the decoding are the evaluator's own (`TopDownSampler`, `HeatmapCodec`), with the
settings the file carries, so an exported model predicts what `hrnet_jax.evaluate` measured. The ONNX
route needs only numpy, OpenCV and onnxruntime (the `[onnx]` extra): this module imports neither
JAX, flax nor orbax; a stablehlo file is run by JAX (`jax.export.deserialize`), imported then.
"""

from __future__ import annotations

import json
import pathlib
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import ml_collections
import numpy as np

from hrnet_jax import config_lib, nms
from hrnet_jax.data import coco, keypoints
from hrnet_jax.data.samples import TopDownSampler, warp_rgb
from hrnet_jax.errors import UserError

# uint8 RGB crops (B, H, W, 3) → float32 heatmaps (B, h, w, K)
HeatmapFunction = Callable[[np.ndarray], np.ndarray]
BACKENDS = ("onnx", "stablehlo")
METADATA_KEY = "hrnet_jax"  # the ONNX metadata entry hrnet_jax.export writes


class ExportError(UserError, ValueError):
    """A file that is not a readable exported model; the message names it."""


def backend_of(path: str | pathlib.Path) -> str:
    """ "stablehlo" for hrnet_jax.export's zip archives, else "onnx"."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {path} does not exist")
    return "stablehlo" if zipfile.is_zipfile(path) else "onnx"


def load_onnx(path: str | pathlib.Path, providers: Sequence[str] | None = None):
    """An ONNX file → (heatmap function on onnxruntime, its metadata)."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(
            str(path), providers=list(providers or ["CPUExecutionProvider"])
        )
    except Exception as e:  # onnxruntime raises its own untyped errors for a bad file
        raise ExportError(f"{path} is not a readable ONNX model: {e}") from e
    meta = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if meta is None:
        raise ExportError(
            f"{path} is an ONNX model without hrnet_jax's metadata (not exported here)"
        )
    name = session.get_inputs()[0].name

    def heatmaps(crops: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(crops, np.uint8)})[0]

    return heatmaps, json.loads(meta)


def load_stablehlo(path: str | pathlib.Path):
    """A stablehlo archive → (heatmap function on JAX's default device, its metadata)."""
    import jax

    try:
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read("meta.json"))
            exported = jax.export.deserialize(bytearray(archive.read("exported.bin")))
    except Exception as e:  # a damaged archive or serialisation fails in many ways
        raise ExportError(f"{path} is not a readable stablehlo export: {e!r}") from e

    def heatmaps(crops: np.ndarray) -> np.ndarray:
        return np.asarray(exported.call(np.asarray(crops, np.uint8)))

    return heatmaps, meta


def load(
    path: str | pathlib.Path,
    backend: str | None = None,
    *,
    batch_size: int = 32,
    providers: Sequence[str] | None = None,
) -> PoseEstimator:
    """The estimator of an exported file; `backend` (default: the file's) must match it.
    `providers` are onnxruntime's execution providers (default: CPU)."""
    found = backend_of(path)
    if backend is not None and backend != found:
        raise ExportError(f"{path} is a {found} export, not {backend}")
    function, meta = load_onnx(path, providers) if found == "onnx" else load_stablehlo(path)
    try:  # checked when exported (check() would import the network's modules, and JAX)
        config = ml_collections.FrozenConfigDict(config_lib.from_saved(meta["config"]))
    except (KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"{path}: its hrnet_jax metadata has no usable config ({e!r})") from e
    return PoseEstimator(config, function, batch_size=batch_size, step=meta.get("step"))


class PoseEstimator:
    """Person boxes → keypoints with any heatmap function (an exported file, or the JAX predictor).

    `batch_size` crops go to the function at once; with `pad_batches` every call gets exactly that
    many (zero crops fill the last), as a compiled JAX function of one shape wants.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        heatmaps: HeatmapFunction,
        *,
        batch_size: int = 32,
        pad_batches: bool = False,
        step: int | None = None,
    ):
        self.config = config
        self.spec = keypoints.from_config(config)
        self.sampler = TopDownSampler.from_config(config, train=False)
        self.codec = self.sampler.codec
        self.heatmaps = heatmaps
        self.batch_size = batch_size
        self.pad_batches = pad_batches
        self.step = step

    def _run(self, crops: np.ndarray) -> np.ndarray:
        n = len(crops)
        if self.pad_batches and n < self.batch_size:
            crops = np.concatenate(
                [crops, np.zeros((self.batch_size - n, *crops.shape[1:]), crops.dtype)]
            )
        return np.asarray(self.heatmaps(crops), np.float32)[:n]

    def predict(self, instances) -> dict[str, np.ndarray]:
        """Keypoints of person-instance records (image files, as the evaluator reads them), like
        `Predictor.predict`: `keypoints`, `index`, `center`, `scale`, `score`, `image_id`."""
        rows = []
        for start in range(0, len(instances), self.batch_size):
            samples = [
                self.sampler(instances[i])
                for i in range(start, min(start + self.batch_size, len(instances)))
            ]
            valid = np.array([s["valid"] for s in samples])
            heatmaps = self._run(np.stack([s["image"] for s in samples]))
            center = np.stack([s["center"] for s in samples])
            scale = np.stack([s["scale"] for s in samples])
            rows.append(
                {
                    "keypoints": self.codec.decode_to_image(heatmaps, center, scale),
                    "index": np.arange(start, start + len(samples)),
                    "center": center,
                    "scale": scale,
                    "score": np.array([s["score"] for s in samples], np.float32),
                    "image_id": np.array([s["image_id"] for s in samples], np.int64),
                    "valid": valid,
                }
            )
        return _concatenate(rows, self.spec.num_joints)

    def predict_image(
        self,
        image_rgb: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray | None = None,
        image_id: int = 0,
    ) -> dict[str, np.ndarray]:
        """Keypoints of (N, 4) x, y, w, h person boxes in a decoded RGB image (a video frame)."""
        aspect = self.config.input_size[1] / self.config.input_size[0]
        center, scale = coco.box_to_center_scale(boxes, aspect, self.config.data.bbox_padding)
        rgbx = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2RGBA)
        rows = []
        for start in range(0, len(center), self.batch_size):
            part = slice(start, start + self.batch_size)
            crops = np.stack(
                [self._crop(rgbx, c, s) for c, s in zip(center[part], scale[part], strict=True)]
            )
            rows.append(
                {
                    "keypoints": self.codec.decode_to_image(
                        self._run(crops), center[part], scale[part]
                    )
                }
            )
        n = len(center)
        return {
            "keypoints": _concatenate(rows, self.spec.num_joints)["keypoints"],
            "index": np.arange(n),
            "center": center,
            "scale": scale,
            "score": np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32),
            "image_id": np.full(n, image_id, np.int64),
        }

    def _crop(self, image_rgbx: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """The evaluator's crop of a decoded frame (at full size: a frame has no JPEG to scale)."""
        matrix = self.sampler.crop_matrix(center, scale, 0.0)
        return warp_rgb(image_rgbx, matrix, self.codec.input_size)

    def results(self, preds: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """COCO keypoint results of predictions: the evaluator's rescoring and OKS NMS."""
        if len(preds["keypoints"]) == 0:
            return []
        return nms.rescore_and_nms(preds, self.config.eval, self.spec.sigmas)


def _concatenate(rows: list[dict], num_joints: int) -> dict[str, np.ndarray]:
    """Row dicts → one dict, keeping only `valid` rows where rows carry that flag."""
    if not rows:
        return {"keypoints": np.zeros((0, num_joints, 3), np.float32)}
    out = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    valid = out.pop("valid", None)
    return out if valid is None else {k: v[valid] for k, v in out.items()}

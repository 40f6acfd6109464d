"""Object keypoint similarity (OKS) and the per-image OKS NMS of the reference's evaluation."""

from __future__ import annotations

import numpy as np

from hrnet_jax.data.heatmaps import PIXEL_STD


def oks_matrix(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Pairwise OKS of N instances' (N, K, 2+) keypoints over all K joints (the reference's oks_iou).

    Entry (i, j) measures instance j's joints against instance i's as ground truth, with the two
    boxes' mean area as the scale.
    """
    xy = np.asarray(keypoints, np.float64)[..., :2]
    areas = np.asarray(areas, np.float64)
    variances = (2 * np.asarray(sigmas)) ** 2
    sq_dist = np.sum((xy[:, None] - xy[None, :]) ** 2, axis=-1)  # (N, N, K)
    scale = (areas[:, None] + areas[None, :]) / 2 + np.spacing(1)
    e = sq_dist / variances / scale[..., None] / 2
    return np.mean(np.exp(-e), axis=-1)


def oks_nms(
    keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float, sigmas
) -> np.ndarray:
    """Greedy NMS: in descending score order, keep an instance and drop those with OKS > threshold.

    Returns the kept indices, best first.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    if order.size == 0:
        return order
    oks = oks_matrix(keypoints, areas, sigmas)
    keep = []
    while order.size:
        i, order = order[0], order[1:]
        keep.append(i)
        order = order[oks[i, order] <= threshold]
    return np.array(keep, np.int64)


def soft_oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    threshold: float,
    sigmas,
    max_dets: int = 20,
) -> np.ndarray:
    """The reference's soft OKS NMS: instead of dropping overlaps, decay their ranking scores by
    exp(-oks^2 / threshold); keeps at most `max_dets` instances, best first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    ranking = np.asarray(scores, np.float64)[order]
    oks = oks_matrix(keypoints, areas, sigmas)
    keep = []
    while order.size and len(keep) < max_dets:
        i, order, ranking = order[0], order[1:], ranking[1:]
        keep.append(i)
        ranking = ranking * np.exp(-(oks[i, order] ** 2) / threshold)
        resort = np.argsort(-ranking, kind="stable")
        order, ranking = order[resort], ranking[resort]
    return np.array(keep, np.int64)


def rescore_and_nms(preds: dict[str, np.ndarray], eval_config, sigmas) -> list:
    """Predictions (keypoints, score, scale, center, image_id per person) → COCO results: box score
    x mean joint score over joints above `in_vis_thre`, then OKS NMS per image (the reference's
    COCODataset.evaluate). `eval_config` is a config's `eval` section."""
    kpt_scores = preds["keypoints"][..., 2]
    confident = kpt_scores > eval_config.in_vis_thre
    mean_conf = np.sum(kpt_scores * confident, 1) / np.maximum(confident.sum(1), 1)
    scores = preds["score"] * mean_conf
    areas = np.prod(preds["scale"] * PIXEL_STD, axis=1)
    results = []
    for image_id in np.unique(preds["image_id"]):
        idx = np.flatnonzero(preds["image_id"] == image_id)
        args = (
            preds["keypoints"][idx],
            scores[idx],
            areas[idx],
            eval_config.oks_nms_threshold,
            sigmas,
        )
        if eval_config.soft_nms:
            keep = soft_oks_nms(*args, max_dets=eval_config.soft_nms_max_dets)
        else:
            keep = oks_nms(*args)
        for i in idx[keep] if len(keep) else idx:
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": 1,
                    "keypoints": [round(float(v), 3) for v in preds["keypoints"][i].ravel()],
                    "score": float(scores[i]),
                    "center": preds["center"][i].tolist(),
                    "scale": preds["scale"][i].tolist(),
                }
            )
    return results

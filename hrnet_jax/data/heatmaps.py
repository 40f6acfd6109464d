"""The heatmap codec: joints → Gaussian target heatmaps, and heatmaps → joints.

One object holds both directions so that sigma, the stride and the coordinate convention cannot
disagree between training targets and decoded predictions. Heatmap pixel (x, y) stands for input
pixel (x * stride_x, y * stride_y), as in the reference (no half-pixel offset).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class HeatmapCodec:
    """MSRA Gaussian heatmaps (the reference's generate_target), or DARK's unbiased ones.

    input_size and heatmap_size are (h, w). With `unbiased=False` the Gaussian is centred on the
    joint's rounded heatmap pixel and drawn in a (6 sigma + 1)^2 window; with `unbiased=True` it is
    centred on the exact sub-pixel position and drawn over the whole map (DARK, Zhang et al. 2020).
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float
    unbiased: bool = False

    @property
    def stride(self) -> np.ndarray:
        """Input pixels per heatmap pixel, (x, y)."""
        return np.array(
            [self.input_size[1] / self.heatmap_size[1], self.input_size[0] / self.heatmap_size[0]]
        )

    def encode(self, joints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joints (K, 2) in input pixels, visibility (K,) → heatmaps (H, W, K), target weights (K,).

        A joint whose 3-sigma window lies entirely off the map gets weight 0 and an empty heatmap;
        one partly off the map keeps weight 1 (as the reference does).
        """
        h, w = self.heatmap_size
        radius = self.sigma * 3
        mu = np.asarray(joints, np.float64) / self.stride
        if not self.unbiased:
            mu = np.trunc(mu + 0.5)  # the reference's int(x / stride + 0.5)
        upper_left = np.trunc(mu - radius)
        bottom_right = np.trunc(mu + radius + 1)
        on_map = np.all((upper_left < [w, h]) & (bottom_right >= 0), axis=-1)
        weight = ((np.asarray(visible) > 0) & on_map).astype(np.float32)

        def gaussian_1d(length: int, axis: int) -> np.ndarray:  # (length, K)
            coord = np.arange(length, dtype=np.float32)[:, None]
            if self.unbiased:
                center = mu[None, :, axis]
            else:  # the window [ul, br) with the reference's offset: g[x - ul], g centred at size // 2
                center = upper_left[None, :, axis] + (2 * radius + 1) // 2
            g = np.exp(-((coord - center.astype(np.float32)) ** 2) / np.float32(2 * self.sigma**2))
            if not self.unbiased:
                g *= (coord >= upper_left[None, :, axis]) & (coord < bottom_right[None, :, axis])
            return g

        gx = gaussian_1d(w, 0) * weight
        gy = gaussian_1d(h, 1)
        return gy[:, None, :] * gx[None, :, :], weight

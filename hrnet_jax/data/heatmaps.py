"""The heatmap codec: joints → Gaussian target heatmaps, and heatmaps → joints.

One object holds both directions, and the way back to image pixels, so that sigma, the stride and
the coordinate convention cannot disagree between training targets and decoded predictions.
Heatmap pixel (x, y) stands for input pixel (x * stride_x, y * stride_y), as in the reference (no
half-pixel offset). The stride is input / heatmap size, or UDP's (input - 1) / (heatmap - 1)
(Huang et al. 2020), which puts the outer pixel centres of both grids on each other.
"""

from __future__ import annotations

import dataclasses

import cv2
import ml_collections
import numpy as np

from hrnet_jax.errors import ConfigError

PIXEL_STD = 200.0  # the reference's scale unit: a crop's box is scale * 200 pixels
DECODINGS = ("quarter_offset", "dark", "dark_udp")


@dataclasses.dataclass(frozen=True)
class HeatmapCodec:
    """MSRA Gaussian heatmaps (the reference's generate_target), or DARK's or UDP's unbiased ones.

    input_size and heatmap_size are (h, w). With `unbiased=False` the Gaussian is drawn in a
    (6 sigma + 1)^2 window about the joint's rounded heatmap pixel, centred on that pixel or, with
    `udp`, on the exact sub-pixel position (mmpose's UDPHeatmap 'gaussian'); with `unbiased=True` it
    is centred on the exact position and drawn over the whole map (DARK, Zhang et al. 2020). `udp`
    also sets the stride and the way back to the image to UDP's (the crop must be
    `transforms.affine_matrix(..., udp=True)`). `decoding` is `quarter_offset` (the reference's
    get_final_preds), `dark`, or `dark_udp` (mmpose's refine_keypoints_dark_udp); both DARKs blur
    with a `blur_kernel_size` Gaussian first. Invalid settings fail at construction, naming the
    config key.
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float
    unbiased: bool = False
    decoding: str = "quarter_offset"
    blur_kernel_size: int = 11
    udp: bool = False

    def __post_init__(self):
        problems = []
        if self.decoding not in DECODINGS:
            problems.append(
                f"codec.decoding is {self.decoding!r}; expected one of {', '.join(DECODINGS)}"
            )
        if self.blur_kernel_size < 1 or self.blur_kernel_size % 2 == 0:
            problems.append(
                f"codec.blur_kernel_size is {self.blur_kernel_size}; it must be odd and >= 1"
            )
        if not self.sigma > 0:
            problems.append(f"codec.sigma is {self.sigma}; it must be > 0")
        if problems:
            raise ConfigError("; ".join(problems))

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> HeatmapCodec:
        """The codec of `config.codec` at the config's input and heatmap sizes."""
        return cls(
            input_size=tuple(config.input_size),
            heatmap_size=tuple(config.heatmap_size),
            sigma=config.codec.sigma,
            unbiased=config.codec.unbiased,
            decoding=config.codec.decoding,
            blur_kernel_size=config.codec.blur_kernel_size,
            udp=config.codec.udp,
        )

    @property
    def stride(self) -> np.ndarray:
        """Input pixels per heatmap pixel (x, y); UDP's is (size - 1) / (heatmap size - 1)."""
        gap = 1 if self.udp else 0
        (ih, iw), (hh, hw) = self.input_size, self.heatmap_size
        return np.array([(iw - gap) / (hw - gap), (ih - gap) / (hh - gap)])

    def encode(self, joints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joints (K, 2) in input pixels, visibility (K,) → heatmaps (H, W, K), target weights (K,).

        A joint whose 3-sigma window lies entirely off the map gets weight 0 and an empty heatmap;
        one partly off the map keeps weight 1 (as the reference does).
        """
        h, w = self.heatmap_size
        radius = self.sigma * 3
        exact = np.asarray(joints, np.float64) / self.stride
        # The window's pixel: the reference's int(x / stride + 0.5), or the exact one (full map).
        mu = exact if self.unbiased else np.trunc(exact + 0.5)
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
                if self.udp:  # moved by the joint's offset from its rounded pixel
                    center = center + (exact - mu)[None, :, axis]
            g = np.exp(-((coord - center.astype(np.float32)) ** 2) / np.float32(2 * self.sigma**2))
            if not self.unbiased:
                g *= (coord >= upper_left[None, :, axis]) & (coord < bottom_right[None, :, axis])
            return g

        gx = gaussian_1d(w, 0) * weight
        gy = gaussian_1d(h, 1)
        return gy[:, None, :] * gx[None, :, :], weight

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (B, H, W, K) → joints (B, K, 2) in heatmap pixels and scores (B, K).

        The score is the heatmap's peak. `quarter_offset` moves the argmax a quarter pixel towards
        the higher neighbour (the reference's get_final_preds); `dark` and `dark_udp` refine it with
        a Taylor step on the log of the Gaussian-blurred heatmap (DARK, Zhang et al. 2020; UDP's
        variant, Huang et al. 2020, refines every positive peak, borders included).
        """
        heatmaps = np.asarray(heatmaps, np.float32)
        b, h, w, k = heatmaps.shape
        flat = heatmaps.reshape(b, h * w, k)
        index = np.argmax(flat, axis=1)  # (B, K)
        scores = np.take_along_axis(flat, index[:, None, :], axis=1)[:, 0]
        coords = np.stack([index % w, index // w], axis=-1).astype(np.float32)
        coords *= (scores > 0)[..., None]
        px, py = coords[..., 0].astype(int), coords[..., 1].astype(int)
        if self.decoding == "quarter_offset":
            coords += 0.25 * self._quarter_offset_direction(heatmaps, px, py)
        elif self.decoding == "dark":
            coords += self._dark_offset(_blur(heatmaps, self.blur_kernel_size), px, py)
        else:
            offset = self._dark_udp_offset(_blur(heatmaps, self.blur_kernel_size), px, py)
            coords += offset * (scores > 0)[..., None]
        return coords, scores

    def to_image(self, coords: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Heatmap-pixel joints (N, K, 2) of crops (center, scale: (N, 2)) → image pixels.

        The inverse crop at rotation 0, as the reference's transform_preds (no half-pixel term): a
        heatmap pixel covers scale_w * 200 / heatmap_w image pixels around the box centre. With
        `udp`, the inverse of the UDP crop and stride: heatmap pixels 0 and heatmap_w - 1 are the
        box's edges, (x / (heatmap_w - 1) - 1/2) * box_w from its centre (likewise in y).
        """
        if self.udp:
            extent = np.array(self.heatmap_size[::-1], np.float64) - 1  # (x, y)
            box = np.asarray(scale, np.float64)[:, None, :] * PIXEL_STD
            offset = (np.asarray(coords, np.float64) / extent - 0.5) * box
            return np.asarray(center, np.float64)[:, None, :] + offset
        heatmap_h, heatmap_w = self.heatmap_size
        pixels_per_cell = np.asarray(scale, np.float64)[:, 0] * PIXEL_STD / heatmap_w  # (N,)
        half = np.array([heatmap_w, heatmap_h]) / 2
        offset = (np.asarray(coords, np.float64) - half) * pixels_per_cell[:, None, None]
        return np.asarray(center, np.float64)[:, None, :] + offset

    def decode_to_image(
        self, heatmaps: np.ndarray, center: np.ndarray, scale: np.ndarray
    ) -> np.ndarray:
        """Heatmaps (N, H, W, K) of crops → keypoints (N, K, 3): image x, y and the peak score."""
        coords, scores = self.decode(heatmaps)
        joints = self.to_image(coords, center, scale)
        return np.concatenate([joints, scores[..., None]], -1).astype(np.float32)

    @staticmethod
    def _quarter_offset_direction(heatmaps, px, py) -> np.ndarray:
        b, h, w, k = heatmaps.shape
        inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
        value = _gather(heatmaps, px, py)
        dx = value(1, 0) - value(-1, 0)
        dy = value(0, 1) - value(0, -1)
        return np.sign(np.stack([dx, dy], -1)) * inside[..., None]

    @staticmethod
    def _dark_offset(heatmaps, px, py) -> np.ndarray:
        """-H^-1 g of the log heatmap at the integer peak (central differences, 2-pixel second ones)."""
        b, h, w, k = heatmaps.shape
        value = _gather(np.log(np.maximum(heatmaps, 1e-10)), px, py)
        dx = 0.5 * (value(1, 0) - value(-1, 0))
        dy = 0.5 * (value(0, 1) - value(0, -1))
        dxx = 0.25 * (value(2, 0) - 2 * value(0, 0) + value(-2, 0))
        dyy = 0.25 * (value(0, 2) - 2 * value(0, 0) + value(0, -2))
        dxy = 0.25 * (value(1, 1) - value(1, -1) - value(-1, 1) + value(-1, -1))
        det = dxx * dyy - dxy**2
        ok = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2) & (det != 0)
        det = np.where(ok, det, 1.0)
        offset_x = -(dyy * dx - dxy * dy) / det
        offset_y = -(dxx * dy - dxy * dx) / det
        return np.stack([offset_x, offset_y], -1) * ok[..., None]

    @staticmethod
    def _dark_udp_offset(heatmaps: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """UDP's Taylor step -(H + eps I)^-1 g on the log heatmap, clipped to [1e-3, 50], at the
        integer peak: 1-pixel differences, the border repeated (mmpose refine_keypoints_dark_udp).
        """
        value = _gather(np.log(np.clip(heatmaps, 1e-3, 50.0)), px, py)
        centre = value(0, 0)
        dx = 0.5 * (value(1, 0) - value(-1, 0))
        dy = 0.5 * (value(0, 1) - value(0, -1))
        dxx = value(1, 0) - 2 * centre + value(-1, 0) + np.finfo(np.float32).eps
        dyy = value(0, 1) - 2 * centre + value(0, -1) + np.finfo(np.float32).eps
        neighbours = value(1, 0) + value(-1, 0) + value(0, 1) + value(0, -1)
        dxy = 0.5 * (value(1, 1) + value(-1, -1) + 2 * centre - neighbours)
        det = dxx * dyy - dxy**2
        ok = det != 0
        det = np.where(ok, det, 1.0)
        offset_x = -(dyy * dx - dxy * dy) / det
        offset_y = -(dxx * dy - dxy * dx) / det
        return np.stack([offset_x, offset_y], -1) * ok[..., None]


def _gather(heatmaps: np.ndarray, px: np.ndarray, py: np.ndarray):
    """value(dx, dy) → heatmaps[b, py + dy, px + dx, k] for every (b, k), clamped at the border."""
    b, h, w, k = heatmaps.shape
    bi, ki = np.arange(b)[:, None], np.arange(k)[None, :]

    def value(dx: int, dy: int) -> np.ndarray:
        return heatmaps[bi, np.clip(py + dy, 0, h - 1), np.clip(px + dx, 0, w - 1), ki]

    return value


def _blur(heatmaps: np.ndarray, kernel_size: int) -> np.ndarray:
    """DARK's modulation: a Gaussian blur (zero border) rescaled to each heatmap's original peak."""
    border = (kernel_size - 1) // 2
    peaks = heatmaps.max(axis=(1, 2), keepdims=True)
    out = np.empty_like(heatmaps)
    for i, hm in enumerate(heatmaps):  # cv2 blurs all K channels of one image at once
        padded = cv2.copyMakeBorder(
            hm, border, border, border, border, cv2.BORDER_CONSTANT, value=0
        )
        blurred = cv2.GaussianBlur(padded, (kernel_size, kernel_size), 0).reshape(
            padded.shape[:2] + (-1,)
        )
        out[i] = blurred[border : border + hm.shape[0], border : border + hm.shape[1]]
    return out * (peaks / np.maximum(out.max(axis=(1, 2), keepdims=True), 1e-12))

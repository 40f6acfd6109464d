"""A convolution whose weight gradient is computed as matrix products, for XLA on CPU.

XLA's CPU backend turns a convolution's weight gradient into another convolution with the batch and
feature roles swapped, which it feeds by transposing the activations and output gradients to
(C, H, W, B) layouts. With HRNet's many small-batch, thin-channel convolutions those transposes
took two thirds of a W32 training step at batch 8 (BENCHMARKS.md). Here the weight gradient of a
k x k convolution is k*k matrix products over the flattened, zero-padded NHWC arrays instead: a
kernel tap (i, j) is a constant shift of i * padded_width + j rows, so each product reads a
contiguous row range and nothing is transposed. Strided convolutions split the padded input into
stride x stride phase images, each a stride-1 problem. The forward pass and the input gradient
stay XLA's own.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, strides, padding):
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_nhwc(x: jax.Array, w: jax.Array, strides: tuple, padding: tuple) -> jax.Array:
    """lax.conv_general_dilated for NHWC x HWIO with explicit padding; gradient by row shifts."""
    return _conv(x, w, strides, padding)


def _forward(x, w, strides, padding):
    return _conv(x, w, strides, padding), (x, w)


def _backward(strides, padding, residuals, dy):
    x, w = residuals
    (dx,) = jax.vjp(lambda x: _conv(x, w, strides, padding), x)[1](dy)
    (top, bottom), (left, right) = padding
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    dw = weight_gradient(padded, dy, w.shape[:2], strides).astype(w.dtype)
    return _sum_over_new_axes(dx, x), _sum_over_new_axes(dw, w)


def _sum_over_new_axes(cotangent: jax.Array, primal: jax.Array) -> jax.Array:
    """Inside shard_map a replicated weight meets per-device data: its cotangent is the sum over
    the devices (what JAX's own transpose of the implicit broadcast does for lax's convolution)."""
    axes = tuple(sorted(_varying_axes(cotangent) - _varying_axes(primal)))
    return jax.lax.psum(cotangent, axes) if axes else cotangent


def _varying_axes(x: jax.Array) -> frozenset:
    """The shard_map axes along which x differs between devices (its type's varying axes)."""
    return frozenset(jax.typeof(x).manual_axis_type.varying)


conv_nhwc.defvjp(_forward, _backward)


def weight_gradient(padded: jax.Array, dy: jax.Array, kernel: tuple, strides: tuple) -> jax.Array:
    """dL/dw (kh, kw, C, O) of a convolution of the padded input `padded` with output gradient dy."""
    kh, kw = kernel
    sh, sw = strides
    if (sh, sw) == (1, 1):
        return _stride1_weight_gradient(padded, dy, kh, kw)
    ho, wo = dy.shape[1:3]
    dw = jnp.zeros((kh, kw, padded.shape[-1], dy.shape[-1]), jnp.float32)
    for p in range(min(sh, kh)):
        for q in range(min(sw, kw)):
            # Phase (p, q) of the input meets the kernel taps (p + sh u, q + sw v).
            ku, kv = len(range(p, kh, sh)), len(range(q, kw, sw))
            phase = padded[:, p::sh, q::sw][:, : ho + ku - 1, : wo + kv - 1]
            missing = ((0, 0), (0, ho + ku - 1 - phase.shape[1]), (0, wo + kv - 1 - phase.shape[2]))
            phase = jnp.pad(phase, (*missing, (0, 0)))
            dw = dw.at[p::sh, q::sw].set(_stride1_weight_gradient(phase, dy, ku, kv))
    return dw


def _stride1_weight_gradient(padded: jax.Array, dy: jax.Array, kh: int, kw: int) -> jax.Array:
    """Each tap is one matrix product of row-shifted (N, C) input and (N, O) gradient; dy is
    zero-padded to the input's grid so that shifts running into the next row or image add 0."""
    _, hp, wp, c = padded.shape
    _, ho, wo, o = dy.shape
    grad = jnp.pad(dy, ((0, 0), (0, hp - ho), (0, wp - wo), (0, 0))).reshape(-1, o)
    rows = padded.reshape(-1, c)
    n = rows.shape[0] - ((kh - 1) * wp + kw - 1)
    contract_rows = (((0,), (0,)), ((), ()))
    taps = [
        lax.dot_general(
            rows[i * wp + j : i * wp + j + n],
            grad[:n],
            contract_rows,
            preferred_element_type=jnp.float32,
        )
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.stack(taps).reshape(kh, kw, c, o)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    **kwargs,
):
    """Drop-in for lax.conv_general_dilated (nn.Conv's `conv_general_dilated`): the row-shift
    gradient for plain NHWC convolutions with explicit padding, XLA's convolution otherwise."""
    undilated = all(d == 1 for d in (lhs_dilation or (1,))) and all(
        d == 1 for d in (rhs_dilation or (1,))
    )
    plain = (
        undilated
        and feature_group_count == 1
        and not isinstance(padding, str)
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
        and not kwargs
    )
    if not plain:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            precision=precision,
            **kwargs,
        )
    return conv_nhwc(lhs, rhs, tuple(window_strides), tuple(tuple(p) for p in padding))

"""The row-shift weight gradient (models/conv.py) against XLA's own convolution gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from hrnet_jax.models import conv


@pytest.mark.parametrize(
    "shape,kernel,stride,channels_out",
    [
        ((2, 16, 12, 5), 3, 1, 7),
        ((2, 16, 12, 5), 3, 2, 7),
        ((3, 15, 11, 4), 3, 2, 6),  # odd sizes: the last phase rows run out
        ((2, 16, 12, 5), 1, 1, 8),
        ((2, 16, 12, 5), 1, 2, 8),
    ],
)
def test_gradients_equal_xla_convolution(shape, kernel, stride, channels_out):
    kx, kw, kc = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kw, (kernel, kernel, shape[-1], channels_out))
    pad = ((kernel // 2, kernel // 2),) * 2
    strides = (stride, stride)
    out = lax.conv_general_dilated(x, w, strides, pad, dimension_numbers=conv.NHWC)
    cotangent = jax.random.normal(kc, out.shape)

    def loss(f):
        return lambda x, w: jnp.sum(f(x, w) * cotangent)

    xla = jax.grad(loss(lambda x, w: lax.conv_general_dilated(x, w, strides, pad, dimension_numbers=conv.NHWC)), (0, 1))(x, w)  # fmt: skip
    ours = jax.grad(loss(lambda x, w: conv.conv_general_dilated(x, w, strides, pad, dimension_numbers=conv.NHWC)), (0, 1))(x, w)  # fmt: skip
    np.testing.assert_allclose(conv.conv_nhwc(x, w, strides, pad), out, rtol=1e-6)
    np.testing.assert_allclose(ours[0], xla[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours[1], xla[1], rtol=1e-5, atol=1e-4)


def test_other_convolutions_fall_back_to_xla():
    x = jnp.ones((1, 8, 8, 4))
    w = jnp.ones((3, 3, 1, 4))
    grouped = conv.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=conv.NHWC, feature_group_count=4
    )
    expected = lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=conv.NHWC, feature_group_count=4
    )
    np.testing.assert_array_equal(grouped, expected)

"""Model size and cost: parameters, convolution GMACs (as HRNet's README counts them), XLA GFLOPs."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.extend as jex
import jax.numpy as jnp
import ml_collections

from hrnet_jax import models


def conv_macs(fn: Callable, *args) -> int:
    """Multiply-adds of every convolution in `fn`'s traced program (nested jaxprs included)."""
    return _jaxpr_conv_macs(jax.make_jaxpr(fn)(*args).jaxpr)


def _jaxpr_conv_macs(jaxpr: jex.core.Jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            out = eqn.outvars[0].aval.shape
            kernel = eqn.invars[1].aval.shape
            out_features = kernel[eqn.params["dimension_numbers"].rhs_spec[0]]
            # Each output element takes kh*kw*(c_in / groups) multiply-adds.
            total += math.prod(out) * math.prod(kernel) // out_features
        for sub in jex.core.jaxprs_in_params(eqn.params):
            total += _jaxpr_conv_macs(sub)
    return total


def summarize(config: ml_collections.ConfigDict, with_xla: bool = True) -> dict:
    """Parameter count, GMACs (conv multiply-adds / 2**30) and XLA GFLOPs for one image.

    XLA's count needs a compilation (seconds to tens of seconds on CPU); `with_xla=False` skips it.
    """
    model = models.create_model(config.model)
    x = jnp.zeros((1, *config.input_size, 3), jnp.dtype(config.model.dtype))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    forward = lambda v, x: model.apply(v, x)  # noqa: E731
    result = {
        "params": sum(leaf.size for leaf in jax.tree.leaves(variables["params"])),
        "gmacs": round(conv_macs(forward, variables, x) / 2**30, 4),
    }
    if with_xla:
        cost = jax.jit(forward).lower(variables, x).compile().cost_analysis()
        result["xla_gflops"] = round(cost["flops"] / 1e9, 4)
    return {
        **result,
        "input_size": list(config.input_size),
        "heatmap_size": list(config.heatmap_size),
    }

"""The train state, optimizer, loss and the sharded train step.

The step is one pure function `(state, batch) -> (state, metrics)`: `jax.jit` of a `jax.shard_map`
over the mesh's `data` axis, gradients averaged with `pmean`, the state donated.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import PartitionSpec as P

from hrnet_jax import models
from hrnet_jax.errors import ConfigError
from hrnet_jax.parallel import DATA_AXIS, replicated

# What the step needs of a batch; the rest (center, scale, ids) stays on the host.
TRAIN_KEYS = ("image", "heatmaps", "target_weight")


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def learning_rate_schedule(
    train: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
    """Linear warmup from `warmup_start_factor`, multiplied by a step decay at `lr_decay_epochs`.

    PD's LinearWarmup + PiecewiseDecay: the decay boundaries count from step 0, not from the end
    of the warmup.
    """
    decay = optax.piecewise_constant_schedule(
        train.learning_rate,
        {int(e * steps_per_epoch): train.lr_decay_factor for e in train.lr_decay_epochs},
    )
    if train.warmup_steps <= 0:
        return decay
    warmup = optax.linear_schedule(train.warmup_start_factor, 1.0, train.warmup_steps)
    return lambda step: decay(step) * warmup(step)


def create_optimizer(
    train: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
    if train.optimizer == "adam":
        tx = optax.adam(schedule, b1=train.b1, b2=train.b2, eps=train.adam_eps)
    elif train.optimizer == "adamw":
        # Decay conv kernels only, not BN scales and biases.
        mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
        tx = optax.adamw(
            schedule,
            b1=train.b1,
            b2=train.b2,
            eps=train.adam_eps,
            weight_decay=train.weight_decay,
            mask=mask,
        )
    else:
        raise ConfigError(f"train.optimizer is {train.optimizer!r}; expected 'adam' or 'adamw'")
    if train.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(train.grad_clip_norm), tx)
    return tx


def joints_mse(pred: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
    """The reference's JointsMSELoss: 0.5 * mean over B, H, W, K of (w * (pred - gt))^2, in fp32."""
    diff = (pred.astype(jnp.float32) - target.astype(jnp.float32)) * weight[:, None, None, :]
    return 0.5 * jnp.mean(jnp.square(diff))


def _init(model: nn.Module, tx, input_size: tuple[int, int], rng: jax.Array) -> TrainState:
    init_rng, _ = jax.random.split(rng)  # split as before, so a seed keeps its initial weights
    variables = model.init(init_rng, jnp.zeros((1, *input_size, 3), jnp.float32))
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(variables["params"]),
    )


def init_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    input_size: tuple[int, int],
    seed: int,
    mesh: jax.sharding.Mesh,
) -> TrainState:
    """Initialises the state straight into its replicated sharding (nothing allocated twice)."""
    init = functools.partial(_init, model, tx, tuple(input_size))
    return jax.jit(init, out_shardings=replicated(mesh))(jax.random.key(seed))


def abstract_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    input_size: tuple[int, int],
    mesh: jax.sharding.Mesh,
) -> TrainState:
    """Shapes, dtypes and shardings of the state without allocating it: the target of a restore."""
    shapes = jax.eval_shape(
        functools.partial(_init, model, tx, tuple(input_size)), jax.random.key(0)
    )
    sharding = replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimisation step, run on each device with its shard of the batch.

    The loss is averaged over the `data` axis (pmean) before differentiating, so the gradient is
    that of the global batch's loss: shard_map transposes the replicated params' implicit broadcast
    into the cross-device sum of the per-device gradients. BatchNorm statistics are the device's own
    unless the model was built with axis_name `data` (synchronised BN); the running averages are
    averaged across devices either way so that the state stays replicated.
    """
    images = models.normalize(batch["image"], mean, std, model.backbone.dtype)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        heatmaps, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])
        loss = joints_mse(heatmaps, batch["heatmaps"], batch["target_weight"])
        return jax.lax.pmean(loss, DATA_AXIS), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    batch_stats = jax.lax.pmean(updates["batch_stats"], DATA_AXIS)
    param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, param_updates),
        batch_stats=batch_stats,
        opt_state=opt_state,
    )
    metrics = {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
    }
    return new_state, metrics


def compile_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """jit(shard_map(train_step)) over the mesh: state replicated and donated, batch split on `data`."""
    step = functools.partial(
        train_step,
        model=model,
        tx=tx,
        schedule=schedule,
        mean=tuple(config.data.mean),
        std=tuple(config.data.std),
    )
    sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()))
    return jax.jit(sharded, donate_argnums=0)

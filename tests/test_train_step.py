"""The sharded train step against single-device computations of the same global batch."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from testing_utils import tiny_model_config

from hrnet_jax import config_lib, models, parallel, train

INPUT, HEATMAP, BATCH = (64, 64), (16, 16), 8


def _config(sync_bn: bool):
    c = config_lib.recipe()
    c.model = tiny_model_config()
    c.input_size, c.heatmap_size = INPUT, HEATMAP
    c.train.sync_bn = sync_bn
    # Large eps makes Adam's first update proportional to the gradient (not its sign), so the
    # comparison below sees gradient errors; no warmup so the update is large.
    c.train.learning_rate, c.train.adam_eps, c.train.warmup_steps = 1.0, 1.0, 0
    return c


def _batch():
    rng = np.random.default_rng(0)
    heatmaps = rng.random((BATCH, *HEATMAP, 17), np.float32) ** 8  # peaky, like Gaussian targets
    return {
        "image": rng.integers(0, 256, (BATCH, *INPUT, 3), np.uint8),
        "heatmaps": heatmaps,
        "target_weight": (rng.random((BATCH, 17)) > 0.2).astype(np.float32),
    }


def _step(config, mesh):
    model = models.create_model(
        config.model, axis_name=parallel.DATA_AXIS if config.train.sync_bn else None
    )
    schedule = train.learning_rate_schedule(config.train, steps_per_epoch=100)
    tx = train.create_optimizer(config.train, schedule)
    state = train.init_state(model, tx, INPUT, 0, mesh)
    # Scale the std-0.001 kernels so that activations and gradients are O(1), as after training.
    state = state.replace(
        params=jax.tree.map(lambda p: p * 300 if p.ndim == 4 else p, state.params)
    )
    return model, tx, state, train.compile_train_step(model, tx, schedule, config, mesh)


def _run(config, devices):
    mesh = parallel.make_mesh(devices)
    _, _, state, step = _step(config, mesh)
    before = jax.device_get(state.params)
    state, metrics = step(state, parallel.global_batch(_batch(), mesh))
    return before, jax.device_get(state), jax.device_get(metrics)


def _assert_trees_close(a, b, atol, rtol=0.0):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol, rtol=rtol), a, b)


def test_eight_device_step_equals_one_device_step_with_synchronised_bn():
    config = _config(sync_bn=True)
    before, state8, metrics8 = _run(config, jax.devices()[:8])
    _, state1, metrics1 = _run(config, jax.devices()[:1])
    assert metrics8["loss"] == pytest.approx(metrics1["loss"], rel=1e-4)
    assert metrics8["grad_norm"] == pytest.approx(metrics1["grad_norm"], rel=1e-4)
    _assert_trees_close(state8.params, state1.params, atol=1e-5)
    _assert_trees_close(state8.batch_stats, state1.batch_stats, atol=1e-5, rtol=1e-5)
    # The update is large against the tolerance, so the comparison is not vacuous.
    change = jax.tree.map(lambda a, b: np.max(np.abs(a - b)), state1.params, before)
    assert max(jax.tree.leaves(change)) > 1e-2


def _per_shard(model, state, shard, mean, std):
    """Loss, gradients and new BN statistics of one shard with its own batch statistics."""
    images = models.normalize(shard["image"], mean, std)

    def loss_fn(params):
        out, updates = model.apply(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        diff = (out - shard["heatmaps"]) * shard["target_weight"][:, None, None, :]
        return 0.5 * jnp.mean(diff**2), updates["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return loss, grads, stats


def test_eight_device_step_with_per_device_bn_averages_per_shard_steps():
    """Per-device BN (as the reference): each shard normalised by its own statistics; the step
    averages the shards' gradients, losses and running statistics."""
    config = _config(sync_bn=False)
    mesh = parallel.make_mesh(jax.devices()[:8])
    model, tx, state, step = _step(config, mesh)
    state0 = jax.device_get(state)
    batch = _batch()
    mean, std = tuple(config.data.mean), tuple(config.data.std)
    shards = [
        jax.jit(functools.partial(_per_shard, model, mean=mean, std=std))(
            state0, {k: v[i : i + 1] for k, v in batch.items()}
        )
        for i in range(8)
    ]
    loss = np.mean([s[0] for s in shards])
    grads = jax.tree.map(lambda *g: np.mean(g, axis=0), *[s[1] for s in shards])
    stats = jax.tree.map(lambda *g: np.mean(g, axis=0), *[s[2] for s in shards])
    updates, _ = tx.update(grads, state0.opt_state, state0.params)
    expected_params = optax.apply_updates(state0.params, updates)

    new_state, metrics = step(state, parallel.global_batch(batch, mesh))
    assert float(metrics["loss"]) == pytest.approx(loss, rel=1e-4)
    assert float(metrics["grad_norm"]) == pytest.approx(float(optax.tree.norm(grads)), rel=1e-4)
    _assert_trees_close(jax.device_get(new_state.params), expected_params, atol=1e-5)
    _assert_trees_close(jax.device_get(new_state.batch_stats), stats, atol=1e-5, rtol=1e-5)
    # Different from synchronised BN: one image per device normalises differently from eight.
    _, sync_state, _ = _run(_config(sync_bn=True), jax.devices()[:8])
    diffs = jax.tree.map(
        lambda a, b: np.max(np.abs(a - b)), sync_state.params, jax.device_get(new_state.params)
    )
    assert max(jax.tree.leaves(diffs)) > 1e-3


def test_learning_rate_warms_up_then_drops_at_the_decay_epochs():
    c = config_lib.recipe().train
    schedule = train.learning_rate_schedule(c, steps_per_epoch=100)
    # PD: LinearWarmup(1000 steps, start 0.001) times PiecewiseDecay at epochs 170, 200 (x0.1).
    # (optax evaluates the warmup as end - (end - start)(1 - t): float32 cancellation ~1e-5.)
    assert float(schedule(0)) == pytest.approx(5e-4 * 0.001, rel=1e-4)
    assert float(schedule(500)) == pytest.approx(5e-4 * (0.001 + 0.999 * 0.5), rel=1e-4)
    assert float(schedule(1000)) == pytest.approx(5e-4, rel=1e-4)
    assert float(schedule(16_999)) == pytest.approx(5e-4, rel=1e-4)
    assert float(schedule(17_000)) == pytest.approx(5e-5, rel=1e-4)
    assert float(schedule(20_000)) == pytest.approx(5e-6, rel=1e-4)


def test_joints_mse_is_half_the_weighted_mean_square():
    pred = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2) / 10
    target = np.ones_like(pred)
    weight = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)
    expected = 0.5 * np.sum(((pred - target) * weight[:, None, None, :]) ** 2) / pred.size
    assert float(train.joints_mse(pred, target, weight)) == pytest.approx(expected, rel=1e-6)

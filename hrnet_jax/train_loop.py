"""The training loop: data → sharded step → metrics, checkpoints, evaluation; resume and preemption.

Reads top to bottom: setup, data, model and optimizer, restore or initialise, then the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pathlib
import signal
import threading
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from hrnet_jax import checkpoint, config_lib, evaluate, models, parallel, train
from hrnet_jax.data import pipeline, sources
from hrnet_jax.metrics import MetricWriter
from hrnet_jax.models import summary


class NonFiniteLossError(FloatingPointError):
    """Training diverged; the message names the step and the last good checkpoint."""


@dataclasses.dataclass
class Window:
    """Accumulates what is logged every `log_every_steps`: losses, timings, skipped records."""

    start: float = dataclasses.field(default_factory=time.perf_counter)
    steps: int = 0
    data_wait: float = 0.0
    losses: list = dataclasses.field(default_factory=list)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Trains (resuming from WORKDIR/checkpoints when there is a checkpoint); returns last metrics."""
    config = config_lib.validate(config)
    workdir = pathlib.Path(workdir)

    # ---- Setup: devices and batch sizes --------------------------------------------------------
    mesh = parallel.make_mesh()
    global_batch = config.train.global_batch_size
    if global_batch % mesh.size:
        raise ValueError(
            f"train.global_batch_size={global_batch} is not divisible by the {mesh.size} devices"
        )
    logging.info("config:\n%s", config)
    logging.info(
        "%d processes, %d devices (%s); global batch %d = %d per device",
        jax.process_count(),
        mesh.size,
        jax.devices()[0].device_kind,
        global_batch,
        global_batch // mesh.size,
    )

    # ---- Data ----------------------------------------------------------------------------------
    if jax.process_index() == 0:
        sources.ensure_synthetic(config)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("data ready")
    instances = sources.load_instances(config, config.data.train_split, train=True)
    steps_per_epoch = len(instances) // global_batch
    total_steps = steps_per_epoch * config.train.num_epochs
    data = pipeline.train_iterator(
        instances,
        pipeline.make_sampler(config, train=True),
        seed=config.seed,
        global_batch_size=global_batch,
        num_epochs=config.train.num_epochs,
        options=pipeline.DataOptions.from_config(config.data),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

    # ---- Model and optimizer -------------------------------------------------------------------
    model = models.create_model(
        config.model, axis_name=parallel.DATA_AXIS if config.train.sync_bn else None
    )
    logging.info("model: %s", summary.summarize(config, with_xla=False))
    schedule = train.learning_rate_schedule(config.train, steps_per_epoch)
    tx = train.create_optimizer(config.train, schedule)

    # ---- Restore or initialise -----------------------------------------------------------------
    checkpoints = checkpoint.Checkpoints(
        workdir,
        every_steps=config.train.checkpoint_every_steps,
        keep=config.train.keep_checkpoints,
    )
    if checkpoints.latest_step() is not None:
        abstract = train.abstract_state(model, tx, config.input_size, mesh)
        state, data_state, step = checkpoints.restore(abstract, config)
        data.set_state(data_state)
        logging.info("resumed from %s at step %d", checkpoints.directory, step)
    else:
        state = train.init_state(model, tx, config.input_size, config.seed, mesh)
        state = _init_from(state, config)
        state = _init_from_torch(state, config, mesh)
    step_fn = train.compile_train_step(model, tx, schedule, config, mesh)

    # ---- Loop ----------------------------------------------------------------------------------
    first_step = int(state.step)
    writer = MetricWriter(workdir, total_steps, first_step)
    logging.info(
        "%d instances, %d steps per epoch, steps %d..%d of %d",
        len(instances),
        steps_per_epoch,
        first_step,
        total_steps,
        total_steps,
    )
    eval_model = models.create_model(config.model)  # no cross-device BN axis at inference
    window, pending, last, last_eval = Window(), None, {}, {}
    skipped = 0
    with _preemption_flag() as preempted:
        for step in range(first_step, total_steps):
            t0 = time.perf_counter()
            batch = next(data)
            window.data_wait += time.perf_counter() - t0
            skipped += int(np.sum(~batch["valid"]))
            device_batch = parallel.global_batch({k: batch[k] for k in train.TRAIN_KEYS}, mesh)
            state, metrics = step_fn(state, device_batch)
            if pending is not None:  # read the previous step's loss while this one runs
                _check_finite(*pending, window, checkpoints)
            pending = (step, metrics)
            done = step + 1
            writer.advance()

            epoch_end = done % steps_per_epoch == 0
            log_due = done % config.train.log_every_steps == 0 or done == total_steps
            save_due = checkpoints.manager.should_save(done) or done == total_steps
            stop = _preemption_requested(preempted, checkpoints, done)
            if log_due or save_due or epoch_end or stop:
                _check_finite(*pending, window, checkpoints)  # never save a diverged state
                pending = None
            if log_due:
                last = _log(writer, done, window, metrics, global_batch, total_steps)
                window = Window()
            if epoch_end and skipped:
                epoch = done // steps_per_epoch
                logging.warning(
                    "epoch %d: %d unreadable records skipped (data.strict=False)", epoch, skipped
                )
                writer.write(done, {"skipped_records": skipped}, prefix="data")
                skipped = 0
            eval_every = config.train.eval_every_epochs
            eval_due = done == total_steps or (
                epoch_end and eval_every > 0 and (done // steps_per_epoch) % eval_every == 0
            )
            ap = None
            if eval_due:
                variables = {"params": state.params, "batch_stats": state.batch_stats}
                last_eval = evaluate.evaluate(
                    config, eval_model, variables, mesh, workdir, done, writer
                )
                ap = {"AP": last_eval["AP"]}
            if save_due or stop or eval_due:
                force = stop or eval_due or done == total_steps
                checkpoints.save(done, state, data.get_state(), config, metrics=ap, force=force)
            if stop:
                logging.warning("preempted: saved step %d, exiting", done)
                break
    if first_step >= total_steps:  # a finished run started again: report its result once more
        logging.info("%s holds the final step %d; evaluating it", checkpoints.directory, first_step)
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        last_eval = evaluate.evaluate(
            config, eval_model, variables, mesh, workdir, first_step, writer
        )
    checkpoints.wait()
    checkpoints.close()
    data.close()
    writer.close()
    return {"step": int(state.step), **last, **{f"eval/{k}": v for k, v in last_eval.items()}}


def _check_finite(step: int, metrics: dict, window: Window, checkpoints: checkpoint.Checkpoints):
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        checkpoints.wait()
        raise NonFiniteLossError(
            f"loss is {loss} at step {step + 1}; stopping. The last good checkpoint is step "
            f"{checkpoints.latest_step()} in {checkpoints.directory}"
        )
    window.losses.append(loss)
    window.steps += 1


def _log(writer, step, window: Window, metrics, global_batch, total_steps) -> dict:
    seconds = time.perf_counter() - window.start
    steps = max(window.steps, 1)
    scalars = {
        "loss": float(np.mean(window.losses)),
        "lr": float(metrics["learning_rate"]),
        "grad_norm": float(metrics["grad_norm"]),
        "img_per_s": steps * global_batch / seconds,
        "step_time": seconds / steps,
        "data_wait": window.data_wait / steps,
        "eta_hours": (total_steps - step) * seconds / steps / 3600,
    }
    writer.write(step, scalars)
    return scalars


def _init_from(state: train.TrainState, config: ml_collections.ConfigDict) -> train.TrainState:
    """Starts from another checkpoint's params and BN statistics (`train.init_from`)."""
    if not config.train.init_from:
        return state
    source = checkpoint.Checkpoints(config.train.init_from, use_async=False)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        {"params": state.params, "batch_stats": state.batch_stats},
    )
    variables, step = source.restore_variables(abstract, config)
    source.close()
    logging.info("initialised params from %s (step %d)", source.directory, step)
    return state.replace(params=variables["params"], batch_stats=variables["batch_stats"])


def _init_from_torch(state: train.TrainState, config, mesh) -> train.TrainState:
    """Loads an ImageNet HRNet backbone (.pth/.safetensors); the head keeps its initialisation."""
    if not config.train.init_from_torch:
        return state
    from hrnet_jax.tools import import_torch

    state_dict = import_torch.read_state_dict(config.train.init_from_torch)
    initial = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    variables, report = import_torch.convert(state_dict, initial, "imagenet")
    variables = jax.device_put(variables, parallel.replicated(mesh))
    logging.info(
        "initialised the backbone from %s: %d tensors, %d leaves kept (%s)",
        config.train.init_from_torch,
        len(report.used),
        len(report.missing),
        ", ".join(report.missing),
    )
    return state.replace(params=variables["params"], batch_stats=variables["batch_stats"])


@contextlib.contextmanager
def _preemption_flag():
    """Turns SIGTERM into a flag checked between steps (single-process runs; see below)."""
    flag = threading.Event()
    if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def _preemption_requested(flag: threading.Event, checkpoints, step: int) -> bool:
    # With several processes every one must stop at the same step: orbax's sync point (built on
    # jax.distributed's preemption notice) agrees on it; it is always False on one process.
    if jax.process_count() > 1:
        return checkpoints.manager.reached_preemption(step)
    return flag.is_set()


__all__ = ["NonFiniteLossError", "train_and_evaluate"]

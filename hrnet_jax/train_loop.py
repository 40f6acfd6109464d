"""The training loop: data → sharded step → metrics, checkpoints, evaluation; resume and preemption.

Reads top to bottom: setup, data, model and optimizer, restore or initialise, then the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
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

from hrnet_jax import checkpoint, coco_metric, config_lib, logs, models, parallel, train
from hrnet_jax.data import pipeline, sources
from hrnet_jax.data.samples import TopDownSampler
from hrnet_jax.errors import USER_ERRORS, ConfigError, EvaluationError, UserError
from hrnet_jax.evaluator import Evaluator
from hrnet_jax.metrics import MetricWriter, log_train
from hrnet_jax.models import summary


class NonFiniteLossError(UserError, FloatingPointError):
    """Training diverged; the message names the step and the last good checkpoint."""


@dataclasses.dataclass
class Window:
    """Accumulates what is logged every `log_every_steps`: losses, timings, skipped records."""

    start: float = dataclasses.field(default_factory=time.perf_counter)
    steps: int = 0
    data_wait: float = 0.0
    losses: list = dataclasses.field(default_factory=list)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Trains (resuming from WORKDIR/checkpoints when there is a checkpoint); returns last metrics.

    Everything that can be checked is checked before the first step: the config, the workdir, the
    devices, the train and val data. A step due for evaluation is saved first, so a failing
    evaluation never costs its checkpoint. SIGTERM and a first Ctrl-C save the current step and
    return; a second Ctrl-C aborts.
    """
    config = config_lib.check(config)
    workdir = _prepare_workdir(pathlib.Path(workdir))
    main_process = jax.process_index() == 0
    if main_process:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=1) + "\n")
    with logs.to_file(workdir / "train.log", enabled=main_process), contextlib.ExitStack() as stack:
        return _train(config, workdir, stack)


def _train(config, workdir: pathlib.Path, stack: contextlib.ExitStack) -> dict:
    # ---- Setup: devices and batch sizes --------------------------------------------------------
    mesh = parallel.make_mesh()
    global_batch = config.train.global_batch_size
    if global_batch % mesh.size:
        raise ConfigError(
            f"train.global_batch_size is {global_batch}, not divisible by the {mesh.size} devices: "
            f"use a multiple of {mesh.size}"
        )
    logging.info(
        "%d processes, %d devices (%s); global batch %d = %d per device; config in %s",
        jax.process_count(),
        mesh.size,
        jax.devices()[0].device_kind,
        global_batch,
        global_batch // mesh.size,
        workdir / "config.json",
    )

    # ---- Data: train and val, both checked now --------------------------------------------------
    if jax.process_index() == 0:
        sources.ensure_synthetic(config)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("data ready")
    instances, _ = sources.load_instances(config, config.data.train_split, train=True)
    steps_per_epoch = len(instances) // global_batch
    total_steps = steps_per_epoch * config.train.num_epochs
    data = pipeline.train_iterator(
        instances,
        TopDownSampler.from_config(config, train=True),
        seed=config.seed,
        global_batch_size=global_batch,
        num_epochs=config.train.num_epochs,
        options=pipeline.DataOptions.from_config(config.data),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    stack.callback(data.close)
    evaluator = Evaluator(config, mesh)

    def eval_due(step: int) -> bool:
        every, epoch_end = config.train.eval_every_epochs, step % steps_per_epoch == 0
        return step == total_steps or (
            epoch_end and every > 0 and (step // steps_per_epoch) % every == 0
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
    stack.callback(checkpoints.close)
    stack.callback(checkpoints.wait)  # runs first: pending saves complete, even on an error
    if checkpoints.latest_step() is not None:
        abstract = train.abstract_state(model, tx, config.input_size, mesh)
        state, data_state, step = checkpoints.restore(abstract, config)
        data.set_state(data_state)
        logging.info("resumed from %s at step %d", checkpoints.directory, step)
    else:
        state = train.init_state(model, tx, config.input_size, config.seed, mesh)
        state = _init_from(state, config, model, mesh)
        state = _init_from_torch(state, config, mesh)
    step_fn = train.compile_train_step(model, tx, schedule, config, mesh)

    # ---- Loop ----------------------------------------------------------------------------------
    first_step = int(state.step)
    writer = MetricWriter(workdir, first_step)
    stack.callback(writer.close)
    logging.info(
        "%d instances, %d steps per epoch, steps %d..%d of %d",
        len(instances),
        steps_per_epoch,
        first_step,
        total_steps,
        total_steps,
    )
    evaluation = functools.partial(_evaluate, evaluator, checkpoints, writer, workdir, config)
    last_eval = _resume_evaluation(
        first_step, total_steps, eval_due, evaluation, state, checkpoints
    )
    last, window, pending, skipped = {}, Window(), None, 0
    with _stop_signals() as stop_request:
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

            epoch_end = done % steps_per_epoch == 0
            log_due = done % config.train.log_every_steps == 0 or done == total_steps
            evaluate_now = eval_due(done)
            save_due = checkpoints.should_save(done) or evaluate_now
            stop = _stop_requested(stop_request, checkpoints, done)
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
            if save_due or stop:  # before evaluating: a failed evaluation keeps the step
                checkpoints.save(done, state, data.get_state(), config, force=True)
                logging.info("checkpoint: step %d -> %s", done, checkpoints.directory / str(done))
            if evaluate_now:
                last_eval = evaluation(state, done)
            if stop:
                logging.warning(
                    "%s: saved step %d, exiting; rerun the same command to resume",
                    stop_request.reason,
                    done,
                )
                break
    return {"step": int(state.step), **last, **{f"eval/{k}": v for k, v in last_eval.items()}}


def _prepare_workdir(workdir: pathlib.Path) -> pathlib.Path:
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write_test.{jax.process_index()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"workdir {workdir} is not writable: {e.strerror or e}") from e
    return workdir


def _evaluate(evaluator, checkpoints, writer, workdir, config, state, step: int) -> dict:
    """Evaluates the saved `step`; feeds the best-AP copy. A failure names the kept checkpoint."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    try:
        metrics = evaluator.run(variables, step, workdir / "eval" / str(step))
    except Exception as e:
        checkpoints.wait()
        message = (
            f"evaluation at step {step} failed: {e}\nThe step is saved ("
            f"{checkpoints.directory / str(step)}): fix the val data or settings and rerun the same "
            "command to evaluate it"
        )
        logging.error("%s", message)
        if isinstance(e, USER_ERRORS):
            raise EvaluationError(message) from e
        raise
    writer.write(step, metrics, prefix="eval")
    checkpoints.save_best(step, variables, config, metrics[evaluator.primary])
    return metrics


def _resume_evaluation(first_step, total_steps, eval_due, evaluation, state, checkpoints) -> dict:
    """A resumed step that was due for evaluation gets one if it has none (its evaluation failed
    or was cut short); a finished run started again reports its result without a new row."""
    if first_step >= total_steps:
        logging.info("%s holds the final step %d", checkpoints.directory, first_step)
    if not first_step or not eval_due(first_step):
        return {}
    done = checkpoints.directory.parent / "eval" / str(first_step) / "metrics.json"
    evaluated = done.is_file()
    if jax.process_count() > 1:  # process 0 wrote it; all must agree before a collective
        evaluated = bool(multihost_utils.broadcast_one_to_all(np.int32(evaluated)))
    if not evaluated:
        logging.info("step %d has no evaluation yet; evaluating it", first_step)
        return evaluation(state, first_step)
    if jax.process_index() != 0:
        return {}
    metrics = json.loads(done.read_text())
    if first_step >= total_steps:
        print(coco_metric.format_table(metrics), flush=True)
    return {k: v for k, v in metrics.items() if k not in ("instances", "skipped")}


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
    log_train(step, total_steps, scalars)
    return scalars


def _init_from(state: train.TrainState, config, model, mesh) -> train.TrainState:
    """Starts from another checkpoint's params and BN statistics (`train.init_from`)."""
    if not config.train.init_from:
        return state
    abstract = models.abstract_variables(model, config.input_size, parallel.replicated(mesh))
    with checkpoint.Checkpoints.read(config.train.init_from) as source:
        variables, step = source.restore_variables(abstract, config)
    logging.info("initialised params from %s (step %d)", source.directory, step)
    return state.replace(params=variables["params"], batch_stats=variables["batch_stats"])


def _init_from_torch(state: train.TrainState, config, mesh) -> train.TrainState:
    """Loads an ImageNet HRNet backbone (.pth/.safetensors); the head keeps its initialisation."""
    if not config.train.init_from_torch:
        return state
    from hrnet_jax.tools import torch_weights

    state_dict = torch_weights.read_state_dict(config.train.init_from_torch)
    initial = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    variables, report = torch_weights.convert(state_dict, initial, "imagenet")
    variables = jax.device_put(variables, parallel.replicated(mesh))
    logging.info(
        "initialised the backbone from %s: %d tensors, %d leaves kept (%s)",
        config.train.init_from_torch,
        len(report.used),
        len(report.missing),
        ", ".join(report.missing),
    )
    return state.replace(params=variables["params"], batch_stats=variables["batch_stats"])


@dataclasses.dataclass
class StopRequest:
    """Set by SIGTERM ("preempted") or a first Ctrl-C ("interrupted"); checked between steps."""

    reason: str = ""

    def __bool__(self) -> bool:
        return bool(self.reason)


@contextlib.contextmanager
def _stop_signals():
    """SIGTERM and the first SIGINT request a save-and-exit; the second SIGINT aborts at once.

    Single-process runs only: with several processes every one must stop at the same step, which
    orbax's preemption sync point (jax.distributed's notice) decides.
    """
    request = StopRequest()
    if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
        yield request
        return

    def on_sigterm(*_):
        request.reason = "preempted"

    def on_sigint(*_):
        request.reason = "interrupted"
        signal.signal(signal.SIGINT, signal.default_int_handler)
        logging.warning("interrupted: saving after this step (Ctrl-C again aborts without saving)")

    previous = {
        s: signal.signal(s, h)
        for s, h in ((signal.SIGTERM, on_sigterm), (signal.SIGINT, on_sigint))
    }
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_requested(request: StopRequest, checkpoints, step: int) -> bool:
    if jax.process_count() > 1:
        return checkpoints.reached_preemption(step)
    return bool(request)


__all__ = ["NonFiniteLossError", "train_and_evaluate"]

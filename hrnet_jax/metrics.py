"""Where training metrics go: TensorBoard event files, a JSONL file and log lines (process 0 only)."""

from __future__ import annotations

import json
import pathlib
import time

import jax
from absl import logging


class MetricWriter:
    """Scalars to WORKDIR/tensorboard (tensorboardX) and WORKDIR/metrics.jsonl.

    A run resumed at `initial_step` first drops the rows (and TensorBoard events) after that step
    that an interrupted run wrote, so a step never has two rows. On processes other than 0 every
    call does nothing, so callers need no checks.
    """

    def __init__(self, workdir: str | pathlib.Path, initial_step: int = 0):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter

        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        jsonl = workdir / "metrics.jsonl"
        if jsonl.is_file():
            kept = [
                line
                for line in jsonl.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= initial_step
            ]
            jsonl.write_text("".join(f"{line}\n" for line in kept))
        purge = initial_step + 1 if initial_step else None
        self._tensorboard = SummaryWriter(str(workdir / "tensorboard"), purge_step=purge)
        self._jsonl = jsonl.open("a")

    def write(self, step: int, scalars: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._tensorboard.add_scalar(f"{prefix}/{name}", value, step)
        record = {
            "step": step,
            "time": time.time(),
            **{f"{prefix}/{k}": v for k, v in scalars.items()},
        }
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        self._tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            self._tensorboard.close()
            self._jsonl.close()


def log_train(step: int, total_steps: int, scalars: dict[str, float]) -> None:
    """One console (and train.log) line for a logging window."""
    logging.info(
        "step %d/%d: loss %.4g, lr %.3g, grad norm %.3g, %.1f img/s, data wait %.3f s/step, "
        "eta %.2f h",
        step,
        total_steps,
        scalars["loss"],
        scalars["lr"],
        scalars["grad_norm"],
        scalars["img_per_s"],
        scalars["data_wait"],
        scalars["eta_hours"],
    )

"""Where training metrics go: TensorBoard event files, a JSONL file and the console (process 0 only)."""

from __future__ import annotations

import json
import logging as logging_lib
import pathlib
import time

import jax
from absl import logging


class MetricWriter:
    """Scalars to WORKDIR/tensorboard (tensorboardX), WORKDIR/metrics.jsonl, and a progress bar.

    On processes other than 0 every call does nothing, so callers need no checks.
    """

    def __init__(self, workdir: str | pathlib.Path, total_steps: int, initial_step: int = 0):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter
        from tqdm import tqdm

        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self._tensorboard = SummaryWriter(str(workdir / "tensorboard"))
        self._jsonl = (workdir / "metrics.jsonl").open("a")
        self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True)

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
        if prefix == "train":
            shown = {k: f"{v:.4g}" for k, v in scalars.items() if k in ("loss", "img_per_s", "lr")}
            self._bar.set_postfix(shown, refresh=False)
        else:
            logging.info("step %d %s: %s", step, prefix, scalars)

    def advance(self, steps: int = 1) -> None:
        if self.enabled:
            self._bar.update(steps)

    def close(self) -> None:
        if self.enabled:
            self._bar.close()
            self._tensorboard.close()
            self._jsonl.close()


class _QuietLibraries(logging_lib.Filter):
    """Drops INFO chatter of orbax, grain and jax (every checkpoint step logs dozens of lines)."""

    NOISY = ("/orbax/", "/grain/", "/jax/_src/")

    def filter(self, record: logging_lib.LogRecord) -> bool:
        return record.levelno >= logging_lib.WARNING or not any(
            part in record.pathname for part in self.NOISY
        )


def quiet_library_logs() -> None:
    logging.get_absl_handler().addFilter(_QuietLibraries())

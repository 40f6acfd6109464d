"""Log lines: ours at INFO, other libraries' only from WARNING up, on the console and in train.log.

orbax, grain and jax log dozens of INFO lines per checkpoint or pipeline; they come back with absl's
`--verbosity=1` (`-v 1`).
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import Iterator

from absl import logging as absl_logging

_OURS = (
    str(pathlib.Path(__file__).resolve().parent),
    str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"),
)


# Warnings that only restate what we asked for (evaluate/predict open checkpoints read-only).
_EXPECTED = ("Given directory is read only",)


class OwnInfo(logging.Filter):
    """Passes WARNING and above from anywhere, lower levels only from hrnet_jax (and benchmarks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.pathname.startswith(_OURS):
            return True
        return record.levelno >= logging.WARNING and not str(record.msg).startswith(_EXPECTED)


def quiet_libraries(verbosity: int = 0) -> None:
    """Filters the console (absl's handler) unless `verbosity` > 0."""
    handler = absl_logging.get_absl_handler()
    if verbosity <= 0 and not any(isinstance(f, OwnInfo) for f in handler.filters):
        handler.addFilter(OwnInfo())


@contextlib.contextmanager
def to_file(path: str | pathlib.Path, enabled: bool = True) -> Iterator[None]:
    """Copies the console's lines (same filter, same format) into `path`, appending, while open."""
    if not enabled:
        yield
        return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(absl_logging.PythonFormatter())
    handler.addFilter(OwnInfo())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()

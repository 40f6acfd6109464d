"""Shared by the benchmark scripts: the machine's description and BENCHMARKS.md rows."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import sys

# Where `--append` adds rows; the BENCHMARKS_MD environment variable points it elsewhere (tests).
BENCHMARKS_MD = pathlib.Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> str:
    """CPU model and core count, or the accelerator's name when JAX runs on one."""
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        return f"{jax.device_count()}x {device.device_kind}"
    model = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def report(result: dict, append: bool) -> None:
    """Prints the result as the last JSON line; with `append`, adds a row to BENCHMARKS.md."""
    if append:
        module = f"benchmarks.{pathlib.Path(sys.argv[0]).stem}"
        command = " ".join(["python -m", module, *sys.argv[1:]])
        row = f"| {datetime.date.today()} | `{command}` | {machine()} | `{json.dumps(result)}` |\n"
        with pathlib.Path(os.environ.get("BENCHMARKS_MD", BENCHMARKS_MD)).open("a") as f:
            f.write(row)
    print(json.dumps(result), flush=True)

"""XLA and JAX speed settings, in one place, applied before any backend starts.

- Persistent compilation cache (all platforms): a restarted or resumed run, and every process of a
  multi-host run after the first, skips the minutes of compiling HRNet's step.
- GPU: the latency-hiding scheduler overlaps the gradient all-reduce with the backward pass;
  autotuning stays at XLA's default level (4). XLA_FLAGS the user already set win.
- Matmul/conv precision: "default" lets A100/H100 run fp32 convolutions as TF32 (what PyTorch's
  cuDNN does for convs too); "highest" for exact fp32, e.g. when comparing numerics.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import jax
import ml_collections

GPU_FLAGS = ("--xla_gpu_enable_latency_hiding_scheduler=true",)


def configure(xla: ml_collections.ConfigDict) -> None:
    """Applies `config.xla`; call before the first JAX computation."""
    if xla.compilation_cache_dir:
        path = pathlib.Path(xla.compilation_cache_dir).expanduser()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # the cache is trusted code
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_default_matmul_precision", xla.matmul_precision)
    if xla.gpu_flags and _cuda_plugin_installed():
        existing = os.environ.get("XLA_FLAGS", "")
        names = {f.split("=")[0] for f in existing.split()}
        added = [f for f in GPU_FLAGS if f.split("=")[0] not in names]
        os.environ["XLA_FLAGS"] = " ".join([existing, *added]).strip()


def _cuda_plugin_installed() -> bool:
    return any(importlib.util.find_spec(m) for m in ("jax_cuda12_plugin", "jax_cuda13_plugin"))

"""Small shared builders for the tests."""

import os
import pathlib
import subprocess
import sys

import jax
import ml_collections

from hrnet_jax import config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, check: bool = True, timeout: float = 900, **env):
    """Runs `python -m module args` from the repo root, sharing the tests' compilation cache."""
    environ = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
        "JAX_PLATFORMS": "cpu",
        **{k: str(v) for k, v in env.items()},
    }
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"python -m {module} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def tiny_model_config(dtype: str = "float32") -> ml_collections.ConfigDict:
    """Every structural feature of HRNet (4 branches, all fuse paths, bottleneck stage 1) at width 4."""
    m = config_lib.hrnet_model(4)
    m.stem_channels = 8
    m.stage1.num_blocks = (1,)
    m.stage1.num_channels = (8,)
    for name in ("stage2", "stage3", "stage4"):
        m[name].num_blocks = (1,) * m[name].num_branches
        m[name].num_modules = 1
    m.stage4.num_modules = 2  # a multi-scale module followed by the single-output one
    m.dtype = dtype
    return m

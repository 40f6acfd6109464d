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
    environ = subprocess_env(**env)
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


TINY_CONFIG = ROOT / "tests" / "tiny_config.py"


def tiny_model_config(dtype: str = "float32") -> ml_collections.ConfigDict:
    """Every structural feature of HRNet (4 branches, all fuse paths, bottleneck stage 1) at width 4."""
    model = config_lib.load_config(TINY_CONFIG).model
    model.dtype = dtype
    return model


def tiny_train_config(data_root, num_epochs: int) -> ml_collections.ConfigDict:
    config = config_lib.load_config(TINY_CONFIG)
    config.data.root = str(data_root)
    config.train.num_epochs = num_epochs
    return config


def subprocess_env(**env) -> dict[str, str]:
    """The environment for a subprocess that shares the tests' compilation cache and CPU platform."""
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
        "JAX_PLATFORMS": "cpu",
        **{k: str(v) for k, v in env.items()},
    }


def restore_variables(config, workdir, best: bool = False):
    """The params and BN statistics of WORKDIR's latest (or best) checkpoint, and its step."""
    from hrnet_jax import checkpoint, models

    abstract = models.abstract_variables(models.create_model(config.model), config.input_size)
    with checkpoint.Checkpoints.read(workdir, best) as checkpoints:
        variables, step = checkpoints.restore_variables(abstract, config)
    return variables, step


def logged_losses(workdir) -> list[float]:
    """The training losses a run logged in WORKDIR/metrics.jsonl, in order."""
    import json

    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["train/loss"] for x in lines if '"train/loss"' in x]

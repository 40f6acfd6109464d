"""Test setup: 8 simulated CPU devices, a persistent compilation cache, and the shared real data."""

import os
import pathlib

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
COCO_MINI = ROOT.parent / "shared" / "data" / "coco_mini"

# Must happen before any backend starts: the sharding tests need several devices.
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_platforms", "cpu")
# Compiling an HRNet step takes tens of seconds on CPU; reuse compilations across tests and runs.
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache")),
)


@pytest.fixture(scope="session")
def coco_mini() -> pathlib.Path:
    """The 4 real COCO val2017 images of ../shared/data/coco_mini; skips where it is absent."""
    if not (COCO_MINI / "annotations" / "person_keypoints_mini.json").is_file():
        pytest.skip(f"real COCO sample data not found at {COCO_MINI} (the ../shared checkout)")
    return COCO_MINI


@pytest.fixture(scope="session", autouse=True)
def _absl_flags_parsed():
    """grain's worker processes read absl flags, which pytest never parses."""
    from absl import flags

    flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic COCO-format set (the demo's generator), made once per session."""
    from hrnet_jax.data import synthetic

    root = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(root, num_train_images=24, num_val_images=8, seed=0, image_size=(96, 128))
    return root


@pytest.fixture(scope="session")
def trained(synthetic_root, tmp_path_factory):
    """30+ steps of a tiny HRNet on 8 devices, evaluated at the end (shared by several tests)."""
    from testing_utils import tiny_train_config

    from hrnet_jax import train_loop

    workdir = tmp_path_factory.mktemp("trained")
    config = tiny_train_config(synthetic_root, num_epochs=6)
    result = train_loop.train_and_evaluate(config, workdir)
    return config, workdir, result

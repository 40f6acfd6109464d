"""Smoke tests of benchmarks/: each script runs at a tiny size and reports its fields (no timings)."""

import json

import pytest
from testing_utils import TINY_CONFIG, run_module


def _last_json_line(module: str, *args: str, **env) -> dict:
    out = run_module(module, f"--config={TINY_CONFIG}", *args, **env).stdout
    return json.loads(out.strip().splitlines()[-1])


def _assert_positive(result: dict, keys: list[str]) -> None:
    for key in keys:
        assert key in result, f"{key} missing from {result}"
        assert result[key] > 0, f"{key}={result[key]} in {result}"


def test_train_step_benchmark_reports_throughput_flops_and_mfu():
    result = _last_json_line(
        "benchmarks.train_step", "--batch_per_device=2", "--steps=1", "--peak_tflops=1"
    )
    _assert_positive(result, ["compile_s", "step_s", "img_per_s", "flops_per_img", "tflops", "mfu"])
    assert result["batch_per_device"] == 2 and result["config"] == [64, 64]


@pytest.mark.parametrize("backend", ["jax", "onnxruntime"])
def test_inference_benchmark_reports_plain_and_flip_throughput(backend):
    result = _last_json_line(
        "benchmarks.inference", "--batch=2", "--steps=1", f"--backend={backend}"
    )
    _assert_positive(result, ["img_per_s", "img_per_s_flip"])
    assert result["backend"] == backend


@pytest.mark.parametrize("reduced", ["true", "false"])
def test_pipeline_benchmark_reports_samples_per_core(coco_mini, reduced):
    result = _last_json_line(
        "benchmarks.pipeline",
        f"--data={coco_mini}",
        "--batches=2",
        "--batch_size=4",
        f"--reduced_decode={reduced}",
    )
    _assert_positive(result, ["samples_per_s_per_core"])
    assert result["reduced_decode"] is (reduced == "true")


def test_evaluate_benchmark_reports_instances_per_second_and_its_parts(coco_mini):
    result = _last_json_line("benchmarks.evaluate", f"--data={coco_mini}")
    _assert_positive(result, ["instances_per_s", "predict_s", "decode_s", "nms_s", "cocoeval_s"])
    assert result["instances"] == 118  # every detector box of coco_mini


def test_pipeline_benchmark_reads_the_tfds_source_and_its_size(coco_mini, tmp_path):
    result = _last_json_line(
        "benchmarks.pipeline",
        f"--data={coco_mini}",
        "--batches=2",
        "--batch_size=4",
        f"--tfds_data_dir={tmp_path}",
    )
    _assert_positive(result, ["samples_per_s_per_core", "bytes_per_instance"])
    # coco_mini's 12 persons carry their images' bytes: at least the 4 JPEGs over 12 instances.
    jpeg_bytes = sum(p.stat().st_size for p in (coco_mini / "images").iterdir())
    assert result["source"] == "tfds" and result["bytes_per_instance"] > jpeg_bytes / 12

"""Every `python -m hrnet_jax.*` entry point: a user's mistake is one `error:` line naming the thing,
a non-zero exit and no traceback. Each case fails before any compilation."""

import cv2
import numpy as np
import pytest
from testing_utils import TINY_CONFIG, run_module

TINY = f"--config={TINY_CONFIG}"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("image") / "person.jpg"
    cv2.imwrite(str(path), np.full((64, 48, 3), 128, np.uint8))
    return path


CASES = {
    "main": [
        ((TINY, "--workdir={tmp}", "--config.trian.num_epochs=3"), "'train.num_epochs'"),
        ((TINY, "--workdir={tmp}", "--config.model.dtype=bf16"), "model.dtype is 'bf16'"),
        ((TINY, "--workdir={tmp}", "--config.train.num_epochs=many"), "train.num_epochs=many"),
        (("--config=configs/nope.py", "--workdir={tmp}"), "configs/nope.py does not exist"),
        ((TINY,), "--workdir is required"),
        (
            (
                TINY,
                "--workdir={tmp}",
                "--config.input_size=(256,192)",
                "--config.heatmap_size=(32,24)",
            ),
            "input_size (256, 192) is not 4x heatmap_size (32, 24)",
        ),
        ((TINY, "--workdir={tmp}", "--config.data.root={tmp}/none"), "COCO train not found"),
        ((TINY, "--workdir=/etc/hostname/run"), "workdir /etc/hostname/run is not writable"),
        (
            (
                TINY,
                "--workdir={tmp}",
                "--config.data.format=tfds",
                "--config.data.tfds_data_dir={tmp}/no",
            ),
            "build it with python -m hrnet_jax.data.pack --config=... --data_dir={tmp}/no",
        ),
    ],
    "evaluate": [
        ((TINY, "--workdir={tmp}", "--config.eval.flip_tset=false"), "'eval.flip_test'"),
        ((TINY, "--workdir={tmp}"), "no complete checkpoint in {tmp}/checkpoints"),
        (("--results={tmp}/r.json", "--annotations={tmp}/gt.json"), "{tmp}/r.json does not exist"),
        (("--results={tmp}/r.json",), "--results needs --annotations"),
        (
            ("--results=r.json", "--annotations=gt.json", "--keypoints=mpii"),
            "mpii's pckh comes from",
        ),
        (("--workdir={tmp}",), "give --config and --workdir"),
    ],
    "predict": [
        (
            ("--workdir={tmp}", "--image={tmp}/missing.jpg", "--out={tmp}/o.png"),
            "cannot read {tmp}/missing.jpg: it does not exist",
        ),
        (("--workdir={tmp}", "--image={image}", "--box=1,2,3", "--out={tmp}/o.png"), "got '1,2,3'"),
        (
            ("--workdir={tmp}", "--image={image}", "--out={tmp}/o.png"),
            "no complete checkpoint in {tmp}/checkpoints",
        ),
        (("--workdir={tmp}", "--out={tmp}/o.png"), "give one of --image, --images or --video"),
        (
            ("--workdir={tmp}", "--images={tmp}/none", "--out={tmp}/o"),
            "--images={tmp}/none names no",
        ),
        (
            ("--model={image}", "--backend=jax", "--video={image}", "--out={tmp}/o"),
            "--backend=jax runs a checkpoint",
        ),
        (
            ("--workdir={tmp}", "--model={image}", "--image={image}", "--out={tmp}/o.png"),
            "give either --workdir (a checkpoint) or --model",
        ),
    ],
    "export": [
        (("--workdir={tmp}", "--format=onnx"), "no complete checkpoint in {tmp}/checkpoints"),
        (("--workdir={tmp}", "--format=tflite"), "--format"),
        (("--workdir={tmp}",), "--format is required"),
    ],
    "data.download": [
        (("--data_dir={tmp}", "--splits=train2099"), "unknown splits ['train2099']"),
        (("--splits=val2017",), "--data_dir is required"),
        (("--data_dir={tmp}", "--speed=fast"), "speed"),
    ],
    "data.pack": [
        ((TINY, "--data_dir={tmp}", "--config.data.rot=x"), "'data.root'"),
        ((TINY, "--data_dir={tmp}", "--config.data.root={tmp}/none"), "COCO train not found"),
        ((TINY,), "--data_dir is required"),
    ],
    "data.make_synthetic": [
        (("--out={tmp}/s", "--image_height=20"), "too small"),
        (("--out={tmp}/s", "--num_images=-1"), "num_train_images"),
        (("--num_images=3",), "--out is required"),
    ],
    "tools.import_torch": [
        ((TINY, "--src={tmp}/w.pth", "--kind=pose", "--out={tmp}/o"), "{tmp}/w.pth"),
        ((TINY, "--src={tmp}/w.pth", "--kind=dog", "--out={tmp}/o"), "--kind"),
        (
            (TINY, "--src={tmp}/w.pth", "--kind=pose", "--out={tmp}/o", "--config.modl.dtype=x"),
            "'model.dtype'",
        ),
    ],
    "tools.summary": [
        ((TINY, "--config.model.stage2.num_branchs=2"), "'model.stage2.num_branches'"),
        (("--config=configs/none.py",), "configs/none.py does not exist"),
        ((TINY, "--config.codec.decoding=bogus"), "codec.decoding is 'bogus'"),
    ],
}


@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [(m, args, expected) for m, cases in CASES.items() for args, expected in cases],
    ids=[f"{m}-{i}" for m, cases in CASES.items() for i in range(len(cases))],
)
def test_a_mistake_is_one_error_line_without_a_traceback(module, args, expected, tmp_path, image):
    fill = {"tmp": tmp_path, "image": image}
    result = run_module(f"hrnet_jax.{module}", *(a.format(**fill) for a in args), check=False)
    output = result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert len(errors) == 1 and expected.format(**fill) in errors[0], output

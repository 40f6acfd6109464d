"""hrnet_jax.data.download against a loopback HTTP server that speaks Range and drops transfers."""

import hashlib
import http.server
import io
import json
import pathlib
import re
import subprocess
import sys
import threading
import zipfile

import cv2
import numpy as np
import pytest

from hrnet_jax.data import fetch as download

ROOT = pathlib.Path(__file__).resolve().parents[1]
DET_NAME = "COCO_val2017_detections_AP_H_56_person.json"
TRAIN_IMAGES = ("000000000009.jpg", "000000000025.jpg")
VAL_IMAGES = ("000000000139.jpg", "000000000285.jpg", "000000000632.jpg")


def _jpeg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _annotations(split: str) -> bytes:
    return json.dumps({"info": {"split": split}, "images": [], "annotations": []}).encode()


# What the archives hold, by final path under the data dir.
EXTRACTED = {
    **{f"images/train2017/{n}": _jpeg(i) for i, n in enumerate(TRAIN_IMAGES)},
    **{f"images/val2017/{n}": _jpeg(10 + i) for i, n in enumerate(VAL_IMAGES)},
    **{f"annotations/person_keypoints_{s}.json": _annotations(s) for s in download.SPLITS},
}
SERVED = {  # URL path -> bytes, in the real archives' structure
    "/zips/train2017.zip": _zip(
        {k.removeprefix("images/"): v for k, v in EXTRACTED.items() if "train2017/" in k}
    ),
    "/zips/val2017.zip": _zip(
        {k.removeprefix("images/"): v for k, v in EXTRACTED.items() if "images/val2017/" in k}
    ),
    "/annotations/annotations_trainval2017.zip": _zip(
        {
            "annotations/instances_val2017.json": b"{}",
            "annotations/captions_val2017.json": b"{}",
            **{k: v for k, v in EXTRACTED.items() if k.startswith("annotations/")},
        }
    ),
    f"/dets/{DET_NAME}": json.dumps([{"image_id": 139, "score": 0.9}]).encode(),
}
CHECKSUMS = {
    pathlib.PurePosixPath(path).name: download.Checksum(len(data), hashlib.sha256(data).hexdigest())
    for path, data in SERVED.items()
    if path.endswith(".zip")
}


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET with `Range: bytes=N-`; the server's `cut` makes the next response stop after K bytes."""

    def do_GET(self):
        server = self.server
        rng = self.headers.get("Range")
        server.requests.append((self.path, rng))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, status = 0, 200
        if rng and not server.ignore_range:
            start, status = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)), 206
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = server.cut.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])  # HTTP/1.0: closing ends the body

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.cut, httpd.ignore_range = dict(SERVED), [], {}, False
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _get(server, tmp_path, **kwargs):
    kwargs = {"base_url": server.url, "checksums": CHECKSUMS, "retries": 0, **kwargs}
    return download.download_coco(tmp_path, **kwargs)


def _assert_layout(root: pathlib.Path, splits=download.SPLITS):
    for rel, data in EXTRACTED.items():
        if rel.startswith("annotations/") or rel.split("/")[1] in splits:
            assert (root / rel).read_bytes() == data, rel
    assert not list(root.rglob("*.part"))


def test_download_gives_loader_layout(server, tmp_path):
    assert _get(server, tmp_path, det_url=f"{server.url}/dets/{DET_NAME}") == tmp_path
    _assert_layout(tmp_path)
    det = tmp_path / "person_detection_results" / DET_NAME
    assert det.read_bytes() == SERVED[f"/dets/{DET_NAME}"]
    # Only the keypoint annotations are kept; archives go once extracted; a marker per archive.
    assert sorted(p.name for p in (tmp_path / "annotations").iterdir()) == [
        "person_keypoints_train2017.json",
        "person_keypoints_val2017.json",
    ]
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [
        "annotations_trainval2017.zip.extracted",
        "train2017.zip.extracted",
        "val2017.zip.extracted",
    ]
    assert all(rng is None for _, rng in server.requests)


def test_rerun_after_success_requests_nothing(server, tmp_path):
    det_url = f"{server.url}/dets/{DET_NAME}"
    _get(server, tmp_path, det_url=det_url, keep_archives=True)
    assert (tmp_path / "downloads" / "val2017.zip").read_bytes() == SERVED["/zips/val2017.zip"]
    server.requests.clear()
    _get(server, tmp_path, det_url=det_url, keep_archives=True)
    _get(server, tmp_path, det_url=det_url)
    assert server.requests == []
    _assert_layout(tmp_path)


def test_interrupted_download_resumes_with_range(server, tmp_path):
    size = len(SERVED["/zips/val2017.zip"])
    cut = size // 3
    server.cut["/zips/val2017.zip"] = cut
    with pytest.raises(download.InterruptedTransfer, match=f"byte {cut} of {size}"):
        _get(server, tmp_path, splits=["val2017"])
    part = tmp_path / "downloads" / "val2017.zip.part"
    assert part.stat().st_size == cut
    assert not (tmp_path / "images" / "val2017").exists()

    server.requests.clear()
    _get(server, tmp_path, splits=["val2017"])
    assert server.requests == [("/zips/val2017.zip", f"bytes={cut}-")]
    _assert_layout(tmp_path, splits=["val2017"])


def test_retries_resume_within_one_call(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    cut = 100
    server.cut["/zips/val2017.zip"] = cut
    _get(server, tmp_path, splits=["val2017"], retries=2)
    val = [rng for path, rng in server.requests if path == "/zips/val2017.zip"]
    assert val == [None, f"bytes={cut}-"]
    _assert_layout(tmp_path, splits=["val2017"])


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    part = tmp_path / "downloads" / "val2017.zip.part"
    part.parent.mkdir(parents=True)
    stale = b"stale bytes that are not a prefix of the archive"
    part.write_bytes(stale)
    server.ignore_range = True  # answers 200 with the whole file
    _get(server, tmp_path, splits=["val2017"])
    assert server.requests[-1] == ("/zips/val2017.zip", f"bytes={len(stale)}-")
    _assert_layout(tmp_path, splits=["val2017"])


def test_complete_part_is_verified_not_refetched(server, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    # Published size reached: verified and renamed without a request.
    zip_bytes = SERVED["/zips/val2017.zip"]
    (downloads / "val2017.zip.part").write_bytes(zip_bytes)
    out = download.fetch(
        f"{server.url}/zips/val2017.zip",
        downloads / "val2017.zip",
        part_dir=downloads,
        checksums=CHECKSUMS,
    )
    assert out.read_bytes() == zip_bytes and server.requests == []
    # No published size: the server answers 416 to `bytes=<size>-`, which means complete.
    det = SERVED[f"/dets/{DET_NAME}"]
    (downloads / f"{DET_NAME}.part").write_bytes(det)
    out = download.fetch(
        f"{server.url}/dets/{DET_NAME}",
        tmp_path / "dets" / DET_NAME,
        part_dir=downloads,
        checksums=CHECKSUMS,
    )
    assert out.read_bytes() == det
    assert server.requests == [(f"/dets/{DET_NAME}", f"bytes={len(det)}-")]


@pytest.mark.parametrize("wrong", ["sha256", "size"])
def test_checksum_mismatch_raises_and_deletes(server, tmp_path, wrong):
    good = CHECKSUMS["val2017.zip"]
    bad = (
        download.Checksum(good.size, "0" * 64)
        if wrong == "sha256"
        else download.Checksum(good.size + 1, good.sha256)
    )
    with pytest.raises(download.ChecksumError, match="val2017.zip") as error:
        _get(server, tmp_path, splits=["val2017"], checksums={**CHECKSUMS, "val2017.zip": bad})
    if wrong == "sha256":
        assert "0" * 64 in str(error.value) and good.sha256 in str(error.value)
    assert not list((tmp_path / "downloads").glob("val2017.zip*"))
    assert not (tmp_path / "images" / "val2017").exists()


@pytest.mark.parametrize("bad_name", ["../evil.txt", "val2017/../../evil.txt", "{abs}/evil.txt"])
def test_zip_path_traversal_is_refused(tmp_path, bad_name):
    bad_name = bad_name.format(abs=tmp_path / "outside")  # absolute, yet inside tmp_path
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip({"val2017/ok.jpg": b"ok", bad_name: b"evil"}))
    dest, marker = tmp_path / "data" / "images", tmp_path / "bad.zip.extracted"
    with pytest.raises(download.UnsafeArchiveError, match=re.escape(repr(bad_name))):
        download.extract(archive, dest, marker=marker)
    assert not dest.exists() and not marker.exists()  # refused whole, before writing anything
    assert not list(tmp_path.rglob("evil.txt"))


def test_cli(server, tmp_path):
    table = tmp_path / "checksums.tsv"  # tfds url_checksums format: URL size sha256
    table.write_text(
        "".join(f"{server.url}/x/{n} {c.size} {c.sha256}\n" for n, c in CHECKSUMS.items())
    )
    data = tmp_path / "coco"
    args = [sys.executable, "-m", "hrnet_jax.data.download", f"--data_dir={data}"]
    args += [f"--base_url={server.url}", f"--checksums_file={table}", "--splits=val2017"]
    args += [f"--det_url={server.url}/dets/{DET_NAME}", "--keep_archives"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    _assert_layout(data, splits=["val2017"])
    assert not (data / "images" / "train2017").exists()
    assert (data / "downloads" / "val2017.zip").is_file()
    assert (data / "person_detection_results" / DET_NAME).is_file()

    # Without the test's table the built-in COCO checksums apply: a clean error, exit status 1.
    args = [sys.executable, "-m", "hrnet_jax.data.download", f"--data_dir={tmp_path / 'other'}"]
    result = subprocess.run(
        [*args, f"--base_url={server.url}", "--splits="], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "annotations_trainval2017.zip" in result.stderr and "252907541" in result.stderr


def test_missing_coco_message(tmp_path):
    message = download.missing_coco_message(str(tmp_path / "coco"), "val2017")
    assert str(tmp_path / "coco" / "annotations" / "person_keypoints_val2017.json") in message
    assert str(tmp_path / "coco" / "images" / "val2017") in message
    assert f"python -m hrnet_jax.data.download --data_dir {tmp_path / 'coco'}" in message

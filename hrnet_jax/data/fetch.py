"""Fetches COCO 2017 keypoints data into the layout the loader expects; the command line is
`hrnet_jax.data.download`:

    python -m hrnet_jax.data.download --data_dir data/coco [--splits=train2017,val2017]
        [--det_url URL] [--base_url http://images.cocodataset.org] [--keep_archives]

gives DIR/images/{split}/*.jpg, DIR/annotations/person_keypoints_{split}.json and, with --det_url,
DIR/person_detection_results/<basename of the URL>. Downloads go to DIR/downloads/<name>.part and
resume with an HTTP Range request after an interruption; a file is renamed to its final name only
after its size and (where published) sha256 check out. Extraction is idempotent: a marker file per
archive in DIR/downloads makes reruns skip finished archives without touching the network.
Archives are deleted once extracted unless --keep_archives: JPEGs do not compress, so keeping
them doubles the ~20 GB on disk, and after a verified extraction they are only a re-extract cache.

Plain urllib, not tensorflow-datasets: tfds would pull in TensorFlow (hundreds of MB) for what is
a streamed GET plus a hash; only its published checksums are used (see COCO_CHECKSUMS).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import pathlib
import shlex
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence

from absl import logging

from hrnet_jax.errors import UserError

COCO_BASE_URL = "http://images.cocodataset.org"
SPLITS = ("train2017", "val2017")
SPLIT_ARCHIVE = "zips/{split}.zip"  # relative to the base URL; holds {split}/*.jpg
ANNOTATIONS_ARCHIVE = "annotations/annotations_trainval2017.zip"  # holds annotations/*.json
CHUNK_SIZE = 1 << 20
TIMEOUT_S = 60.0


@dataclasses.dataclass(frozen=True)
class Checksum:
    """Published size in bytes and sha256 hex digest of one file."""

    size: int
    sha256: str


# Sizes and sha256 of the official COCO 2017 files, as published by tensorflow-datasets in
# tensorflow_datasets/url_checksums/coco2017.txt (identical entries in url_checksums/coco.txt).
COCO_CHECKSUMS: Mapping[str, Checksum] = {
    "train2017.zip": Checksum(
        19336861798, "69a8bb58ea5f8f99d24875f21416de2e9ded3178e903f1f7603e283b9e06d929"
    ),
    "val2017.zip": Checksum(
        815585330, "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05"
    ),
    "annotations_trainval2017.zip": Checksum(
        252907541, "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268"
    ),
}


class DownloadError(UserError, RuntimeError):
    """A file could not be fetched (see the subclasses for what a rerun does)."""


class InterruptedTransfer(DownloadError):
    """The connection broke or the server failed (5xx); the .part stays and a rerun resumes it."""


class ChecksumError(DownloadError):
    """A downloaded file does not match its published size or sha256 (it has been deleted)."""


class UnsafeArchiveError(UserError, ValueError):
    """A zip entry would be written outside the extraction folder."""


def missing_coco_message(data_dir: str, split: str) -> str:
    """What training/eval raise when `split` is missing: where it looked and how to fetch it."""
    root = pathlib.Path(data_dir)
    annotations = (root / "annotations" / f"person_keypoints_{split}.json").absolute()
    images = (root / "images" / split).absolute()
    command = f"python -m hrnet_jax.data.download --data_dir {shlex.quote(str(data_dir))}"
    return (
        f"COCO {split} not found: looked for {annotations} and {images}. Fetch COCO 2017 "
        f"(about 20 GB) with:\n  {command}\nor point config.data.root at an existing copy."
    )


def load_checksums(path: str | os.PathLike) -> dict[str, Checksum]:
    """Reads `URL-or-name size sha256` lines (tfds url_checksums format) keyed by file name."""
    table = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            url, size, sha256 = line.split()
            table[_file_name(url)] = Checksum(int(size), sha256.lower())
    return table


def _file_name(url: str) -> str:
    name = pathlib.PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise ValueError(f"cannot take a file name from {url!r}")
    return name


def _hash_file(path: pathlib.Path):  # -> a hashlib sha256 object, fed with the file's bytes
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
    return hasher


def _transfer(url: str, part: pathlib.Path, expected: Checksum | None, timeout: float) -> str:
    """Appends the rest of `url` to `part` (a Range request when part is non-empty); its sha256."""
    offset = part.stat().st_size if part.exists() else 0
    if expected is not None and offset > expected.size:
        part.unlink()  # longer than the published file: it cannot be a prefix of it
        offset = 0
    if expected is not None and offset == expected.size:
        return _hash_file(part).hexdigest()  # finished before, not yet verified
    headers = {"User-Agent": "hrnet_jax-download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing after `offset`: complete if the server agrees
            total = (e.headers.get("Content-Range") or "").rpartition("/")[2]
            if total == str(offset):
                return _hash_file(part).hexdigest()
            logging.warning("%s: server refused to resume at byte %d; restarting", url, offset)
            part.unlink()
            return _transfer(url, part, expected, timeout)
        error = InterruptedTransfer if e.code >= 500 else DownloadError
        raise error(f"{url}: HTTP {e.code} {e.reason}") from e
    with response:
        if offset and response.status == 206:
            start = (response.headers.get("Content-Range") or "").removeprefix("bytes ")
            if not start.startswith(f"{offset}-"):
                part.unlink()  # the server's idea of the file differs: start over
                raise InterruptedTransfer(f"{url}: asked for bytes {offset}-, got {start!r}")
            hasher = _hash_file(part)
            mode = "ab"
        else:
            if offset:
                logging.warning("%s: server ignored the Range request; restarting from 0", url)
            offset, hasher, mode = 0, hashlib.sha256(), "wb"
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        if expected is not None and total is not None and total != expected.size:
            raise ChecksumError(
                f"{part.name.removesuffix('.part')}: server announces {total} bytes, "
                f"the published size is {expected.size}; not downloading it"
            )
        received = offset
        with part.open(mode) as f, _progress(part.name, total, offset) as bar:
            while chunk := response.read(CHUNK_SIZE):
                f.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise InterruptedTransfer(
            f"{url}: transfer cut short at byte {received} of {total}; rerun to resume from {part}"
        )
    return hasher.hexdigest()


def _progress(name: str, total: int | None, initial: int):
    from tqdm import tqdm

    # disable=None: a bar on terminals only, so logs and CI output stay clean.
    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True, disable=None)


# Failures worth another try. HTTPError (a URLError) never gets here: _transfer converts it.
_RETRYABLE = (
    InterruptedTransfer,
    urllib.error.URLError,
    ConnectionError,
    TimeoutError,
    http.client.HTTPException,
)


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    part_dir: str | os.PathLike,
    checksums: Mapping[str, Checksum] = COCO_CHECKSUMS,
    retries: int = 3,
    timeout: float = TIMEOUT_S,
) -> pathlib.Path:
    """Downloads `url` to `dest` via `part_dir/<name>.part`, resuming and verifying it.

    A file named in `checksums` must match its size and sha256 (a mismatch deletes the part and
    raises ChecksumError); others are checked against the announced Content-Length only and their
    sha256 is logged. Network failures are retried `retries` times, each resuming where it stopped.
    An existing `dest` is trusted (it was verified before it got its name) and nothing is fetched.
    """
    dest = pathlib.Path(dest)
    if dest.exists():
        return dest
    name = dest.name
    part = pathlib.Path(part_dir) / f"{name}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    expected = checksums.get(name)
    for attempt in range(retries + 1):
        try:
            digest = _transfer(url, part, expected, timeout)
            break
        except ChecksumError:
            part.unlink(missing_ok=True)
            raise
        except _RETRYABLE as e:
            if attempt == retries:
                if isinstance(e, DownloadError):
                    raise
                raise InterruptedTransfer(f"{url}: {e}; rerun to resume from {part}") from e
            logging.warning("%s: %s; retrying (%d/%d)", url, e, attempt + 1, retries)
            time.sleep(min(2.0**attempt, 30.0))
    size = part.stat().st_size
    if expected is not None and (size, digest) != (expected.size, expected.sha256):
        part.unlink()
        raise ChecksumError(
            f"{name}: checksum mismatch, deleted the download: expected sha256 {expected.sha256} "
            f"({expected.size} bytes), got sha256 {digest} ({size} bytes)"
        )
    if expected is None:  # the size was checked against Content-Length in _transfer
        logging.info("%s: %d bytes, sha256 %s (no published checksum)", name, size, digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)
    return dest


def _safe_target(dest: pathlib.Path, member: str) -> pathlib.Path:
    pure = pathlib.PurePosixPath(member.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise UnsafeArchiveError(f"refusing zip entry {member!r}: absolute path or '..'")
    target = (dest / pure).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(f"refusing zip entry {member!r}: it leaves {dest}")
    return target


def extract(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    marker: str | os.PathLike,
    include: Callable[[str], bool] | None = None,
) -> int:
    """Extracts the entries of `archive` that `include` accepts into `dest`; how many it wrote.

    Every entry name is checked before anything is written, so an archive with an absolute or
    `..` path is refused whole. `marker` is written last; when it exists this does nothing.
    """
    dest, marker = pathlib.Path(dest), pathlib.Path(marker)
    if marker.exists():
        return 0
    with zipfile.ZipFile(archive) as zf:
        members = [(info, _safe_target(dest, info.filename)) for info in zf.infolist()]
        count = 0
        for info, target in members:
            if info.is_dir() or (include is not None and not include(info.filename)):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_SIZE)
            count += 1
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"archive": pathlib.Path(archive).name, "files": count}) + "\n")
    logging.info("extracted %d files of %s into %s", count, pathlib.Path(archive).name, dest)
    return count


def _keypoints_only(name: str) -> bool:
    # The loader reads person_keypoints_*.json; captions and instances would add ~700 MB unread.
    return pathlib.PurePosixPath(name).name.startswith("person_keypoints_")


def download_coco(
    data_dir: str | os.PathLike,
    splits: Sequence[str] = SPLITS,
    *,
    det_url: str | None = None,
    base_url: str = COCO_BASE_URL,
    keep_archives: bool = False,
    checksums: Mapping[str, Checksum] = COCO_CHECKSUMS,
    retries: int = 3,
    timeout: float = TIMEOUT_S,
) -> pathlib.Path:
    """Fetches and extracts the keypoint annotations, `splits` and the det file into `data_dir`.

    Finished archives (marker present) are skipped without any request, so reruns are cheap.
    """
    root = pathlib.Path(data_dir)
    downloads = root / "downloads"
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise UserError(f"unknown splits {sorted(unknown)}; choose from {SPLITS}")
    base = base_url.rstrip("/")
    jobs: list[tuple[str, pathlib.Path, Callable[[str], bool] | None]] = [
        (f"{base}/{ANNOTATIONS_ARCHIVE}", root, _keypoints_only)
    ]
    jobs += [(f"{base}/{SPLIT_ARCHIVE.format(split=s)}", root / "images", None) for s in splits]
    for url, dest, include in jobs:
        name = _file_name(url)
        marker = downloads / f"{name}.extracted"
        if marker.exists():
            logging.info("%s: already extracted (%s)", name, marker)
            continue
        archive = fetch(
            url,
            downloads / name,
            part_dir=downloads,
            checksums=checksums,
            retries=retries,
            timeout=timeout,
        )
        extract(archive, dest, marker=marker, include=include)
        if not keep_archives:
            archive.unlink()
    if det_url:
        det_dir = root / "person_detection_results"
        fetch(
            det_url,
            det_dir / _file_name(det_url),
            part_dir=downloads,
            checksums=checksums,
            retries=retries,
            timeout=timeout,
        )
    return root

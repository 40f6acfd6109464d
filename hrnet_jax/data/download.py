"""Downloads COCO 2017 keypoints (images, annotations, optionally person detections).

    python -m hrnet_jax.data.download --data_dir=data/coco [--splits=train2017,val2017]
        [--det_url=URL] [--base_url=http://images.cocodataset.org] [--keep_archives]

Resumable and checksum-verified; see hrnet_jax/data/fetch.py.
"""

import zipfile

from absl import flags, logging

from hrnet_jax import cli
from hrnet_jax.data import fetch

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where images/, annotations/ go.")
_SPLITS = flags.DEFINE_list("splits", list(fetch.SPLITS), "Image splits (annotations always).")
_DET_URL = flags.DEFINE_string(
    "det_url", None, "URL of a person-detection results json (person_detection_results/)."
)
_BASE_URL = flags.DEFINE_string("base_url", fetch.COCO_BASE_URL, "COCO server or a mirror.")
_KEEP = flags.DEFINE_bool(
    "keep_archives", False, "Keep the zips in DIR/downloads after extraction (+20 GB)."
)
_CHECKSUMS = flags.DEFINE_string(
    "checksums_file", None, "`name-or-URL size sha256` lines replacing COCO_CHECKSUMS."
)
_RETRIES = flags.DEFINE_integer("retries", 3, "Retries per file after a network error.")


def main() -> None:
    table = _CHECKSUMS.value
    try:
        root = fetch.download_coco(
            _DATA_DIR.value,
            [s for s in _SPLITS.value if s],
            det_url=_DET_URL.value,
            base_url=_BASE_URL.value,
            keep_archives=_KEEP.value,
            checksums=fetch.load_checksums(table) if table else fetch.COCO_CHECKSUMS,
            retries=_RETRIES.value,
        )
    except zipfile.BadZipFile as e:
        cli.fail(f"a downloaded archive is not a valid zip ({e}); delete it and rerun")
    logging.info("COCO is ready in %s", root)


if __name__ == "__main__":
    cli.run(main, required=["data_dir"])

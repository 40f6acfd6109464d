"""HRNet-W32, 256x192 input, COCO keypoints, trained as PaddleDetection's hrnet_w32_256x192.yml.

    python -m hrnet_jax.main --config=configs/w32_256x192.py --workdir=/tmp/w32_256x192

Targets: 28.5M params, 7.12 GMAC; COCO val AP 74.4 (HRN, detector boxes), 76.9 (PD, GT boxes).
"""

from hrnet_jax import config_lib


def get_config():
    return config_lib.hrnet_w(32, input_size=(256, 192), sigma=2.0)

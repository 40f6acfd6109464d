"""HRNet-W32, 384x288 input, COCO keypoints: the PaddleDetection reference (hrnet_w32_384x288.yml).

    python -m hrnet_jax.main --config=configs/w32_384x288.py --workdir=/tmp/w32_384x288

Targets: 28.5M params, 16.02 GMAC; COCO val AP 75.8 (HRN, detector boxes), 76.1 (MMP), 77.8 (PD, GT
boxes). PD keeps sigma 2 at this size; HRN and MMP use 3 (`--config.codec.sigma=3`).
"""

from hrnet_jax import config_lib


def get_config():
    return config_lib.hrnet_w(32, input_size=(384, 288), sigma=2.0)

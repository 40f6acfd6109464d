"""HRNet-W48, 384x288 input, COCO keypoints (HRN w48_384x288_adam_lr1e-3.yaml's architecture).

    python -m hrnet_jax.main --config=configs/w48_384x288.py --workdir=/tmp/w48_384x288

Targets: 63.6M params, 32.88 GMAC; COCO val AP 76.3 (HRN, detector boxes).
"""

from hrnet_jax import config_lib


def get_config():
    return config_lib.hrnet_w(48, input_size=(384, 288), sigma=2.0)

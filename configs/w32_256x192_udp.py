"""HRNet-W32, 256x192 input, COCO keypoints, with UDP (Huang et al. 2020) as mmpose's
td-hm_hrnet-w32_udp-8xb64-210e_coco-256x192.py does it; docs/udp.md compares the variants.

    python -m hrnet_jax.main --config=configs/w32_256x192_udp.py --workdir=/tmp/w32_256x192_udp

UDP's crop, UDP's Gaussian targets, UDP's DARK decoding and the flip test without the 1-pixel
shift; the training is configs/w32_256x192.py's (PD's, whose Adam 5e-4, batch 512 and 210 epochs
decayed at 170 and 200 MMP's UDP config shares). Targets: COCO val AP 76.2 (MMP, detector boxes,
against 74.9 for its plain heatmaps); 76.8 against 75.6 (the UDP authors, detector AP 65.1).
"""

from hrnet_jax import config_lib


def get_config():
    c = config_lib.hrnet_w(32, input_size=(256, 192), sigma=2.0)  # MMP UDPHeatmap sigma=2
    c.codec.udp = True  # MMP TopdownAffine(use_udp=True) and UDPHeatmap's stride
    c.codec.unbiased = False  # MMP UDPHeatmap heatmap_type='gaussian': the 3-sigma window
    c.codec.decoding = "dark_udp"  # MMP UDPHeatmap.decode: refine_keypoints_dark_udp
    c.codec.blur_kernel_size = 11  # MMP UDPHeatmap's default blur_kernel_size (the config keeps it)
    c.eval.shift_heatmap = False  # MMP test_cfg shift_heatmap=False
    return c

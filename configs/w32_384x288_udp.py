"""HRNet-W32, 384x288 input, COCO keypoints, with UDP (Huang et al. 2020) as mmpose's
td-hm_hrnet-w32_udp-8xb64-210e_coco-384x288.py does it; docs/udp.md compares the variants.

    python -m hrnet_jax.main --config=configs/w32_384x288_udp.py --workdir=/tmp/w32_384x288_udp

UDP's crop, UDP's Gaussian targets, UDP's DARK decoding and the flip test without the 1-pixel
shift; the training is configs/w32_384x288.py's (PD's, whose Adam 5e-4, batch 512 and 210 epochs
decayed at 170 and 200 MMP's UDP config shares), with MMP's sigma 3. Targets: COCO val AP 76.8
(MMP, detector boxes, against 76.1 for its plain heatmaps); 77.8 against 76.7 (the UDP authors,
detector AP 65.1).
"""

from hrnet_jax import config_lib


def get_config():
    c = config_lib.hrnet_w(32, input_size=(384, 288), sigma=3.0)  # MMP UDPHeatmap sigma=3
    c.codec.udp = True  # MMP TopdownAffine(use_udp=True) and UDPHeatmap's stride
    c.codec.unbiased = False  # MMP UDPHeatmap heatmap_type='gaussian': the 3-sigma window
    c.codec.decoding = "dark_udp"  # MMP UDPHeatmap.decode: refine_keypoints_dark_udp
    c.codec.blur_kernel_size = 11  # MMP UDPHeatmap's default blur_kernel_size (the config keeps it)
    c.eval.shift_heatmap = False  # MMP test_cfg shift_heatmap=False
    c.model.remat = "save_convs"  # as configs/w32_384x288.py: 64 images per v5e chip fit
    return c

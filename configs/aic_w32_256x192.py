"""HRNet-W32 at 256x192 on AI Challenger (14 joints): mmpose's td-hm_hrnet-w32_8xb64-210e_aic-256x192.

    python -m hrnet_jax.main --config=configs/aic_w32_256x192.py --workdir=runs/aic

mmpose's recipe is the COCO one (Adam 5e-4, batch 64 x 8, 210 epochs, x0.1 at 170 and 200, sigma 2),
evaluated on the val split with GT boxes (mmpose's model zoo lists AP 32.3). data.root holds mmpose's
converted files annotations/aic_{train,val}.json and the images under images/{train,val}
(AIC's keypoint_train_images_20170902 and keypoint_validation_images_20170911).
"""

from hrnet_jax import config_lib


def get_config():
    c = config_lib.hrnet_w(32, input_size=(256, 192), sigma=2.0)
    c.data.keypoints = "aic"
    c.model.num_joints = 14
    c.data.root = "data/aic"
    c.data.annotation_file = "annotations/aic_{split}.json"
    c.data.image_dir = "images/{split}"
    c.data.train_split, c.data.val_split = "train", "val"
    return c

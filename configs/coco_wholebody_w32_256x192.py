"""HRNet-W32 at 256x192 on COCO-WholeBody (133 joints): mmpose's
td-hm_hrnet-w32_8xb64-210e_coco-wholebody-256x192.

    python -m hrnet_jax.main --config=configs/coco_wholebody_w32_256x192.py --workdir=runs/wholebody

mmpose's recipe is the COCO one (Adam 5e-4, batch 64 x 8, 210 epochs, x0.1 at 170 and 200, sigma 2)
on COCO 2017's images with the WholeBody v1.0 annotations; evaluation reports whole-body AP and AP
per part (body, foot, face, left and right hand) with the official per-part sigmas. data.root is a
COCO folder (images/{train,val}2017) with annotations/coco_wholebody_{train,val}_v1.0.json.
"""

from hrnet_jax import config_lib


def get_config():
    c = config_lib.hrnet_w(32, input_size=(256, 192), sigma=2.0)
    c.data.keypoints = "coco_wholebody"
    c.model.num_joints = 133
    c.data.annotation_file = "annotations/coco_wholebody_{split}_v1.0.json"
    c.data.image_dir = "images/{split}2017"
    c.data.train_split, c.data.val_split = "train", "val"
    return c

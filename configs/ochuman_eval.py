"""Evaluates a COCO-trained HRNet-W32 (256x192) on OCHuman's heavily occluded persons.

    python -m hrnet_jax.evaluate --config=configs/ochuman_eval.py --workdir=runs/w32_256x192

OCHuman has COCO's 17 joints and no training split here: it measures how a COCO model copes with
occlusion, with GT boxes. data.root holds annotations/ochuman_coco_format_val_range_0.00_1.00.json and images/.
Use the input size (and width) the checkpoint was trained with.
"""

from hrnet_jax import config_lib


def get_config():
    c = config_lib.hrnet_w(32, input_size=(256, 192), sigma=2.0)
    c.data.keypoints = "ochuman"
    c.data.root = "data/ochuman"
    c.data.annotation_file = "annotations/ochuman_coco_format_{split}_range_0.00_1.00.json"
    c.data.image_dir = "images"
    c.data.train_split = c.data.val_split = "val"
    return c

"""HRNet-W32 at 256x192 on CrowdPose (14 joints): mmpose's td-hm_hrnet-w32_8xb64-210e_crowdpose-256x192.

    python -m hrnet_jax.main --config=configs/crowdpose_w32_256x192.py --workdir=runs/crowdpose

mmpose's recipe is the COCO one (Adam 5e-4, batch 64 x 8, 210 epochs, x0.1 at 170 and 200, sigma 2)
on trainval, evaluated on test with its detector's boxes (mmpose's model zoo lists AP 67.5 for it).
data.root holds mmpose's converted files: annotations/mmpose_crowdpose_{trainval,
test}.json, annotations/det_for_crowd_test_0.1_0.5.json and images/.
"""

from hrnet_jax import config_lib


def get_config():
    c = config_lib.hrnet_w(32, input_size=(256, 192), sigma=2.0)
    c.data.keypoints = "crowdpose"
    c.model.num_joints = 14
    c.data.root = "data/crowdpose"
    c.data.annotation_file = "annotations/mmpose_crowdpose_{split}.json"
    c.data.image_dir = "images"
    c.data.train_split, c.data.val_split = "trainval", "test"
    c.eval.use_gt_bbox = False  # MMP: the person detector's boxes
    c.eval.det_file = "annotations/det_for_crowd_test_0.1_0.5.json"
    return c

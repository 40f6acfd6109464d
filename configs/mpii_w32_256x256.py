"""HRNet-W32 at 256x256 on MPII (16 joints, PCKh): the official recipe (HRN experiments/mpii/hrnet/
w32_256x256_adam_lr1e-3.yaml), which reports PCKh@0.5 90.3 (Mean) on the val split.

    python -m hrnet_jax.main --config=configs/mpii_w32_256x256.py --workdir=runs/mpii

data.root holds the official converted files annot/{train,valid}.json and annot/gt_valid.mat
(whose head boxes normalise PCKh) and images/ (MPII's images).
"""

from hrnet_jax import config_lib


def get_config():
    c = config_lib.hrnet_w(32, input_size=(256, 256), sigma=2.0)  # HRN SIGMA 2, heatmap 64x64
    c.data.keypoints = "mpii"
    c.model.num_joints = 16
    c.data.root = "data/mpii"
    c.data.annotation_file = "annot/{split}.json"
    c.data.image_dir = "images"
    c.data.train_split, c.data.val_split = "train", "valid"
    c.eval.mpii_headboxes = "annot/gt_valid.mat"
    c.augment.scale_factor = 0.25  # HRN SCALE_FACTOR
    c.augment.rotation_factor = 30.0  # HRN ROT_FACTOR
    c.augment.half_body_prob = 0.0  # HRN PROB_HALF_BODY -1: no half-body crops
    c.train.global_batch_size = 128  # HRN: 32 per GPU x 4 GPUs
    c.train.learning_rate = 1e-3  # HRN LR, Adam
    c.train.warmup_steps = 0  # HRN: no warmup
    c.train.lr_decay_epochs = (170, 200)  # HRN LR_STEP
    c.codec.decoding = "quarter_offset"  # HRN get_final_preds
    return c

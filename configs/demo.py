"""A narrow HRNet on the built-in synthetic data set: the end-to-end demo for a laptop CPU.

    python -m hrnet_jax.main --config=configs/demo.py --workdir=/tmp/hrnet_demo

Generates the synthetic set in data/synthetic on first use, trains, checkpoints, evaluates and
prints the COCO keypoint AP table. BENCHMARKS.md records its wall time and AP on a 2-core CPU.
"""

from hrnet_jax import config_lib


def get_config():
    c = config_lib.hrnet_w(16, input_size=(128, 96), sigma=2.0)
    # Four branches and every fuse path of the real network, at half W32's width and a fraction
    # of its depth.
    c.model.stem_channels = 32
    c.model.stage1.num_blocks, c.model.stage1.num_channels = (1,), (32,)
    for name in ("stage2", "stage3", "stage4"):
        c.model[name].num_modules = 1
        c.model[name].num_blocks = (1,) * c.model[name].num_branches
    # At this width XLA's own weight gradients are faster on CPU than the row shift that "auto"
    # picks for W32 (train step at batch 32: 0.21 s vs 0.28 s, BENCHMARKS.md).
    c.model.conv_weight_grad = "xla"

    c.data.root = "data/synthetic"
    c.data.train_split, c.data.val_split = "train", "val"
    c.data.synthetic.enabled = True
    c.data.synthetic.num_train_images = 1500
    c.data.synthetic.num_val_images = 100
    c.data.num_workers = 0  # the two cores train; reader threads decode the small JPEGs
    c.data.num_threads = 2

    c.train.global_batch_size = 32
    c.train.num_epochs = 14
    c.train.learning_rate = 2e-3
    c.train.warmup_steps = 100
    c.train.lr_decay_epochs = (11, 13)
    c.train.log_every_steps = 20
    c.train.checkpoint_every_steps = 500
    c.eval.batch_size_per_device = 64
    return c

"""A tiny HRNet on the synthetic set: the config of the training tests (also on command lines).

    python -m hrnet_jax.main --config=tests/tiny_config.py --workdir=/tmp/tiny \
        --config.data.root=/path/to/synthetic
"""

from hrnet_jax import config_lib


def get_config():
    c = config_lib.recipe()
    # Every structural feature of HRNet (4 branches, all fuse paths, bottleneck stage 1) at width 4.
    m = config_lib.hrnet_model(4)
    m.stem_channels = 8
    m.stage1.num_blocks, m.stage1.num_channels = (1,), (8,)
    for name in ("stage2", "stage3", "stage4"):
        m[name].num_blocks = (1,) * m[name].num_branches
        m[name].num_modules = 1
    m.stage4.num_modules = 2  # a multi-scale module followed by the single-output one
    c.model = m
    c.input_size, c.heatmap_size = (64, 64), (16, 16)
    c.codec.sigma = 1.0
    c.data.train_split, c.data.val_split = "train", "val"
    c.data.num_workers = 0
    c.data.num_threads = 2
    c.train.global_batch_size = 8
    c.train.learning_rate = 2e-3
    c.train.warmup_steps = 5
    c.train.lr_decay_epochs = (1000,)
    c.train.log_every_steps = 1
    c.eval.batch_size_per_device = 2
    c.eval.num_visualize = 1
    c.xla.compilation_cache_dir = ""  # the tests set their own
    return c

"""A narrow HRNet on the built-in synthetic data set: the end-to-end demo that runs on a laptop CPU.

python -m hrnet_jax.main --config=configs/demo.py --workdir=/tmp/hrnet_demo
"""

from hrnet_jax import config_lib


def get_config():
    c = config_lib.hrnet_w(8, input_size=(128, 96), sigma=2.0)
    # Four branches and every fuse path of the real network, a fraction of its width and depth.
    c.model.stem_channels = 16
    c.model.stage1.num_blocks = (1,)
    c.model.stage1.num_channels = (16,)
    for name in ("stage2", "stage3", "stage4"):
        stage = c.model[name]
        stage.num_modules = 1
        stage.num_blocks = (2,) * stage.num_branches
    return c

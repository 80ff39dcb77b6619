r"""Mformer-B on Kinetics-400 (16 x 224, rate 4): 79.7 / 94.2 top-1/top-5 (10x3 views) in the paper.

  python -m mformer_jax.main --config=configs/k400_base.py --workdir=/tmp/k400 \
      --config.data.data_dir=/data/kinetics400_prepared --config.init.imagenet=vit_b16.pth

Memory-lean (a fraction of the official step's peak memory, benchmarks/results/README.md):
add --config.model.scan_blocks=True --config.train.fused_update=True.

The short name of `configs/released.py:k400_motionformer_224_16x4`, built by it. No options
(config_lib.parse_arg).
"""
from configs import released
from mformer_jax import config_lib

NAME = 'k400_motionformer_224_16x4'


def get_config(arg: str = ''):
  config_lib.parse_arg(arg, {}, file='k400_base.py')
  return released.get_config(NAME)

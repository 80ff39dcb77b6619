r"""Mformer-B on Kinetics-400 (16 x 224, rate 4): 79.7 / 94.2 top-1/top-5 (10x3 views) in the paper.

  python -m mformer_jax.main --config=configs/k400_base.py --workdir=/tmp/k400 \
      --config.data.data_dir=/data/kinetics400_prepared --config.init.imagenet=vit_b16.pth

Memory-lean (a fraction of the official step's peak memory, measured in benchmarks/results.md):
add --config.model.scan_blocks=True --config.train.fused_update=True.
"""
from mformer_jax import config_lib


def get_config():
  return config_lib.make_config('kinetics400', 'motionformer')

r"""Appendix Table 1's single-frame ViT-B/16 (one random frame of the clip), per dataset.

  python -m mformer_jax.main --config=configs/single_frame.py:k400 --workdir=/tmp/k400_1frame \
      --config.data.data_dir=/data/k400_prepared --config.init.imagenet=jx_vit_base_p16_224.pth
  python -m mformer_jax.main --config=configs/single_frame.py:ssv2 --workdir=/tmp/ssv2_1frame \
      --config.data.data_dir=/data/ssv2_prepared --config.init.imagenet=jx_vit_base_p16_224.pth
  python -m mformer_jax.main --config=configs/single_frame.py:synthetic --workdir=/tmp/syn_1frame

Each is the dataset's Motionformer recipe (same window of frames, views, optimiser) with the model
replaced by an image ViT; what changes is in `mformer_jax/analysis/single_frame.py`. The
multi-frame row of Table 1 is `configs/released.py` (K400, SSv2) for the same dataset.

Option (config_lib.parse_arg): dataset (positional; default k400).
"""
from mformer_jax import config_lib
from mformer_jax.analysis import single_frame

DATASETS = {'k400': 'kinetics400', 'k600': 'kinetics600', 'ssv2': 'ssv2',
            'synthetic': 'synthetic_motion'}


def get_config(arg: str = ''):
  dataset = config_lib.parse_arg(arg, {'dataset': 'k400'}, ('dataset',),
                                 file='single_frame.py')['dataset']
  if dataset not in DATASETS:
    raise config_lib.ConfigError(f'single_frame.py:{dataset}; expected one of {sorted(DATASETS)}')
  return single_frame.single_frame(config_lib.make_config(DATASETS[dataset], 'motionformer'))

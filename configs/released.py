r"""Every released Motionformer model, named like its official checkpoint file.

  python -m mformer_jax.main --config=configs/released.py:ssv2_motionformer_224_32x3 \
      --workdir=/tmp/ssv2_l --config.data.data_dir=/data/ssv2_prepared

Names: {k400,k600,ssv2,ek}_{motionformer_224_16x4, motionformer_224_32x3 (L),
motionformer_336_16x4 (HR; K400: 336_16x8), joint_224_16x4, divided_224_16x4}; the paper's
ablations are reachable as e.g. k400_orthoformer_224_16x4 and k400_space_224_16x4. The released
checkpoint files by these names: mformer_jax/weights/released.py (NAMES; `mf.load_official(name)`
downloads one).

Option (config_lib.parse_arg): name (positional; default k400_motionformer_224_16x4).
"""
import re

from mformer_jax import config_lib
from mformer_jax.weights.released import DATASETS  # the name's prefix -> config.data.name
VARIANTS = {('motionformer', 224, 16): 'motionformer', ('motionformer', 224, 32): 'motionformer_l',
            ('motionformer', 336, 16): 'motionformer_hr', ('joint', 224, 16): 'joint',
            ('divided', 224, 16): 'divided', ('orthoformer', 224, 16): 'orthoformer',
            ('space', 224, 16): 'space'}


def get_config(arg: str = ''):
  name = config_lib.parse_arg(arg, {'name': 'k400_motionformer_224_16x4'}, ('name',),
                              file='released.py')['name']
  m = re.fullmatch(r'(k400|k600|ssv2|ek)_([a-z]+)_(\d+)_(\d+)x(\d+)', name)
  key = m and (m.group(2), int(m.group(3)), int(m.group(4)))
  if not m or key not in VARIANTS:
    raise config_lib.ConfigError(f'unknown released model {name!r}; see the docstring of '
                                 'configs/released.py')
  config = config_lib.make_config(DATASETS[m.group(1)], VARIANTS[key])
  if (config.data.num_frames, config.data.sampling_rate) != (int(m.group(4)), int(m.group(5))):
    raise config_lib.ConfigError(f'{name}: the official recipe for this model is '
                     f'{config.data.num_frames}x{config.data.sampling_rate}')
  return config

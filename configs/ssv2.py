r"""Something-Something v2: every released model, chosen by the config argument.

  python -m mformer_jax.main --config=configs/ssv2.py:motionformer --workdir=/tmp/ssv2
  variants: motionformer (16x224), motionformer_l (32 frames), motionformer_hr (336 px),
            joint, divided; also space, orthoformer (paper ablations).
"""
from mformer_jax import config_lib


def get_config(variant: str = 'motionformer'):
  return config_lib.make_config('ssv2', variant)

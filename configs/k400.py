r"""Kinetics-400: every released model, chosen by the config argument.

  python -m mformer_jax.main --config=configs/k400.py:motionformer --workdir=/tmp/k400
  variants: motionformer (16x224), motionformer_l (32 frames), motionformer_hr (336 px),
            joint, divided; also space, orthoformer (paper ablations).
"""
from mformer_jax import config_lib


def get_config(variant: str = 'motionformer'):
  return config_lib.make_config('kinetics400', variant)

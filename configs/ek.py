r"""Epic-Kitchens-100: every released model, chosen by the config argument.

  python -m mformer_jax.main --config=configs/ek.py:motionformer --workdir=/tmp/ek
  variants: motionformer (16x224), motionformer_l (32 frames), motionformer_hr (336 px),
            joint, divided; also space, orthoformer (paper ablations).
"""
from mformer_jax import config_lib


def get_config(variant: str = 'motionformer'):
  return config_lib.make_config('epic_kitchens', variant)

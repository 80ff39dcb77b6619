"""config.data: the short-side jitter of training follows the final crop (config_lib.finalize)."""
import os

from mformer_jax import config_lib
from mformer_jax.data import config as data_config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _k400_base():
  return config_lib.load_config(os.path.join(ROOT, 'configs', 'k400_base.py'), final=False)


def test_the_jitter_follows_a_crop_set_on_the_command_line():
  """--config.data.crop_size=336 --config.model.img_size=336 on k400_base: the official 336
  configs' TRAIN_JITTER_SCALES [384, 480], not the 224 recipe's [256, 320]."""
  config = _k400_base()
  config.data.crop_size = config.model.img_size = 336
  assert tuple(config_lib.finalize(config).data.train_jitter_scales) == (384, 480)
  config = _k400_base()
  assert tuple(config_lib.finalize(config).data.train_jitter_scales) == (256, 320)


def test_a_jitter_set_explicitly_is_kept():
  config = _k400_base()
  config.data.crop_size = config.model.img_size = 336
  config.data.train_jitter_scales = (300, 400)
  assert tuple(config_lib.finalize(config).data.train_jitter_scales) == (300, 400)

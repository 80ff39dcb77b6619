r"""Your own videos: fine-tune a released Motionformer on class folders, any number of classes.

  ROOT/train/<class>/*.mp4 and ROOT/val/<class>/*.mp4 (the Kinetics class-folder layout; or a
  PySlowFast "path label" list per split: add --csv LIST.txt). Prepare both splits once, then
  fine-tune from a released (or converted) checkpoint with a new classifier:

  python -m mformer_jax.data.prepare kinetics --videos ROOT/train --split train --out PREP \
      --short-side 320
  python -m mformer_jax.data.prepare kinetics --videos ROOT/val --split test --out PREP \
      --short-side 320
  python -m mformer_jax.main --config=configs/own_videos.py:PREP --workdir=workdirs/mine \
      --config.init.checkpoint=k400_motionformer_224_16x4.pyth --config.init.reset_head=True

  (or --config.init.imagenet=vit_b16.pth instead of the two init.checkpoint flags). The class
  count is read from PREP/train.json; without PREP in the config string, set
  --config.data.data_dir and --config.model.num_classes yourself. Another architecture:
  configs/own_videos.py:PREP,motionformer_l (a name from config_lib.VARIANTS).

Options (config_lib.parse_arg): prepared, variant (positional; defaults none and motionformer).
A folder whose name holds ',' goes in --config.data.data_dir instead.

Everything else is the official Kinetics recipe of that variant (sampling, augmentations,
10 x 3 test views, AdamW schedule), with a batch of 16 (small datasets on one accelerator) and
the base LR scaled linearly with it.
"""
import json
import os

from mformer_jax import config_lib

BATCH_SIZE = 16


def _class_names(prepared: str, split: str):
  path = os.path.join(prepared, f'{split}.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)['class_names']


def get_config(arg: str = ''):
  o = config_lib.parse_arg(arg, {'prepared': '', 'variant': 'motionformer'},
                           ('prepared', 'variant'), file='own_videos.py')
  prepared, variant = o['prepared'], o['variant']
  config = config_lib.make_config('kinetics400', variant)
  config.experiment = f'own_videos_{variant}'
  config.data.name = 'own_videos'
  config.data.data_dir = prepared
  config.init.reset_head = True  # A new label set: the released head does not fit.
  names = _class_names(prepared, 'train') if prepared else None
  if names is not None:
    test = _class_names(prepared, 'test')
    # Class folders are numbered in sorted order per split: a class missing from val would
    # shift every later label.
    if test is not None and test != names:
      raise config_lib.ConfigError(f'{prepared}: the test split has classes {test}, the train '
                                   f'split {names}; give val/ a folder for every class of train/')
    config.model.num_classes = len(names)
  t = config.train
  t.base_lr *= BATCH_SIZE / t.batch_size
  t.batch_size = BATCH_SIZE
  config.eval.batch_size = BATCH_SIZE
  return config

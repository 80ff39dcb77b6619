"""Tiny trainer configs and subprocess helpers shared by the train/eval/main/distributed tests."""
import os
import subprocess
import sys

import numpy as np

from configs import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A Motionformer with one trajectory block on 8 frames of 32 px (64 tokens); the data is the
# embedded synthetic motion dataset, so nothing is read from disk.
TINY = {
    'data.synthetic.num_train': 32, 'data.synthetic.num_test': 13,
    'model.embed_dim': 32, 'model.depth': 1, 'model.num_heads': 2,
    'train.batch_size': 8, 'train.num_epochs': 2.0, 'train.log_every_steps': 2,
    'train.lr_boundaries': (1.0, 1.5),
    'checkpoint.every_steps': 4, 'eval.every_epochs': 0.0, 'eval.batch_size': 8,
}

# The same model on prepared video clips (configs/own_videos.py; 48-64 px clips: one test view).
ON_CLIPS = {
    'model.num_frames': 8, 'model.img_size': 32, 'model.pretrain_img_size': 32,
    'model.patch_size': 8, 'model.embed_dim': 32, 'model.depth': 1, 'model.num_heads': 2,
    'model.dtype': 'float32', 'data.num_frames': 8, 'data.sampling_rate': 2,
    'data.crop_size': 32, 'data.train_jitter_scales': (32, 40), 'data.test_num_clips': 1,
    'data.test_num_crops': 1, 'data.num_parallel_calls': 1, 'train.batch_size': 2,
    'train.num_epochs': 1.0, 'train.lr_boundaries': (0.5, 0.75), 'train.log_every_steps': 1,
    'checkpoint.every_steps': 100, 'eval.batch_size': 2, 'eval.every_epochs': 0.0,
}

# The memory-lean update: blocks stacked under one lax.scan, AdamW inside the backward pass.
FUSED = {'model.scan_blocks': True, 'train.fused_update': True}


def override(cfg, overrides):
  """`cfg` with `overrides` ({'a.b': value}) set in place, as --config.a.b=value would."""
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = cfg
    for p in parents:
      node = node[p]
    node[leaf] = value
  return cfg


def config(**overrides):
  """configs/demo.py with TINY and `overrides` ('a.b': value) applied."""
  return override(demo.get_config(), {**TINY, **overrides})


def flags(**overrides):
  """The same config as command-line flags for `python -m mformer_jax.main`."""
  return ['--config=configs/demo.py'] + [f'--config.{k}={v}' for k, v in
                                         {**TINY, **overrides}.items()]


def env(devices: int = 1, **extra):
  e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', TF_ENABLE_ONEDNN_OPTS='0',
           XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', **extra)
  e['PYTHONPATH'] = ROOT + os.pathsep + e.get('PYTHONPATH', '')
  return e


def main_cmd(workdir, *args, **overrides):
  return [sys.executable, '-m', 'mformer_jax.main', f'--workdir={workdir}', *args,
          *flags(**overrides)]


def run_main(workdir, *args, devices=1, timeout=240, **overrides):
  return subprocess.run(main_cmd(workdir, *args, **overrides), cwd=ROOT, env=env(devices),
                        capture_output=True, text=True, timeout=timeout)


def final_params(workdir):
  """Flat {path: numpy} of the latest checkpoint's parameters in `workdir`."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  from mformer_jax import weights  # pylint: disable=g-import-not-at-top
  return traverse_util.flatten_dict(weights.load(str(workdir))[1])


def max_abs_diff(a, b):
  assert a.keys() == b.keys()
  return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)

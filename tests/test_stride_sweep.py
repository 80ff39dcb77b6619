"""Stride sweep (Fig. 1): strides map to the paper's fields, cells resume/skip, CSV and PNG."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from configs import motion_twins, released
from mformer_jax import train
from mformer_jax.errors import ConfigError
from mformer_jax.analysis import stride_sweep
from mformer_jax.data import config as data_config_lib
import sampling_oracle as sampling
from mformer_jax.data import transforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_full_scale_strides_resolve():
  k400 = released.get_config('k400_motionformer_224_16x4')
  c = stride_sweep.cell_config(k400, 'divided', '16', 3)
  assert (c.model.attention, c.data.sampling_rate, c.seed, c.data.num_frames) == ('divided', 16, 3, 16)
  ssv2 = released.get_config('ssv2_motionformer_224_16x4')
  spans = [stride_sweep.cell_config(ssv2, 'joint', s, 0).data.segment_span
           for s in ('S/4', '0.5S', 'S')]
  assert spans == [0.25, 0.5, 1.0]
  for bad in ('2S', 'S/0x', '4'):
    with pytest.raises(ConfigError):
      stride_sweep.cell_config(ssv2, 'joint', bad, 0)
  assert stride_sweep.cell_config(motion_twins.get_config(), 'joint', '2', 0).data.synthetic.speed == 2


def test_segment_span_covers_the_fraction_of_the_video():
  cfg = data_config_lib.data_config('ssv2', num_frames=8, sampling_rate=4, crop_size=32)
  cfg.segment_span = 0.25
  lows = []
  for s in range(20):
    seed = tf.constant([s, 1], tf.int64)
    idx = transforms.frame_indices(400, 30.0, cfg, train_seed=seed).numpy()
    assert idx.shape == (8,) and np.all(np.diff(idx) >= 0) and idx[-1] - idx[0] < 100
    lows.append(idx[0])
  assert max(lows) - min(lows) > 100  # the window moves over the video in training
  test = transforms.frame_indices(400, 30.0, cfg).numpy()[0]
  # Centred: the whole-video sampler on the middle 100 frames (300 frames of room / 2).
  np.testing.assert_array_equal(test, 150 + sampling.segment_indices(100, 30.0, 8))


def _tiny():
  c = motion_twins.get_config('steps=2')
  c.data.synthetic.num_train, c.data.synthetic.num_test = 16, 8
  c.model.embed_dim, c.model.depth, c.model.num_heads = 16, 1, 2
  c.train.batch_size, c.train.num_epochs, c.train.lr_boundaries = 8, 1.0, (0.8, 0.9)
  c.train.warmup_epochs, c.eval.batch_size = 0.0, 8
  return c


@pytest.mark.slow
def test_cells_skip_when_done_csv_png_and_eval_only(tmp_path, monkeypatch):
  args = dict(strides=['1', '2'], attentions=['joint', 'trajectory'], root=tmp_path)
  rows = stride_sweep.sweep(_tiny(), cell='joint:2', **args)
  assert [(r['attention'], r['stride']) for r in rows] == [('joint', '2')]
  rows = stride_sweep.sweep(_tiny(), **args)
  assert [(r['attention'], r['stride'], r['seed']) for r in rows] == [
      ('joint', '1', 0), ('joint', '2', 0), ('trajectory', '1', 0), ('trajectory', '2', 0)]
  for r in rows:
    assert 0.0 <= r['top1'] <= 1.0
    cell = tmp_path / f"{r['attention']}_{r['stride']}_seed0"
    assert json.loads((cell / 'result.json').read_text())['steps'] == 2
  with open(tmp_path / 'stride_sweep.csv') as f:
    assert len(list(csv.DictReader(f))) == 4
  assert (tmp_path / 'stride_sweep.png').read_bytes()[:4] == b'\x89PNG'

  def fail(*_):
    raise AssertionError('a finished cell was trained again')
  monkeypatch.setattr(train, 'train_and_evaluate', fail)
  assert stride_sweep.sweep(_tiny(), **args) == rows
  assert stride_sweep.sweep(_tiny(), **args, seeds=[0, 1], collect_only=True) == rows  # seed 1: none
  # Eval-only: the trajectory model of stride 1, re-evaluated at speed 2.
  rows = stride_sweep.sweep(_tiny(), strides=['1', '2'], attentions=['trajectory'], root=tmp_path,
                            checkpoints={'trajectory': str(tmp_path / 'trajectory_1_seed0')})
  assert rows[0]['top1'] == pytest.approx(
      json.loads((tmp_path / 'trajectory_1_seed0' / 'result.json').read_text())['top1'])
  assert (tmp_path / 'eval_trajectory_2_seed0' / 'result.json').exists()


@pytest.mark.slow
def test_cli_bad_input_exits_2(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'mformer_jax.analysis.stride_sweep', '--config=configs/motion_twins.py',
       f'--root={tmp_path}', '--strides=1,2', '--attentions=joint,spacetime'],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and "attention 'spacetime'" in proc.stderr

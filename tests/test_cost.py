"""Training cost (.1.5): the recipe arithmetic, the paper lookup, and the command on a tiny model."""
import json
import subprocess
import sys

import pytest

import train_fixtures as tfx
from configs import released
from mformer_jax.analysis import cost


def test_estimate_scales_the_measured_step_to_the_recipe():
  config = tfx.config(**{'train.batch_size': 32, 'train.num_epochs': 10.0})
  measured = {'step_s': 0.5, 'devices': 2, 'batch': 4}          # 0.25 device-s per clip
  est = cost.estimate(config, measured, num_train=1000)
  assert est['steps_per_epoch'] == 31 and est['total_steps'] == 310   # 1000 // 32, x 10 epochs
  assert est['device_s_per_clip'] == 0.25
  assert est['device_hours'] == pytest.approx(310 * 32 * 0.25 / 3600)
  mfu = cost.estimate(config, measured, num_train=1000, peak_tflops=1.0)
  gflop = mfu['train_gflop_per_clip']
  assert mfu['mfu'] == pytest.approx(gflop * 1e9 / 0.25 / 1e12)
  assert mfu['ideal_device_hours'] == pytest.approx(est['device_hours'] * mfu['mfu'])


def test_paper_hours_follow_the_config():
  assert cost.paper_hours(released.get_config('k400_motionformer_224_16x4')) == ('Mformer-B', 384)
  assert cost.paper_hours(released.get_config('k400_motionformer_224_32x3'))[1] == 1334
  assert cost.paper_hours(released.get_config('k400_motionformer_336_16x8'))[1] == 1376
  ortho = released.get_config('k400_orthoformer_224_16x4')
  ortho.model.num_landmarks = 64
  assert cost.paper_hours(ortho)[1] == 800
  assert cost.paper_hours(released.get_config('ssv2_motionformer_224_16x4')) is None
  k400 = released.get_config('k400_motionformer_224_16x4')
  assert cost.num_train_examples(k400) == (240_000, 'nominal')


@pytest.mark.slow
def test_command_on_a_tiny_model(tmp_path):
  out = tmp_path / 'cost.json'
  cmd = [sys.executable, '-m', 'mformer_jax.analysis.cost', '--steps=2', f'--out={out}',
         '--mfu', '--peak_tflops=1'] + tfx.flags()
  proc = subprocess.run(cmd, cwd=tfx.ROOT, env=tfx.env(), capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'device-hours' in proc.stdout and 'MFU' in proc.stdout
  report = json.loads(out.read_text())
  est, measured = report['estimate'], report['measured']
  assert measured['steps_timed'] == 2 and measured['step_s'] > 0
  assert est['train_clips'] == 32 and est['source'] == 'data'    # the tiny synthetic set
  assert est['total_steps'] == 8 and report['paper'] is None
  bad = subprocess.run(cmd[:3] + ['--mfu'] + tfx.flags(), cwd=tfx.ROOT, env=tfx.env(),
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2 and 'peak_tflops' in bad.stderr and 'Traceback' not in bad.stderr

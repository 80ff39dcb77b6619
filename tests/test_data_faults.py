"""Prepared shards cut short (an interrupted copy) or missing, through `python -m
mformer_jax.main` (subprocess: the exit status and the absence of a traceback are the point; the
in-process cases are in tests/test_data_pipeline.py)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import data_fixtures as fx
import train_fixtures as tfx


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  return fx.prepared_kinetics(str(tmp_path_factory.mktemp('clips')))[0]


def _train_on(data, workdir, **overrides):
  cmd = [sys.executable, '-m', 'mformer_jax.main', f'--config=configs/own_videos.py:{data}',
         f'--workdir={workdir}'] + [f'--config.{k}={v}' for k, v in
                                    {**tfx.ON_CLIPS, **overrides}.items()]
  return subprocess.run(cmd, cwd=tfx.ROOT, env=tfx.env(JAX_LOG_COMPILES='1'),
                        capture_output=True, text=True, timeout=400)


@pytest.mark.slow
def test_shards_cut_short_lose_only_the_records_past_the_cut(prepared, tmp_path):
  data = tmp_path / 'out'
  shutil.copytree(prepared, data)
  train_shard, train_key = fx.cut_shard(str(data), 'train', 3)
  test_shard, test_key = fx.cut_shard(str(data), 'test', 3)
  proc = _train_on(data, tmp_path / 'w', **{'data.max_bad_fraction': 0.2})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Compiling' in proc.stderr  # JAX_LOG_COMPILES: what the missing-shard tests look for
  assert f'{train_shard} is cut short (an interrupted copy?)' in proc.stderr
  assert (f'skipped an unreadable train record: {train_shard} record 1 ({train_key}): the shard '
          'ends at byte') in proc.stderr
  report = json.loads((tmp_path / 'w' / 'eval' / 'step_3' / 'metrics.json').read_text())
  assert report['num_videos'] == 5 and report['num_unreadable'] == 1
  assert report['unreadable'][0].startswith(f'{test_shard} record 1 ({test_key}): the shard '
                                            'ends at byte')
  assert report['bad_train_records'][0].startswith(f'{train_shard} record 1 ({train_key})')


@pytest.mark.slow
@pytest.mark.parametrize('split', ['train', 'test'])
def test_a_missing_shard_is_one_line_before_anything_compiles(prepared, tmp_path, split):
  data = tmp_path / 'out'
  shutil.copytree(prepared, data)
  os.remove(data / f'{split}-00002-of-00003.tfrecord')
  proc = _train_on(data, tmp_path / 'w')
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr and 'Compiling' not in proc.stderr, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert errors == [f'error: {data / split}.json lists a shard that is not there: '
                    f'{split}-00002-of-00003.tfrecord. An interrupted copy? Copy the folder '
                    'again, or prepare the split again (mformer_jax/data/README.md)']

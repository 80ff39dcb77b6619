"""Preparation split over tasks (--num-tasks/--task-index): the same bytes as one task."""

import json
import os

import numpy as np
import pytest

import data_fixtures as fx
from mformer_jax.data import layouts
from mformer_jax.data import prepare


@pytest.fixture(scope='module')
def items(tmp_path_factory):
  root = tmp_path_factory.mktemp('k400')
  fx.kinetics_tree(str(root), lengths=((6, 30), (5, 25), (7, 30)))
  fx.write_bad_files(str(root / 'zumba'))
  return layouts.kinetics(str(root))  # 9 items, 3 of them unreadable.


def _files(out):
  return {f: open(os.path.join(out, f), 'rb').read() for f in sorted(os.listdir(out))}


def test_two_tasks_write_the_shards_one_task_writes(items, tmp_path):
  kw = dict(split='train', layout='kinetics', per_shard=2)  # 5 shards.
  one = prepare.build(*items, out=str(tmp_path / 'one'), **kw)
  first = prepare.build(*items, out=str(tmp_path / 'two'), num_tasks=2, task_index=0, **kw)
  assert first is None and not os.path.exists(tmp_path / 'two' / 'train.json')
  assert sorted(f for f in os.listdir(tmp_path / 'two') if f.endswith('.tfrecord')) == [
      f'train-{k:05d}-of-00005.tfrecord' for k in (0, 2, 4)]
  two = prepare.build(*items, out=str(tmp_path / 'two'), num_tasks=2, task_index=1, **kw)
  assert (one['num_examples'], one['num_skipped']) == (two['num_examples'], two['num_skipped'])
  assert (one['num_examples'], one['num_skipped']) == (6, 3)
  a, b = _files(tmp_path / 'one'), _files(tmp_path / 'two')
  assert sorted(a) == sorted(b) and len(a) == 5 * 2 + 3  # shards, sidecars, plan/index/summary
  for name in a:
    if name.endswith('.npz'):  # Zip entries carry their write time: compare the arrays.
      with np.load(tmp_path / 'one' / name) as x, np.load(tmp_path / 'two' / name) as y:
        assert x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)
    else:
      assert a[name] == b[name], name
  assert json.loads(b['train.json'])['shards'] == one['shards']


def test_task_flags_are_checked(items, tmp_path, capsys):
  root = os.path.dirname(items[0][0].source)
  with pytest.raises(SystemExit) as e:
    prepare.main(['kinetics', '--videos', os.path.dirname(root), '--split', 'train', '--out',
                  str(tmp_path), '--num_tasks', '2', '--task_index', '2'])
  assert e.value.code == 2 and '--task-index 2 is not in [0, --num-tasks=2)' in \
      capsys.readouterr().err
  with pytest.raises(ValueError, match='other inputs'):  # A task given another item list.
    prepare.build(items[0][:4], items[1], out=str(tmp_path), split='train', layout='kinetics',
                  per_shard=2, num_tasks=2, task_index=0)
    prepare.build(items[0][:5], items[1], out=str(tmp_path), split='train', layout='kinetics',
                  per_shard=2, num_tasks=2, task_index=1)

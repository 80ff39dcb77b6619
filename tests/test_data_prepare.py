"""Preparation: layouts in, TFRecord shards + index out; bad inputs skipped and reported."""

import json
import os

import numpy as np
import pytest

import data_fixtures as fx
from mformer_jax.data import layouts
from mformer_jax.data import prepare


def _index(out, split):
  with np.load(os.path.join(out, f'{split}.index.npz')) as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope='module')
def kinetics(tmp_path_factory):
  root = tmp_path_factory.mktemp('k400')
  videos, csv_path = fx.kinetics_tree(str(root / 'train'))
  bad = fx.write_bad_files(str(root / 'train' / 'zumba'))
  return root, videos, csv_path, bad


def test_kinetics_class_folders(kinetics, tmp_path):
  root, videos, _, bad = kinetics
  items, classes = layouts.kinetics(str(root / 'train'))
  summary = prepare.build(items, classes, out=str(tmp_path), split='train', layout='kinetics',
                          per_shard=4)
  assert classes == ['abseiling', 'zumba'] and summary['num_examples'] == 6
  index = _index(tmp_path, 'train')
  by_key = {k: i for i, k in enumerate(index['key'])}
  for v in videos:  # Labels = sorted folder index; per-video fps and frame count recorded.
    i = by_key[v['stem']]
    assert (index['label'][i], index['num_frames'][i], index['fps'][i]) == (
        v['label'], v['num'], v['fps'])
  skipped = dict(summary['skipped'])
  assert summary['num_skipped'] == 3 and set(skipped) == set(bad.values())
  assert skipped[bad['empty']] == 'empty file'
  assert len(summary['shards']) == 3  # 9 items, 4 per shard.
  with open(tmp_path / 'train.json') as f:
    assert json.load(f)['num_skipped'] == 3


def test_kinetics_official_csv_and_missing_file(kinetics, tmp_path):
  root, videos, csv_path, _ = kinetics
  items, classes = layouts.kinetics(str(root / 'train'), csv_path)
  summary = prepare.build(items, classes, out=str(tmp_path), split='test', layout='kinetics')
  assert summary['num_examples'] == len(videos)
  assert [(os.path.basename(p), r) for p, r in summary['skipped']] == [
      ('missingvid01_000000_000010.mp4', 'missing file')]
  index = _index(tmp_path, 'test')
  assert sorted(zip(index['key'], index['label'])) == sorted(
      (v['stem'], v['label']) for v in videos)


def test_pyslowfast_path_label_list(kinetics, tmp_path):
  root, videos, _, _ = kinetics
  listing = tmp_path / 'val.csv'
  listing.write_text(''.join(f"{v['name']}/{v['stem']}.mp4 {v['label']}\n" for v in videos))
  items, classes = layouts.kinetics(str(root / 'train'), str(listing))
  assert [i.labels['label'] for i in items] == [v['label'] for v in videos]
  assert classes == ['0', '1'] and all(os.path.exists(i.source) for i in items)


def test_resume_rewrites_only_unfinished_shards_and_workers_agree(kinetics, tmp_path):
  root, _, _, _ = kinetics
  items, classes = layouts.kinetics(str(root / 'train'))
  out = str(tmp_path / 'out')
  prepare.build(items, classes, out=out, split='train', layout='kinetics', per_shard=4)
  done = os.path.join(out, 'train-00000-of-00003')
  mtime = os.path.getmtime(done + '.tfrecord')
  first = _index(out, 'train')
  for suffix in ('.json', '.tfrecord'):  # As if the run died while writing shard 2.
    os.remove(os.path.join(out, 'train-00002-of-00003' + suffix))
  prepare.build(items, classes, out=out, split='train', layout='kinetics', per_shard=4,
                workers=2)
  assert os.path.getmtime(done + '.tfrecord') == mtime
  second = _index(out, 'train')
  for k in first:
    np.testing.assert_array_equal(first[k], second[k])
  with pytest.raises(ValueError, match='other inputs'):
    prepare.build(items[:-1], classes, out=out, split='train', layout='kinetics', per_shard=4)


def test_ssv2_webm_and_json(tmp_path):
  entries = fx.ssv2_tree(str(tmp_path / 'ssv2'))
  out = str(tmp_path / 'out')
  prepare.main(['ssv2', '--videos', str(tmp_path / 'ssv2' / 'videos'), '--annotations',
                str(tmp_path / 'ssv2' / 'labels'), '--split', 'test', '--out', out,
                '--workers', '1'])
  index = _index(out, 'test')
  assert list(index['key']) == [e['id'] for e in entries]
  np.testing.assert_array_equal(index['label'], [0, 1, 0])  # Template, brackets stripped.
  np.testing.assert_array_equal(index['num_frames'], [25, 30, 18])
  np.testing.assert_allclose(index['fps'], 12.0)
  with open(os.path.join(out, 'test.json')) as f:
    assert json.load(f)['class_names'][1] == 'Pushing something from right to left'


def test_epic_kitchens_segments(tmp_path):
  fx.epic_tree(str(tmp_path / 'ek'))
  out = str(tmp_path / 'out')
  prepare.main(['epic_kitchens', '--frames', str(tmp_path / 'ek' / 'frames'), '--annotations',
                str(tmp_path / 'ek' / 'annotations'), '--split', 'train', '--out', out,
                '--workers', '1', '--short-side', '24'])
  index = _index(out, 'train')
  assert list(index['key']) == ['P01_101_0', 'P01_101_1']
  # 50 fps (3-digit video suffix): 0.20 s -> frame 10, 1.50 s -> 75: 65 frames.
  np.testing.assert_array_equal(index['num_frames'], [65, 50])
  np.testing.assert_array_equal(index['verb'], [3, 5])
  np.testing.assert_array_equal(index['noun'], [7, 11])
  with open(os.path.join(out, 'train.json')) as f:
    summary = json.load(f)
  assert summary['num_skipped'] == 1
  assert summary['skipped'][0][0].endswith('P01_101#P01_101_2')
  assert 'unreadable frame' in summary['skipped'][0][1]


# ----------------------------------------------------------------------------------------------
# Index files not in the layout: one line naming the file and line; a bug keeps its traceback
# ----------------------------------------------------------------------------------------------
def _one_line_error(argv, capsys):
  with pytest.raises(SystemExit) as info:
    prepare.main(argv)
  err = capsys.readouterr().err
  assert info.value.code == 2 and len(err.splitlines()) == 1, err
  return err


def test_index_files_not_in_the_layout_are_one_line(tmp_path, capsys):
  out = ['--out', str(tmp_path / 'out'), '--split', 'train']
  bad_csv = tmp_path / 'k.csv'
  bad_csv.write_text('label,youtube_id,time_start,split\nzumba,abc,0,val\n')
  err = _one_line_error(['kinetics', '--videos', str(tmp_path), '--csv', str(bad_csv), *out],
                        capsys)
  assert err == f'error: {bad_csv} has no column time_end (its header: label,youtube_id,' \
                'time_start,split)\n'
  bad_csv.write_text('label,youtube_id,time_start,time_end,split\nzumba,abc,0,ten,val\n')
  err = _one_line_error(['kinetics', '--videos', str(tmp_path), '--csv', str(bad_csv), *out],
                        capsys)
  assert err == f"error: {bad_csv}:2: 'ten' is not an integer\n"
  listing = tmp_path / 'list.txt'
  listing.write_text('a.mp4 0\nb.mp4 1 extra\n')
  err = _one_line_error(['kinetics', '--videos', str(tmp_path), '--csv', str(listing), *out],
                        capsys)
  assert err == (f'error: {listing}:2: expected "path label" (a PySlowFast list), got '
                 "['b.mp4', '1', 'extra']\n")
  entries = fx.ssv2_tree(str(tmp_path / 'ssv2'))
  with open(tmp_path / 'ssv2' / 'labels' / 'something-something-v2-train.json', 'w') as f:
    json.dump(entries[:1] + [dict(id='7', template='Juggling [something]')], f)
  err = _one_line_error(['ssv2', '--videos', str(tmp_path), '--annotations',
                         str(tmp_path / 'ssv2' / 'labels'), *out], capsys)
  assert err.startswith('error: ') and "entry 1 (7) has the template 'Juggling something'" in err
  fx.epic_tree(str(tmp_path / 'ek'))
  ek = tmp_path / 'ek' / 'annotations' / 'EPIC_100_train.csv'
  ek.write_text(ek.read_text().replace('00:00:01.00', '1 second'))
  err = _one_line_error(['epic_kitchens', '--frames', str(tmp_path), '--annotations',
                         str(ek.parent), *out], capsys)
  assert err == f"error: {ek}:3: '1 second' is not a HH:MM:SS.ff timestamp\n"
  err = _one_line_error(['ssv2', '--annotations', str(ek.parent), *out], capsys)
  assert err == 'error: ssv2 reads its videos and labels from --videos: give the folder\n'


def test_a_bug_in_a_layout_reader_keeps_its_traceback(tmp_path, monkeypatch):
  """Only unreadable files and the readers' InputErrors are the user's: a KeyError from the
  reader's own code is not turned into a 'not a kinetics layout' line."""
  def broken(videos, csv_path=''):
    return {}['a bug']
  monkeypatch.setattr(layouts, 'kinetics', broken)
  with pytest.raises(KeyError, match='a bug'):
    prepare.main(['kinetics', '--videos', str(tmp_path), '--out', str(tmp_path / 'out'),
                  '--split', 'train'])

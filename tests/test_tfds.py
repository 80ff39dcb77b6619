"""TFDS builders: tfds.load of the synthetic set and of a prepared folder; training through TFDS."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

import data_fixtures as fx
from mformer_jax.data import config
from mformer_jax.data import layouts
from mformer_jax.data import pipeline
from mformer_jax.data import prepare
from mformer_jax.data import synthetic
from mformer_jax.data import tfds_builders

TINY = dict(num_frames=4, size=16, num_train=12, num_test=5)


def test_tfds_load_synthetic_is_the_renderer(tmp_path):
  cfg = tfds_builders.SyntheticMotionConfig(name='tiny', with_masks=True, **TINY)
  ds, info = tfds.load('synthetic_motion', split='train', data_dir=str(tmp_path),
                       builder_kwargs=dict(config=cfg), batch_size=-1, with_info=True)
  assert (info.splits['train'].num_examples, info.splits['test'].num_examples) == (12, 5)
  assert info.features['label'].names == list(synthetic.MOTION_CLASSES)
  assert info.features['clip'].shape == (4, 16, 16, 3)
  batch = tfds.as_numpy(ds)
  ref = synthetic.generate(12, split='train', **cfg.render_kwargs())
  np.testing.assert_array_equal(batch['index'], np.arange(12))  # In render order.
  np.testing.assert_array_equal(batch['clip'], ref.videos)  # PNG frames: lossless.
  np.testing.assert_array_equal(batch['label'], ref.labels)
  np.testing.assert_array_equal(batch['masks'], ref.masks)
  np.testing.assert_allclose(batch['centers'], ref.centers)
  test = tfds.as_numpy(tfds.load('synthetic_motion', split='test[1:3]', batch_size=-1,
                                 data_dir=str(tmp_path), builder_kwargs=dict(config=cfg)))
  np.testing.assert_array_equal(
      test['label'], synthetic.render([1, 2], split='test', **cfg.render_kwargs()).labels)


def _data_cfg(source, data_dir=''):
  cfg = config.data_config('synthetic_motion', num_frames=4, sampling_rate=1, crop_size=16)
  cfg.source, cfg.data_dir = source, data_dir
  cfg.synthetic.num_train, cfg.synthetic.num_test = 10, 6
  cfg.synthetic.classes = 'move_left,move_right,approach'
  return cfg


def test_training_through_tfds_reads_what_rendering_gives(tmp_path):
  rendered, through = _data_cfg('synthetic'), _data_cfg('tfds', str(tmp_path))
  kw = dict(local_batch_size=4, seed=3, start_step=2, process_index=1, process_count=2)
  a = pipeline.make_train_iterator(rendered, **kw)
  b = pipeline.make_train_iterator(through, **kw)
  for _ in range(3):
    x, y = next(a), next(b)
    np.testing.assert_array_equal(x['label'], y['label'])
    np.testing.assert_array_equal(x['clip'], y['clip'])
  ev = [list(pipeline.EvalDataset(c, local_batch_size=4, process_index=0, process_count=1))
        for c in (rendered, through)]
  assert len(ev[0]) == len(ev[1]) == 2
  for x, y in zip(*ev):
    for k in ('clip', 'label', 'video_index', 'mask'):
      np.testing.assert_array_equal(x[k], y[k])
  # Built once, named by its parameters: another setting is another dataset.
  built = [d for d in os.listdir(tmp_path / 'synthetic_motion') if not d.startswith('.')]
  assert built == [tfds_builders.synthetic_config(through).name]
  other = _data_cfg('tfds', str(tmp_path))
  other.synthetic.seed = 1
  assert tfds_builders.synthetic_config(other).name != tfds_builders.synthetic_config(through).name


def test_tfds_source_of_a_video_dataset_is_refused():
  cfg = config.data_config('kinetics400', num_frames=4, sampling_rate=2, crop_size=16)
  cfg.source = 'tfds'
  with pytest.raises(ValueError, match='synthetic_motion only'):
    pipeline.num_examples(cfg, 'train')


def test_prepared_folder_as_tfds(tmp_path):
  videos, _ = fx.kinetics_tree(str(tmp_path / 'videos'), lengths=((6, 30), (5, 25)))
  bad = fx.write_bad_files(str(tmp_path / 'videos' / 'zumba'))
  out = str(tmp_path / 'prepared')
  items, classes = layouts.kinetics(str(tmp_path / 'videos'))
  prepare.build(items, classes, out=out, split='train', layout='kinetics', per_shard=3)
  load = dict(data_dir=str(tmp_path / 'tfds'), download_and_prepare_kwargs=dict(
      download_config=tfds.download.DownloadConfig(manual_dir=out)))
  ds, info = tfds.load('prepared_videos/kinetics', split='train', with_info=True, **load)
  assert list(info.splits) == ['train'] and info.splits['train'].num_examples == 4
  assert len(bad) == 3  # Skipped at preparation, so not in the dataset.
  assert info.features['label'].names == ['abseiling', 'zumba']
  got = {e['id'].decode(): e for e in tfds.as_numpy(ds)}
  assert sorted(got) == sorted(v['stem'] for v in videos)
  for v in videos:
    e = got[v['stem']]
    assert (e['label'], e['video'].shape[0], e['fps']) == (v['label'], v['num'], v['fps'])
    np.testing.assert_array_equal(fx.frame_codes(e['video']), np.arange(v['num']))
    np.testing.assert_array_equal(fx.video_tags(e['video']), v['tag'])
  # The JPEG bytes are the prepared ones, copied as they are (no re-encoding).
  raw = tfds.load('prepared_videos/kinetics', split='train', **load,
                  decoders=dict(video=tfds.decode.SkipDecoding()))
  shards = b''.join(open(os.path.join(out, f), 'rb').read() for f in os.listdir(out)
                    if f.endswith('.tfrecord'))
  frames = [f for e in tfds.as_numpy(raw) for f in e['video']]
  assert len(frames) == sum(v['num'] for v in videos) and all(f in shards for f in frames)
  with pytest.raises(ValueError, match=r"not for 'verb'"):
    tfds.load('prepared_videos/epic_kitchens', split='train', **load)

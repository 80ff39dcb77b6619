"""tf.data pipelines on prepared fixture trees: sampling, augmentation, views, hosts, resume."""

import itertools
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import data_fixtures as fx
from mformer_jax.errors import InputError, MissingInputError
from mformer_jax.data import to_model_input
from mformer_jax.data import config
from mformer_jax.data import layouts
from mformer_jax.data import pipeline
from mformer_jax.data import prepare
from mformer_jax.data import transforms
import sampling_oracle as sampling

T, RATE, CROP = 4, 2, 32


@pytest.fixture(scope='module')
def k400(tmp_path_factory):
  root = tmp_path_factory.mktemp('k400')
  _, videos = fx.prepared_kinetics(str(root))
  cfg = config.data_config('kinetics400', num_frames=T, sampling_rate=RATE, crop_size=CROP)
  cfg.data_dir = str(root / 'out')
  cfg.train_jitter_scales = (36, 44)
  cfg.color_jitter = False  # Keeps the colour codes exact; tested separately.
  return cfg, {v['tag']: v for v in videos}, root


def _possible_train_indices(n, fps, offset=0):
  return {tuple(sampling.linspace_indices(n, fps, T, RATE, u, offset=offset))
          for u in np.linspace(0, 1, 4001)}


def _batches(it, k):
  return [next(it) for _ in range(k)]


def test_train_batches_labels_indices_and_same_crop_flip(k400):
  cfg, videos, _ = k400
  batches = _batches(pipeline.make_train_iterator(cfg, local_batch_size=4, seed=1,
                                                  process_index=0, process_count=1), 6)
  directions = []
  for b in batches:
    # uint8 crops: the training step normalises them (and jitters colour, off here).
    assert b['clip'].shape == (4, T, CROP, CROP, 3) and b['clip'].dtype == np.uint8
    assert set(b) == {'clip', 'label'} and b['label'].dtype == np.int32
    for clip, label in zip(to_model_input(b['clip']), b['label']):
      v = videos[fx.video_tags(clip)]
      assert label == v['label']
      assert tuple(fx.frame_codes(clip)) in _possible_train_indices(v['num'], v['fps'])
      green = clip[..., 1].mean(1)  # (T, W): the crop/flip seen through the x ramp.
      np.testing.assert_allclose(green, np.broadcast_to(green[0], green.shape), atol=0.05)
      directions.append(np.sign(green[0, -1] - green[0, 0]))
  assert set(directions) == {-1.0, 1.0}  # Flips happen, per clip.


def test_train_is_deterministic_and_resumes_exactly(k400):
  cfg, _, _ = k400
  def run(seed, start_step=0, k=4):
    return _batches(pipeline.make_train_iterator(cfg, local_batch_size=4, seed=seed,
                                                 start_step=start_step, process_index=0,
                                                 process_count=1), k)
  full = run(seed=3)
  again = run(seed=3)
  resumed = run(seed=3, start_step=2, k=2)  # Step 2 starts mid-epoch (6 videos, batch 4).
  for a, b in zip(full, again):
    np.testing.assert_array_equal(a['clip'], b['clip'])
  for a, b in zip(full[2:], resumed):
    np.testing.assert_array_equal(a['clip'], b['clip'])
    np.testing.assert_array_equal(a['label'], b['label'])
  assert not np.array_equal(full[0]['clip'], run(seed=4, k=1)[0]['clip'])


def test_two_hosts_read_disjoint_parts(k400):
  cfg, videos, _ = k400
  seen = []
  for p in (0, 1):
    batches = _batches(pipeline.make_train_iterator(cfg, local_batch_size=3, seed=0,
                                                    process_index=p, process_count=2), 4)
    seen.append({int(t) for b in batches for t in fx.video_tags(b['clip'])})
  assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(videos)
  evals = [pipeline.EvalDataset(cfg, local_batch_size=16, process_index=p, process_count=2)
           for p in (0, 1)]
  ids = [[b['video_index'][b['mask']] for b in e] for e in evals]
  assert len(ids[0]) == len(ids[1])  # Same number of batches on every host.
  sets = [set(np.concatenate(i).tolist()) for i in ids]
  assert sets[0].isdisjoint(sets[1]) and sets[0] | sets[1] == set(range(len(videos)))


def test_eval_10x3_views_grouped_and_every_video_once(k400):
  cfg, videos, root = k400
  ev = pipeline.EvalDataset(cfg, local_batch_size=16, process_index=0, process_count=1)
  assert (ev.num_videos, ev.views_per_video, ev.num_skipped) == (6, 30, 0)
  assert pipeline.class_names(cfg) == {'label': ['abseiling', 'zumba']}
  batches = list(ev)
  assert len(batches) == ev.num_batches == -(-6 * 30 // 16)
  cat = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  assert cat['mask'].sum() == 6 * 30 and not cat['mask'][6 * 30:].any()
  assert (cat['video_index'][~cat['mask']] == -1).all()
  valid = cat['video_index'][cat['mask']]
  np.testing.assert_array_equal(valid, np.repeat(np.arange(6), 30))  # Contiguous per video.
  for i in range(6):
    views = cat['clip'][i * 30:(i + 1) * 30]
    v = videos[int(fx.video_tags(views[0]))]
    assert (cat['label'][i * 30:(i + 1) * 30] == v['label']).all()
    want = sampling.eval_clip_indices(v['num'], v['fps'], T, RATE, 10)
    np.testing.assert_array_equal(fx.frame_codes(views).reshape(10, 3, T),
                                  np.repeat(want[:, None], 3, 1))
    green = views[:3, 0, :, :, 1].mean(1)  # 48x64 -> 32x42: left, centre, right crops.
    assert green[0, 0] < green[1, 0] < green[2, 0] and green[2, -1] > 0.95
  raw = os.path.join(root, 'videos', 'zumba', videos[3]['stem'] + '.mp4')
  views = pipeline.load_video_views(raw, cfg)
  assert views.shape == (30, T, CROP, CROP, 3)
  np.testing.assert_array_equal(fx.frame_codes(views[::3]),
                                sampling.eval_clip_indices(videos[3]['num'], 30.0, T, RATE, 10))


def test_every_augmentation_draws_once_per_clip(k400):
  cfg, _, _ = k400
  cfg = cfg.copy_and_resolve_references()
  cfg.color_jitter = True
  frame = fx.coded_frames(1)[0]
  frame[:, :, 0] = np.linspace(0, 255, fx.H)[:, None]  # Asymmetric in both axes.
  clip = tf.constant(np.repeat(frame[None], T, 0))  # T identical frames.
  outputs = []
  for rrc in (False, True):
    cfg.random_resized_crop = rrc
    for s in range(6):
      seeds = tf.unstack(tf.random.experimental.stateless_split([s, rrc], 4))
      out = transforms.train_augment(clip, seeds, cfg).numpy()
      assert out.shape == (T, CROP, CROP, 3)
      np.testing.assert_allclose(out, np.broadcast_to(out[0], out.shape), atol=1e-6)
      outputs.append(out[0])
  # ... and the draws differ between clips.
  assert len({np.round(o, 3).tobytes() for o in outputs}) == len(outputs)


def test_epic_kitchens_verb_noun_bgr_and_one_based_window(tmp_path):
  fx.epic_tree(str(tmp_path / 'ek'))
  items, classes = layouts.epic_kitchens(str(tmp_path / 'ek' / 'frames'),
                                         str(tmp_path / 'ek' / 'annotations'), 'train')
  prepare.build(items, classes, out=str(tmp_path / 'out'), split='train', layout='epic_kitchens')
  cfg = config.data_config('epic_kitchens', num_frames=T, sampling_rate=RATE, crop_size=CROP)
  cfg.data_dir, cfg.train_jitter_scales, cfg.rand_augment = str(tmp_path / 'out'), (40, 48), ''
  b = next(pipeline.make_train_iterator(cfg, local_batch_size=4, seed=0, process_index=0,
                                        process_count=1))
  assert set(b) == {'clip', 'verb', 'noun'}
  firsts = {3: (10, 65), 5: (50, 50)}  # verb -> (first frame number, frames in segment)
  # The uint8 crops are RGB; the training step reverses the channels (config.data.bgr).
  for clip, verb, noun in zip(to_model_input(b['clip'], cfg.bgr), b['verb'], b['noun']):
    assert (verb, noun) in {(3, 7), (5, 11)}
    first, n = firsts[int(verb)]
    codes = fx.frame_codes(clip, channel=2)  # BGR: the red code sits in the last channel.
    # Record index i is frame number first + i, whose code is (first + i - 1) % 31.
    possible = {tuple((first + np.array(r) - 1) % 31)
                for r in _possible_train_indices(n, 50.0, offset=1)}
    assert tuple(codes) in possible
  assert pipeline.class_names(cfg)['noun'] == [f'noun_{i}' for i in range(300)]


def test_ssv2_segment_sampling_without_flip(tmp_path):
  fx.ssv2_tree(str(tmp_path / 'ssv2'))
  items, classes = layouts.ssv2(str(tmp_path / 'ssv2' / 'videos'),
                                str(tmp_path / 'ssv2' / 'labels'), 'test')
  for split in ('train', 'test'):
    prepare.build(items, classes, out=str(tmp_path / 'out'), split=split, layout='ssv2')
  cfg = config.data_config('ssv2', num_frames=T, sampling_rate=RATE, crop_size=CROP)
  cfg.data_dir, cfg.train_jitter_scales, cfg.rand_augment = str(tmp_path / 'out'), (36, 44), ''
  assert not cfg.random_flip and cfg.test_num_clips == 1
  b = next(pipeline.make_train_iterator(cfg, local_batch_size=6, seed=0, process_index=0,
                                        process_count=1))
  lengths = (25, 30, 18)
  for clip, label in zip(b['clip'], b['label']):
    tag = int(fx.video_tags(clip))
    assert label == tag % 2
    green = clip[..., 1].mean((0, 1))
    assert green[-1] > green[0]  # Never flipped.
    n, codes = lengths[tag], fx.frame_codes(clip)
    length = round(n * 30 / 12)
    seg = (length - 1) / T
    for i, code in enumerate(codes):  # Inside segment i of the 30 fps timeline.
      lo, hi = np.round(seg * i), np.round(seg * (i + 1))
      assert lo * 12 // 30 <= code <= hi * 12 // 30
  views = list(pipeline.EvalDataset(cfg, local_batch_size=3, process_index=0, process_count=1))
  assert len(views) == 3  # 3 videos x (1 clip x 3 crops).
  for batch, n in zip(views, lengths):
    np.testing.assert_array_equal(fx.frame_codes(batch['clip']),
                                  np.tile(sampling.segment_indices(n, 12.0, T), (3, 1)))
  cfg.rand_augment = config.RAND_AUGMENT['ssv2']  # The official default runs in tf.data.
  b = next(pipeline.make_train_iterator(cfg, local_batch_size=3, seed=0, process_index=0,
                                        process_count=1))
  assert b['clip'].shape == (3, T, CROP, CROP, 3) and b['clip'].dtype == np.uint8


def test_missing_data_dir_raises_with_the_prepare_command():
  cfg = config.data_config('kinetics400', num_frames=T, sampling_rate=RATE, crop_size=CROP)
  with pytest.raises(MissingInputError, match='python -m mformer_jax.data.prepare kinetics'):
    pipeline.num_examples(cfg, 'train')
  cfg.data_dir = '/nonexistent'
  with pytest.raises(MissingInputError, match='/nonexistent'):
    pipeline.make_train_iterator(cfg, local_batch_size=2, seed=0, process_index=0,
                                 process_count=1)


def test_rand_augment_every_op_is_shared_by_all_frames():
  from mformer_jax.data import randaugment  # pylint: disable=g-import-not-at-top
  assert randaugment.parse('rand-m20-mstd0.5-inc1') == (2, 20.0, 0.5)
  with pytest.raises(ValueError):
    randaugment.parse('rand-m9-inc0')
  frame = np.random.default_rng(0).uniform(0, 255, (1, 24, 24, 3)).astype(np.float32)
  clip = np.repeat(frame, 3, 0)
  for k, name in enumerate(randaugment.OPS):
    out = randaugment._apply_np(clip, np.array([k], np.int32), np.array([0.8], np.float32),  # pylint: disable=protected-access
                                np.array([1.0], np.float32), np.array([True]))
    assert 0 <= out.min() and out.max() <= 255, name
    assert np.abs(out - clip).mean() > 0.1, name  # The op did something ...
    np.testing.assert_array_equal(out, np.broadcast_to(out[0], out.shape))  # ... the same.


# ----------------------------------------------------------------------------------------------
# Bad records: a flipped byte (CRC), a frame that does not decode (CRC intact)
# ----------------------------------------------------------------------------------------------
def _damaged_copy(k400, tmp_path, split, example, how):
  """A copy of the prepared k400 tree with one record damaged (fx.damage_record); returns (data
  config, shard name, video key)."""
  cfg, _, root = k400
  shutil.copytree(root / 'out', tmp_path / 'out')
  bad = cfg.copy_and_resolve_references()
  bad.data_dir = str(tmp_path / 'out')
  return (bad, *fx.damage_record(bad.data_dir, split, example, how))


def _train_batches(cfg, k, start_step=0):
  it = pipeline.make_train_iterator(cfg, local_batch_size=4, seed=5, start_step=start_step,
                                    process_index=0, process_count=1)
  return [next(it) for _ in range(k)], it


def test_a_record_failing_its_crc_is_replaced_by_the_next_one_deterministically(k400, tmp_path):
  """6 videos, batches of 4: video 2's slot goes to the example after it in the epoch's order,
  everything else is the clean run's, and resuming reproduces it (the substitution depends on
  the data only)."""
  cfg, videos, _ = k400
  bad_cfg, shard, key = _damaged_copy(k400, tmp_path, 'train', 2, 'flip')
  bad_cfg.max_bad_fraction = 0.2  # 1 of 6
  clean, _ = _train_batches(cfg, 6)
  damaged, it = _train_batches(bad_cfg, 6)
  (example, found), = it.bad.found.items()
  assert example == 2 and found.startswith(f'{shard} record 0 ({key}): fails its CRC')
  tag = lambda b: [int(t) for t in fx.video_tags(b['clip'])]
  bad_tag, = [t for t, v in videos.items() if v['stem'] in key]
  replaced = 0
  for c, d in zip(clean, damaged):
    for i, (tc, td) in enumerate(zip(tag(c), tag(d))):
      assert td != bad_tag
      if tc == bad_tag:  # the next example of the epoch's order took the slot, labels and all
        replaced += 1
        assert d['label'][i] == videos[td]['label']
      else:
        np.testing.assert_array_equal(c['clip'][i], d['clip'][i])
  assert replaced == 4  # once per epoch: 24 slots, 6 videos
  resumed, _ = _train_batches(bad_cfg, 3, start_step=3)
  for a, b in zip(damaged[3:], resumed):
    np.testing.assert_array_equal(a['clip'], b['clip'])
  # Beyond the budget: one clear error naming the record.
  bad_cfg.max_bad_fraction = 0.1
  with pytest.raises(InputError, match=f'1 of 6 train records .* {shard} record 0'):
    _train_batches(bad_cfg, 6)


def test_eval_leaves_out_a_video_whose_frame_does_not_decode(k400, tmp_path):
  bad_cfg, shard, key = _damaged_copy(k400, tmp_path, 'test', 3, 'jpeg')
  bad_cfg.max_bad_fraction = 0.2
  ev = pipeline.EvalDataset(bad_cfg, local_batch_size=16, process_index=0, process_count=1)
  seen = {int(v) for b in ev for v, m in zip(b['video_index'], b['mask']) if m}
  assert seen == {0, 1, 2, 4, 5}
  (example, found), = ev.bad.found.items()
  assert example == 3 and found.startswith(f'{shard} record 1 ({key}): frame 0 does not decode')


# ----------------------------------------------------------------------------------------------
# A shard cut short (an interrupted copy) or missing
# ----------------------------------------------------------------------------------------------
def _cut_copy(k400, tmp_path, split, example):
  cfg, _, root = k400
  shutil.copytree(root / 'out', tmp_path / 'out')
  bad = cfg.copy_and_resolve_references()
  bad.data_dir = str(tmp_path / 'out')
  return (bad, *fx.cut_shard(bad.data_dir, split, example))


def test_train_records_past_the_cut_of_a_shard_are_bad_records(k400, tmp_path):
  """Shard 1 of 3 cut where its record 1 (example 3) starts: that record is skipped, counted and
  named like one failing its CRC."""
  _, videos, _ = k400
  bad_cfg, shard, key = _cut_copy(k400, tmp_path, 'train', 3)
  bad_cfg.max_bad_fraction = 0.2
  damaged, it = _train_batches(bad_cfg, 2)  # 8 slots: a whole epoch of the 6 videos
  size = os.path.getsize(os.path.join(bad_cfg.data_dir, shard))
  assert it.bad.found == {3: f'{shard} record 1 ({key}): the shard ends at byte {size}, before '
                             'this record (cut short: an interrupted copy?)'}
  bad_tag, = [t for t, v in videos.items() if v['stem'] in key]
  tags = [int(t) for b in damaged for t in fx.video_tags(b['clip'])]
  assert bad_tag not in tags and len(set(tags)) == 5


def test_eval_leaves_out_a_video_past_the_cut_of_a_shard(k400, tmp_path):
  bad_cfg, shard, key = _cut_copy(k400, tmp_path, 'test', 3)
  bad_cfg.max_bad_fraction = 0.2
  size = os.path.getsize(os.path.join(bad_cfg.data_dir, shard))
  ev = pipeline.EvalDataset(bad_cfg, local_batch_size=16, process_index=0, process_count=1)
  seen = {int(v) for b in ev for v, m in zip(b['video_index'], b['mask']) if m}
  assert seen == {0, 1, 2, 4, 5}
  assert ev.bad.found == {3: f'{shard} record 1 ({key}): the shard ends at byte {size}, before '
                             'this record (cut short: an interrupted copy?)'}


def test_a_missing_shard_is_one_line_when_the_split_is_opened(k400, tmp_path):
  cfg, _, root = k400
  shutil.copytree(root / 'out', tmp_path / 'out')
  bad_cfg = cfg.copy_and_resolve_references()
  bad_cfg.data_dir = str(tmp_path / 'out')
  for split in ('train', 'test'):
    os.remove(tmp_path / 'out' / f'{split}-00001-of-00003.tfrecord')
    message = (f'{tmp_path / "out" / split}.json lists a shard that is not there: '
               f'{split}-00001-of-00003.tfrecord. An interrupted copy? Copy the folder again, or '
               'prepare the split again (mformer_jax/data/README.md)')
    with pytest.raises(MissingInputError) as e:
      pipeline.num_examples(bad_cfg, split)
    assert str(e.value) == message
  with pytest.raises(MissingInputError):
    pipeline.EvalDataset(bad_cfg, local_batch_size=16, process_index=0, process_count=1)
  with pytest.raises(MissingInputError):
    pipeline.make_train_iterator(bad_cfg, local_batch_size=2, seed=0, process_index=0,
                                 process_count=1)
  assert pipeline.class_names(bad_cfg) == {'label': ['abseiling', 'zumba']}  # needs no shard


def test_stream_slots_from_any_start_across_epochs():
  stream = pipeline.Stream(10, 15, seed=3, p=1, count=2, start=7)
  for i, (candidates, seed) in enumerate(itertools.islice(stream(3), 12)):
    g = 7 + i
    epoch, pos = divmod(g, 5)
    order = 10 + np.random.default_rng([3, epoch, 1]).permutation(5)
    assert candidates.tolist() == [order[(pos + k) % 5] for k in range(3)]
    assert seed.tolist() == [3, g * 2 + 1]

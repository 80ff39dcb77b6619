"""Train and eval input pipelines over prepared shards or the synthetic dataset.

Determinism and resumption: the example order of epoch e on host p is a permutation seeded by
(seed, e, p), and every example's augmentation seed is (seed, stream position * P + p). Both are
stateless, so `start_step=s` starts the stream at position s * batch without touching (let alone
decoding) the skipped examples, and yields exactly what the uninterrupted iterator would have.

Hosts: process p of P owns the contiguous block [n*p//P, n*(p+1)//P) of examples (so, shards are
written in example order, disjoint groups of shards).

Bad records (prepared shards): every read checks the TFRecord framing's two CRCs (length and
data). A record that fails them, does not parse or holds a frame that does not decode is skipped
like an unreadable video, logged once with its shard and record index, and counted against
data.max_bad_fraction (`CorruptDataError` beyond). In training its slot in the batch goes to
the next readable example of the epoch's order, so stream position i still feeds step i and
resuming stays bitwise (the substitution is a function of the data alone). At evaluation the
video is left out of the metrics and listed as unreadable. A failure whose record turns out
readable is not the data's: it is raised again, with its own traceback.
"""

import functools
import itertools
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.python.lib.io import tf_record  # random access that checks the record CRCs

from mformer_jax.errors import ConfigError, InputError
from mformer_jax.data import CorruptDataError, DatasetNotFoundError, to_model_input
from mformer_jax.data import augment
from mformer_jax.data import synthetic
from mformer_jax.data import video
from mformer_jax.data.config import clip_frames

def _process(process_index, process_count):
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return process_index, process_count


def _block(n, p, count):
  return n * p // count, n * (p + 1) // count


@functools.lru_cache(maxsize=8)
def _summary(data_dir, name, split):
  path = os.path.join(data_dir, f'{split}.json')
  if not data_dir or not tf.io.gfile.exists(path):
    raise DatasetNotFoundError(name, data_dir, split)
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _synthetic(cfg):
  """synthetic_motion, rendered here ('synthetic') or read from its TFDS build ('tfds')."""
  if cfg.source not in ('synthetic', 'prepared', 'tfds'):
    raise ConfigError(f'data.source={cfg.source!r}; expected synthetic, prepared or tfds')
  if cfg.source == 'tfds' and cfg.name != 'synthetic_motion':
    raise ConfigError(f"data.source='tfds' reads synthetic_motion only; {cfg.name} reads the "
                      "prepared shards (data.source='prepared', why: mformer_jax/data/README.md)")
  return cfg.source != 'prepared'


def num_examples(data_cfg, split):
  if _synthetic(data_cfg):
    return data_cfg.synthetic[f'num_{split}']
  return _summary(data_cfg.data_dir, data_cfg.name, split)['num_examples']


def class_names(data_cfg) -> dict:
  """{label key: class names}, e.g. {'label': [...]} or Epic-Kitchens' {'verb', 'noun'}."""
  if _synthetic(data_cfg):
    s = data_cfg.synthetic
    return {'label': synthetic.class_names(s.variant, s.classes)}
  names = _summary(data_cfg.data_dir, data_cfg.name, 'train')['class_names']
  if not isinstance(names, dict):
    names = {'label': names}
  missing = set(data_cfg.label_keys) - set(names)
  if missing:
    raise InputError(f'{data_cfg.data_dir} has class names for {sorted(names)}, not for the '
                     f'label keys {sorted(missing)} of config.data.label_keys')
  return {k: names[k] for k in data_cfg.label_keys}


class _Prepared:
  """Random access to the records of one prepared split."""

  def __init__(self, cfg, split):
    self.cfg = cfg
    self.summary = _summary(cfg.data_dir, cfg.name, split)
    with tf.io.gfile.GFile(os.path.join(cfg.data_dir, f'{split}.index.npz'), 'rb') as f:
      index = dict(np.load(f))
    self.num = self.summary['num_examples']
    paths = [os.path.join(cfg.data_dir, s) for s in self.summary['shards']]
    self.path = tf.gather(tf.constant(paths), index['shard']) if self.num else None
    self.index = {k: tf.constant(v) for k, v in index.items() if k not in ('shard', 'key')}
    self.np_index, self.paths = index, paths

  @staticmethod
  def _read(path, offset, length):
    """One record's bytes, its CRCs checked (tf.errors.DataLossError when they fail)."""
    # Scalars arrive as bytes/ints inside tf.data and as 0-d arrays when run eagerly; `offset`
    # is the data's, after the framing's uint64 length and its uint32 CRC.
    reader = tf_record.tf_record_random_reader(os.fsdecode(np.asarray(path).item()))
    record, _ = reader.read(int(offset) - 12)
    if len(record) != int(length):
      raise tf.errors.DataLossError(None, None, f'record of {len(record)} bytes, the index '
                                    f'says {int(length)}')
    return record

  @staticmethod
  def _parse(record):
    parsed = tf.io.parse_single_sequence_example(
        record, sequence_features={'image/encoded': tf.io.FixedLenSequenceFeature([], tf.string)})
    return parsed[1]['image/encoded']

  def frames(self, example):
    """The encoded JPEGs of one example (a string vector), read by offset."""
    record = tf.numpy_function(
        self._read, [tf.gather(self.path, example), self.index['offset'][example],
                     self.index['length'][example]], tf.string, stateful=False)
    return self._parse(tf.ensure_shape(record, []))

  def describe(self, example) -> str:
    """'<shard> record <k> (<video key>)': where an example lives."""
    shard, offset = self.np_index['shard'], self.np_index['offset']
    e = int(example)
    k = int(np.sum((shard == shard[e]) & (offset < offset[e])))
    return f"{self.summary['shards'][shard[e]]} record {k} ({self.np_index['key'][e]})"

  def diagnose(self, example) -> str:
    """Why an example's record is unusable, or '' when it is fine (the failure was elsewhere)."""
    e = int(example)
    first = lambda err: (str(getattr(err, 'message', err)).strip().splitlines() or [''])[0]
    try:
      record = self._read(self.paths[self.np_index['shard'][e]], self.np_index['offset'][e],
                          self.np_index['length'][e])
    except tf.errors.DataLossError as err:
      return f'fails its CRC ({first(err)})'
    try:
      frames = self._parse(record).numpy()
    except tf.errors.InvalidArgumentError as err:
      return f'does not parse ({first(err)})'
    if len(frames) != self.np_index['num_frames'][e]:
      return f"holds {len(frames)} frames, the index says {self.np_index['num_frames'][e]}"
    for i, frame in enumerate(frames):
      try:
        tf.io.decode_jpeg(frame, channels=3)
      except tf.errors.InvalidArgumentError as err:
        return f'frame {i} does not decode ({first(err)})'
    return ''

  def labels(self, example):
    return {k: self.index[k][example] for k in self.cfg.label_keys}

  def train_example(self, example, seed):
    cfg = self.cfg
    n, fps = self.index['num_frames'][example], self.index['fps'][example]
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
    idx = frame_indices(n, fps, cfg, train_seed=seeds[0])
    clip = train_augment(augment.decode_frames(self.frames(example), idx), seeds[1:], cfg)
    return dict(clip=clip, **self.labels(example))

  def test_example(self, example):
    n, fps = self.index['num_frames'][example], self.index['fps'][example]
    views = test_views(self.frames(example), n, fps, self.cfg, decoded=False)
    return dict(clip=views, video_index=tf.cast(example, tf.int32), **self.labels(example))


def train_augment(frames, seeds, cfg):
  """uint8 (T, H, W, 3) -> normalised float32 (T, S, S, 3); one draw per clip."""
  if cfg.random_resized_crop:
    clip = augment.random_resized_crop(frames, seeds[0], cfg.crop_size)
  else:
    clip = augment.scale_jitter_crop(frames, seeds[0], cfg.crop_size,
                                     cfg.train_jitter_scales, cfg.inverse_uniform_scale)
  clip.set_shape([clip_frames(cfg), cfg.crop_size, cfg.crop_size, 3])
  if cfg.random_flip:
    clip = augment.flip(clip, seeds[1])
  if cfg.rand_augment:
    from mformer_jax.data import randaugment  # pylint: disable=g-import-not-at-top
    clip = randaugment.rand_augment(clip, seeds[2], cfg.rand_augment)
  clip = clip / 255.0
  if cfg.color_jitter:
    clip = augment.color_jitter(clip, seeds[3], cfg.color_jitter_strength)
  return augment.normalise(clip * 255.0, cfg.bgr)


def frame_indices(n, fps, cfg, *, train_seed=None):
  """`_window_indices`, then for the single-frame model one of its frames (random in training,
  the middle one of each test clip): (1,) or (test_num_clips, 1)."""
  idx = _window_indices(n, fps, cfg, train_seed=train_seed)
  if not cfg.single_frame:
    return idx
  if train_seed is None:
    return idx[:, cfg.num_frames // 2:cfg.num_frames // 2 + 1]
  pick = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(train_seed, 2),
                                     0, cfg.num_frames, dtype=tf.int32)
  return idx[pick:pick + 1]


def _window_indices(n, fps, cfg, *, train_seed=None):
  """The frames a clip samples: (T,) for training (random position from `train_seed`), else
  (test_num_clips, T) evenly spaced clips. data.sampler 'linspace' is the Kinetics/EK
  sampler on a 30 fps-equivalent timeline; 'segment' (SSv2) takes one frame per segment
  (random in training, the middle at test, one clip repeated if more are asked for)."""
  if cfg.sampler not in ('linspace', 'segment'):
    raise ConfigError(f'data.sampler={cfg.sampler!r}; expected linspace or segment')
  train = train_seed is not None
  if cfg.sampler == 'segment':
    u = (tf.random.stateless_uniform([cfg.num_frames], train_seed, dtype=tf.float64)
         if train else None)
    span = cfg.segment_span
    if span == 1.0:
      idx = augment.segment_indices(n, fps, cfg.num_frames, u, cfg.target_fps)
    else:  # segments over a window of span x the video: random in training, centred at test
      width = tf.maximum(tf.round(tf.cast(n, tf.float64) * span), 1.0)
      room = tf.cast(n, tf.float64) - width
      start = (tf.floor(tf.random.stateless_uniform(
          [], tf.random.experimental.stateless_fold_in(train_seed, 1), dtype=tf.float64) *
                        (room + 1)) if train else tf.floor(room / 2))
      idx = tf.cast(start, tf.int32) + augment.segment_indices(width, fps, cfg.num_frames, u,
                                                               cfg.target_fps)
    return idx if train else tf.tile(idx[None], [cfg.test_num_clips, 1])
  u = (tf.random.stateless_uniform([], train_seed, dtype=tf.float64) if train else
       tf.range(cfg.test_num_clips, dtype=tf.float64) / cfg.test_num_clips)
  return augment.linspace_indices(n, fps, u, cfg.num_frames, cfg.sampling_rate, cfg.target_fps,
                                  offset=cfg.frame_offset)


def test_views(frames, n, fps, cfg, decoded):
  """(test_num_clips * test_num_crops, T, S, S, 3), clip-major as the official index order.

  `frames`: encoded JPEGs (decoded=False; only the needed ones are decoded) or uint8 frames.
  """
  clips, crops = cfg.test_num_clips, cfg.test_num_crops
  idx = frame_indices(n, fps, cfg)
  frames = tf.gather(frames, idx) if decoded else augment.decode_frames(frames, idx)
  shape = tf.shape(frames)
  flat = tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))
  flat = augment.resize_short_side(flat, cfg.crop_size)
  resized = tf.reshape(flat, tf.concat([shape[:2], tf.shape(flat)[1:]], 0))
  views = augment.three_crops(resized, cfg.crop_size, crops)  # (crops, clips, T, S, S, 3)
  views = tf.reshape(tf.transpose(views, [1, 0, 2, 3, 4, 5]),
                     [clips * crops, clip_frames(cfg), cfg.crop_size, cfg.crop_size, 3])
  return augment.normalise(views, cfg.bgr)


def _synthetic_kwargs(cfg, split):
  s = cfg.synthetic
  return dict(num_frames=cfg.num_frames, size=cfg.crop_size, variant=s.variant, seed=s.seed,
              split=split, classes=s.classes, num_distractors=s.num_distractors,
              background_speed=s.background_speed, with_masks=False, speed=s.speed)


class _SyntheticSource:
  """Synthetic videos by index: rendered (a host's whole block is cached when it is small), or
  read by index from the TFDS build (data.source='tfds'; built in data.data_dir if absent)."""

  def __init__(self, cfg, split, lo, hi, cache_bytes=2**30):
    self.kwargs, self.lo = _synthetic_kwargs(cfg, split), lo
    self.tfds = self.cache = None
    if cfg.source == 'tfds':
      from mformer_jax.data import tfds_builders  # pylint: disable=g-import-not-at-top
      self.tfds = tfds_builders.synthetic_source(cfg, split)
      return
    size = (hi - lo) * cfg.num_frames * cfg.crop_size ** 2 * 3
    self.cache = synthetic.render(np.arange(lo, hi), **self.kwargs) if size <= cache_bytes else None

  def get(self, indices):
    if self.tfds is not None:
      examples = self.tfds.__getitems__([int(i) for i in indices])
      return (np.stack([np.stack(e['clip']) for e in examples]),
              np.array([e['label'] for e in examples], np.int32))
    if self.cache is None:
      data = synthetic.render(indices, **self.kwargs)
      return data.videos, data.labels
    return self.cache.videos[indices - self.lo], self.cache.labels[indices - self.lo]


SUBSTITUTES = 4  # candidates per training slot: its own example, then the next ones in order


class BadRecords:
  """The unreadable records one host's pipeline met: diagnosed, logged once each, counted."""

  def __init__(self, prepared, split: str, share: int, max_fraction: float):
    self.prepared, self.split, self.share, self.max_fraction = prepared, split, share, max_fraction
    self.found = {}  # example -> '<shard> record <k> (<key>): <reason>'

  def describe(self, example) -> str:
    """The entry of `found`, or (an example another host found) the same computed here."""
    e = int(example)
    return self.found.get(e) or f'{self.prepared.describe(e)}: {self.prepared.diagnose(e)}'

  def add(self, examples, rerun) -> None:
    """Counts `examples` as unreadable. rerun(example) repeats the failed computation of one whose
    record reads fine, so that a failure that is not the data's raises with its traceback."""
    for e in map(int, examples):
      if e in self.found:
        continue
      reason = self.prepared.diagnose(e)
      if not reason:
        rerun(e)
        raise RuntimeError(f'{self.split} example {e} failed in the input pipeline, yet its '
                           'record reads, parses and decodes, and it computes alone')
      self.found[e] = f'{self.prepared.describe(e)}: {reason}'
      logging.warning('skipped an unreadable %s record: %s', self.split, self.found[e])
    if len(self.found) > self.max_fraction * self.share:
      listed = '; '.join(list(self.found.values())[:5]) + (' ...' if len(self.found) > 5 else '')
      raise CorruptDataError(
          f'{len(self.found)} of {self.share} {self.split} records '
          f'({100 * len(self.found) / self.share:.1f} %) are unreadable, more than '
          f'data.max_bad_fraction={self.max_fraction:g} allows: {listed}. Prepare the split '
          'again (mformer_jax/data/README.md) or raise --config.data.max_bad_fraction')


class TrainBatches:
  """The training iterator; `bad.found` (prepared data) holds the records skipped so far."""

  def __init__(self, batches, bad=None, rerun=None):
    self._batches, self.bad, self._rerun = batches, bad, rerun

  def __iter__(self):
    return self

  def __next__(self):
    batch = next(self._batches)
    if self.bad is None:
      return batch
    skipped, candidates, seeds = (batch.pop(k) for k in ('_skipped', '_candidates', '_seed'))
    for k, cands, seed in zip(skipped, candidates, seeds):
      if k:
        self.bad.add(cands[:k], lambda e, seed=seed: self._rerun(e, seed))
      if k == SUBSTITUTES:  # the slot holds a placeholder: never train on it
        raise CorruptDataError(f'{SUBSTITUTES} training records in a row of the epoch order are '
                               f'unreadable: {"; ".join(self.bad.found[int(c)] for c in cands)}')
    return batch


def make_train_iterator(data_cfg, *, local_batch_size, seed, start_step=0, process_index=None,
                        process_count=None):
  """Infinite iterator (`TrainBatches`) of {'clip': (b, T, S, S, 3) float32, 'label' |
  'verb','noun': (b,)}."""
  p, count = _process(process_index, process_count)
  n = num_examples(data_cfg, 'train')
  lo, hi = _block(n, p, count)
  if hi <= lo:
    raise InputError(f'Host {p} of {count} has no training examples (n={n}).')

  @functools.lru_cache(maxsize=2)
  def order(epoch):
    return lo + np.random.default_rng([seed, epoch, p]).permutation(hi - lo)

  def stream(start, width=1):
    """(examples, seed) per stream position: its example, then (width > 1) the ones after it in
    the epoch's order, the substitutes for an unreadable record."""
    for g in itertools.count(start):
      epoch, pos = divmod(g, hi - lo)
      yield (order(epoch)[(pos + np.arange(width)) % (hi - lo)],
             np.array([seed, g * count + p], np.int64))

  first = start_step * local_batch_size
  if _synthetic(data_cfg):
    return TrainBatches(_synthetic_batches(data_cfg, stream(first), local_batch_size, lo, hi))
  prepared = _Prepared(data_cfg, 'train')
  ds = tf.data.Dataset.from_generator(
      lambda: stream(first, SUBSTITUTES),
      output_signature=(tf.TensorSpec([SUBSTITUTES], tf.int64), tf.TensorSpec([2], tf.int64)))

  def slot(candidates, example_seed):
    """The first readable candidate, with how many were skipped before it; a placeholder
    (skipped = SUBSTITUTES) when none is, so that every position yields exactly one element."""
    def attempt(example, rank):
      return dict(prepared.train_example(example, example_seed), _skipped=rank,
                  _candidates=candidates, _seed=example_seed)
    tried = tf.data.Dataset.from_tensor_slices(
        (candidates, tf.range(SUBSTITUTES, dtype=tf.int64))).map(attempt).ignore_errors()
    none = tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype), tried.element_spec)
    none.update(_skipped=tf.constant(SUBSTITUTES, tf.int64), _candidates=candidates,
                _seed=example_seed)
    return tried.concatenate(tf.data.Dataset.from_tensors(none)).take(1)

  # A deterministic interleave of one-element datasets keeps the stream's order exactly.
  parallel = data_cfg.num_parallel_calls or tf.data.AUTOTUNE
  ds = ds.interleave(slot, cycle_length=parallel, block_length=1, num_parallel_calls=parallel,
                     deterministic=True)
  ds = ds.batch(local_batch_size, drop_remainder=True).prefetch(data_cfg.prefetch)
  bad = BadRecords(prepared, 'train', hi - lo, data_cfg.max_bad_fraction)
  rerun = lambda e, s: prepared.train_example(tf.constant(e, tf.int64), tf.constant(s))
  return TrainBatches(ds.as_numpy_iterator(), bad, rerun)


def _synthetic_batches(cfg, stream, batch_size, lo, hi):
  source = _SyntheticSource(cfg, 'train', lo, hi)
  while True:
    items = [next(stream) for _ in range(batch_size)]
    videos, labels = source.get(np.array([index[0] for index, _ in items]))
    if cfg.single_frame:  # one random frame per clip, from the example's seed
      pick = [np.random.default_rng([*seed, 2]).integers(cfg.num_frames) for _, seed in items]
      videos = videos[np.arange(batch_size), pick][:, None]
    yield dict(clip=to_model_input(videos, cfg.bgr), label=labels)


class EvalDataset:
  """Test views grouped by video: iterate for batches of `local_batch_size` views with
  'clip', labels, 'video_index' (global, -1 on padding) and 'mask' (False on padding).

  Every host yields `num_batches` batches (the same number on all hosts, as a jitted eval step
  over global arrays requires); each video of the split appears on exactly one host, all its
  views contiguous. Videos skipped at preparation are listed in `skipped` (path, reason);
  records found unreadable while iterating are left out and listed in `bad.found` (prepared
  data; see the module docstring).
  """

  def __init__(self, cfg, local_batch_size, split, process_index, process_count):
    p, count = _process(process_index, process_count)
    self.cfg, self.batch_size, self.split = cfg, local_batch_size, split
    total = num_examples(cfg, split)
    self.lo, self.hi = _block(total, p, count)
    self.num_videos = self.hi - self.lo
    self.views_per_video = cfg.test_num_clips * cfg.test_num_crops
    self.num_batches = -(-(-(-total // count)) * self.views_per_video // local_batch_size)
    if _synthetic(cfg):
      if self.views_per_video != 1:
        raise ConfigError('synthetic_motion clips are rendered at exactly num_frames x '
                          'crop_size, so test_num_clips and test_num_crops must be 1.')
      self.skipped, self.bad = [], None
    else:
      self.skipped = [tuple(s) for s in _summary(cfg.data_dir, cfg.name, split)['skipped']]
      self.bad = BadRecords(_Prepared(cfg, split), split, self.num_videos, cfg.max_bad_fraction)
    self.num_skipped = len(self.skipped)

  def _videos(self):
    """Yields one dict per video, every array with a leading views axis."""
    cfg, views = self.cfg, self.views_per_video
    if _synthetic(cfg):
      source = _SyntheticSource(cfg, self.split, self.lo, self.hi, cache_bytes=0)
      for start in range(self.lo, self.hi, 64):
        videos, labels = source.get(np.arange(start, min(start + 64, self.hi)))
        for i, label in enumerate(labels):
          clip = videos[i:i + 1]
          if cfg.single_frame:  # the middle frame, as frame_indices
            clip = clip[:, cfg.num_frames // 2:cfg.num_frames // 2 + 1]
          yield dict(clip=to_model_input(clip, cfg.bgr),
                     label=np.array([label]), video_index=np.array([start + i], np.int32))
      return
    prepared, parallel = self.bad.prepared, cfg.num_parallel_calls or tf.data.AUTOTUNE
    # One-element datasets, an unreadable one left empty, interleaved in order: the gaps in
    # video_index are the unreadable videos.
    ds = tf.data.Dataset.range(self.lo, self.hi).interleave(
        lambda e: tf.data.Dataset.from_tensors(e).map(prepared.test_example).ignore_errors(),
        cycle_length=parallel, block_length=1, num_parallel_calls=parallel,
        deterministic=True).prefetch(2)
    rerun = lambda e: prepared.test_example(tf.constant(e, tf.int64))
    expected = self.lo
    for example in ds.as_numpy_iterator():
      self.bad.add(range(expected, int(example['video_index'])), rerun)
      expected = int(example['video_index']) + 1
      yield {k: np.repeat(v[None], views, 0) if k != 'clip' else v for k, v in example.items()}
    self.bad.add(range(expected, self.hi), rerun)

  def _empty(self):
    cfg = self.cfg
    shape = (0, clip_frames(cfg), cfg.crop_size, cfg.crop_size, 3)
    return dict(clip=np.zeros(shape, np.float32), video_index=np.zeros(0, np.int32),
                mask=np.zeros(0, bool), **{k: np.zeros(0, np.int32) for k in cfg.label_keys})

  def __iter__(self):
    parts, count, emitted = [self._empty()], 0, 0

    def concat():
      return {k: np.concatenate([p[k] for p in parts]).astype(parts[0][k].dtype)
              for k in parts[0]}
    for example in self._videos():
      example['mask'] = np.ones(self.views_per_video, bool)
      parts.append(example)
      count += self.views_per_video
      while count >= self.batch_size:
        rows = concat()
        yield {k: v[:self.batch_size] for k, v in rows.items()}
        parts, count, emitted = [{k: v[self.batch_size:] for k, v in rows.items()}], \
            count - self.batch_size, emitted + 1
    rows = concat()
    # The remainder, then empty batches: every host yields the same number of batches.
    for _ in range(self.num_batches - emitted):
      missing = self.batch_size - len(rows['mask'])
      fill = dict(clip=0.0, video_index=-1, mask=False)
      yield {k: np.concatenate([v, np.full((missing,) + v.shape[1:], fill.get(k, -1), v.dtype)])
             for k, v in rows.items()}
      rows = self._empty()


def make_eval_dataset(data_cfg, *, local_batch_size, split='test', process_index=None,
                      process_count=None):
  return EvalDataset(data_cfg, local_batch_size, split, process_index, process_count)


def load_video_views(path, data_cfg):
  """Test views (views, T, S, S, 3) float32 of one raw video file, for `predict`."""
  try:
    frames, fps = video.read_video(path)
  except video.VideoError as e:
    raise video.VideoError(f'cannot read {path}: {e}') from e
  views = test_views(tf.constant(np.stack(frames)), len(frames), fps, data_cfg, decoded=True)
  return views.numpy()

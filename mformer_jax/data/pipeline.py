"""Train and eval input pipelines over prepared shards or the synthetic dataset.

Determinism and resumption: the example order of epoch e on host p is a permutation seeded by
(seed, e, p), and every example's augmentation seed is (seed, stream position * P + p). Both are
stateless, so `start_step=s` starts the stream at position s * batch without touching (let alone
decoding) the skipped examples, and yields exactly what the uninterrupted iterator would have.

Hosts: process p of P owns the contiguous block [n*p//P, n*(p+1)//P) of examples (so, shards are
written in example order, disjoint groups of shards).
"""

import functools
import itertools
import json
import os

import numpy as np
import tensorflow as tf

from mformer_jax.data import DatasetNotFoundError, normalise_pixels
from mformer_jax.data import augment
from mformer_jax.data import synthetic
from mformer_jax.data import video

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
    raise ValueError(f'data.source={cfg.source!r}; expected synthetic, prepared or tfds')
  if cfg.source == 'tfds' and cfg.name != 'synthetic_motion':
    raise ValueError(f"data.source='tfds' reads synthetic_motion only; {cfg.name} reads the "
                     "prepared shards (data.source='prepared', why: data/README.md)")
  return cfg.source != 'prepared'


def clip_frames(cfg) -> int:
  """Frames per clip the model gets: data.num_frames, or 1 for the single-frame model."""
  return 1 if cfg.get('single_frame', False) else cfg.num_frames


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
    raise ValueError(f'{data_cfg.data_dir} has class names for {sorted(names)}, not for the '
                     f'label keys {sorted(missing)} of config.data.label_keys')
  return {k: names[k] for k in data_cfg.label_keys}


def _normalise_np(videos, bgr):
  clip = normalise_pixels(videos)
  return clip[..., ::-1] if bgr else clip


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

  def frames(self, example):
    """The encoded JPEGs of one example (a string vector), read by offset."""
    def read(path, offset, length):
      # Scalars arrive as bytes/ints inside tf.data and as 0-d arrays when run eagerly.
      with tf.io.gfile.GFile(os.fsdecode(np.asarray(path).item()), 'rb') as f:
        f.seek(int(offset))
        return f.read(int(length))
    record = tf.numpy_function(
        read, [tf.gather(self.path, example), self.index['offset'][example],
               self.index['length'][example]], tf.string, stateful=False)
    parsed = tf.io.parse_single_sequence_example(
        tf.ensure_shape(record, []),
        sequence_features={'image/encoded': tf.io.FixedLenSequenceFeature([], tf.string)})
    return parsed[1]['image/encoded']

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
  if not cfg.get('single_frame', False):
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
    raise ValueError(f'data.sampler={cfg.sampler!r}; expected linspace or segment')
  train = train_seed is not None
  if cfg.sampler == 'segment':
    u = (tf.random.stateless_uniform([cfg.num_frames], train_seed, dtype=tf.float64)
         if train else None)
    span = cfg.get('segment_span', 1.0)
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
              background_speed=s.background_speed, with_masks=False, speed=s.get('speed', 1.0))


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


def make_train_iterator(data_cfg, *, local_batch_size, seed, start_step=0, process_index=None,
                        process_count=None):
  """Infinite iterator of {'clip': (b, T, S, S, 3) float32, 'label' | 'verb','noun': (b,)}."""
  p, count = _process(process_index, process_count)
  n = num_examples(data_cfg, 'train')
  lo, hi = _block(n, p, count)
  if hi <= lo:
    raise ValueError(f'Host {p} of {count} has no training examples (n={n}).')

  @functools.lru_cache(maxsize=2)
  def order(epoch):
    return lo + np.random.default_rng([seed, epoch, p]).permutation(hi - lo)

  def stream(start):
    for g in itertools.count(start):
      epoch, pos = divmod(g, hi - lo)
      yield order(epoch)[pos], np.array([seed, g * count + p], np.int64)

  first = start_step * local_batch_size
  if _synthetic(data_cfg):
    return _synthetic_batches(data_cfg, stream(first), local_batch_size, lo, hi)
  prepared = _Prepared(data_cfg, 'train')
  ds = tf.data.Dataset.from_generator(
      lambda: stream(first), output_signature=(tf.TensorSpec([], tf.int64),
                                               tf.TensorSpec([2], tf.int64)))
  ds = ds.map(prepared.train_example, num_parallel_calls=data_cfg.num_parallel_calls or
              tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(local_batch_size, drop_remainder=True).prefetch(data_cfg.prefetch)
  return ds.as_numpy_iterator()


def _synthetic_batches(cfg, stream, batch_size, lo, hi):
  source = _SyntheticSource(cfg, 'train', lo, hi)
  while True:
    items = [next(stream) for _ in range(batch_size)]
    videos, labels = source.get(np.array([index for index, _ in items]))
    if cfg.get('single_frame', False):  # one random frame per clip, from the example's seed
      pick = [np.random.default_rng([*seed, 2]).integers(cfg.num_frames) for _, seed in items]
      videos = videos[np.arange(batch_size), pick][:, None]
    yield dict(clip=_normalise_np(videos, cfg.bgr), label=labels)


class EvalDataset:
  """Test views grouped by video: iterate for batches of `local_batch_size` views with
  'clip', labels, 'video_index' (global, -1 on padding) and 'mask' (False on padding).

  Every host yields `num_batches` batches (the same number on all hosts, as a jitted eval step
  over global arrays requires); each video of the split appears on exactly one host, all its
  views contiguous. Videos skipped at preparation are listed in `skipped` (path, reason).
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
        raise ValueError('synthetic_motion clips are rendered at exactly num_frames x '
                         'crop_size, so test_num_clips and test_num_crops must be 1.')
      self.skipped = []
    else:
      self.skipped = [tuple(s) for s in _summary(cfg.data_dir, cfg.name, split)['skipped']]
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
          if cfg.get('single_frame', False):  # the middle frame, as frame_indices
            clip = clip[:, cfg.num_frames // 2:cfg.num_frames // 2 + 1]
          yield dict(clip=_normalise_np(clip, cfg.bgr),
                     label=np.array([label]), video_index=np.array([start + i], np.int32))
      return
    prepared = _Prepared(cfg, self.split)
    ds = tf.data.Dataset.range(self.lo, self.hi).map(
        prepared.test_example, num_parallel_calls=cfg.num_parallel_calls or tf.data.AUTOTUNE,
        deterministic=True).prefetch(2)
    for example in ds.as_numpy_iterator():
      yield {k: np.repeat(v[None], views, 0) if k != 'clip' else v for k, v in example.items()}

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

"""Where examples come from: prepared shards, the synthetic set rendered in memory, or its TFDS
build (config.data.source), behind one interface that the pipelines use.

A source of one split has `num_examples`, `class_names()`, `skipped` (videos left out at
preparation: (path, reason)), `open()` (checks the split's files; returns the `shards.Shards`
whose unreadable records the pipelines count, or None), `check_eval(views_per_video)`, and two
iterators:
`train_batches(stream, batch_size, lo, hi)` (a `pipeline.Stream` of (candidate examples, seed)
per stream position -> batches) and `eval_videos(lo, hi)` (one dict per video, in order). `get` picks the
source.
"""

import itertools

import numpy as np
import tensorflow as tf

from mformer_jax.errors import ConfigError, InputError
from mformer_jax.data import shards
from mformer_jax.data import synthetic
from mformer_jax.data import to_model_input
from mformer_jax.data import transforms

SOURCES = ('synthetic', 'prepared', 'tfds')
SUBSTITUTES = 4  # candidates per training slot: its own example, then the next ones in order


def get(cfg, split):
  """The source config.data names, for `split`; reads at most the split's summary."""
  if cfg.source not in SOURCES:
    raise ConfigError(f'data.source={cfg.source!r}; expected synthetic, prepared or tfds')
  if cfg.source == 'tfds' and cfg.name != 'synthetic_motion':
    raise ConfigError(f"data.source='tfds' reads synthetic_motion only; {cfg.name} reads the "
                      "prepared shards (data.source='prepared', why: mformer_jax/data/README.md)")
  return {'prepared': Prepared, 'synthetic': Synthetic, 'tfds': SyntheticTfds}[cfg.source](
      cfg, split)


class Prepared:
  """The shards of `python -m mformer_jax.data.prepare` in data.data_dir. Training batches carry
  '_skipped', '_candidates' and '_seed' per slot: which candidates were unreadable."""

  def __init__(self, cfg, split):
    self.cfg, self.split = cfg, split
    self.summary = shards.summary(cfg.data_dir, cfg.name, split)
    self.num_examples = self.summary['num_examples']
    self.skipped = [tuple(s) for s in self.summary['skipped']]
    self._records = None

  def open(self):
    """The split's shards, checked when first opened (a missing one: MissingInputError)."""
    if self._records is None:
      self._records = shards.Shards(self.cfg.data_dir, self.cfg.name, self.split)
    return self._records

  def class_names(self) -> dict:
    cfg = self.cfg
    names = shards.summary(cfg.data_dir, cfg.name, 'train')['class_names']
    if not isinstance(names, dict):
      names = {'label': names}
    missing = set(cfg.label_keys) - set(names)
    if missing:
      raise InputError(f'{cfg.data_dir} has class names for {sorted(names)}, not for the '
                       f'label keys {sorted(missing)} of config.data.label_keys')
    return {k: names[k] for k in cfg.label_keys}

  def check_eval(self, views_per_video):
    del views_per_video  # any number of views: cut from the stored frames

  def _labels(self, example):
    return {k: self.open().index[k][example] for k in self.cfg.label_keys}

  def train_example(self, example, seed):
    cfg, records = self.cfg, self.open()
    n, fps = records.index['num_frames'][example], records.index['fps'][example]
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
    idx = transforms.frame_indices(n, fps, cfg, train_seed=seeds[0])
    return dict(transforms.train_clip(records.decoded(example, idx), seeds[1:], cfg),
                **self._labels(example))

  def test_example(self, example):
    records = self.open()
    n, fps = records.index['num_frames'][example], records.index['fps'][example]
    views = transforms.test_views(lambda idx: records.decoded(example, idx), n, fps, self.cfg)
    return dict(clip=views, video_index=tf.cast(example, tf.int32), **self._labels(example))

  def train_batches(self, stream, batch_size, lo, hi):
    """Every stream position yields one slot: the first readable of its SUBSTITUTES candidates,
    or a placeholder (_skipped = SUBSTITUTES) when none is.

    tf.data computes each slot's first candidate (a parallel, deterministic map whose errors
    drop the element); a position missing from its output is filled here by trying the other
    candidates in order, with the same traced function. Unreadable records are rare, and a
    per-slot dataset of candidates would instantiate the clip's whole graph for every clip
    (half of a clip's cost, measured)."""
    del lo, hi  # the stream holds the host's examples
    self.open()  # here, eagerly: the functions traced below capture its tensors
    spec = (tf.TensorSpec([SUBSTITUTES], tf.int64), tf.TensorSpec([2], tf.int64))
    # Slots an epoch at a time: Python per element upstream of the clip's map (from_generator)
    # doubled a clip's cost on one core (measured: its page faults), once per epoch does not.
    first, skip = divmod(stream.start, stream.size)
    epoch = lambda e: tf.data.Dataset.from_tensor_slices(tuple(
        tf.ensure_shape(x, [None, *s.shape]) for x, s in zip(tf.numpy_function(
            lambda e: stream.epoch(int(e), SUBSTITUTES), [e], [tf.int64, tf.int64],
            stateful=False), spec)))
    ds = tf.data.Dataset.range(first, 2**62).flat_map(epoch).skip(skip)
    parallel = self.cfg.num_parallel_calls or tf.data.AUTOTUNE
    firsts = ds.enumerate().map(
        lambda position, x: (position, self.train_example(x[0][0], x[1])),
        num_parallel_calls=parallel, deterministic=True).ignore_errors()
    firsts = firsts.prefetch(batch_size * self.cfg.prefetch).as_numpy_iterator()
    attempt = tf.function(self.train_example,
                          input_signature=(tf.TensorSpec([], tf.int64), spec[1]))
    positions, pending = enumerate(stream(SUBSTITUTES)), next(firsts, None)
    while True:
      slots = []
      for position, (candidates, seed) in itertools.islice(positions, batch_size):
        if pending is not None and pending[0] == position:
          slot, skipped, pending = pending[1], 0, next(firsts, None)
        else:
          slot, skipped = self._substitute(attempt, candidates, seed)
        slots.append(dict(slot, _skipped=skipped, _candidates=candidates, _seed=seed))
      yield {k: np.stack([slot[k] for slot in slots]) for k in slots[0]}

  def _substitute(self, attempt, candidates, seed):
    """(clip dict, rank) of the first readable candidate after the first (which failed), or a
    placeholder of zeros and SUBSTITUTES."""
    for rank in range(1, SUBSTITUTES):
      try:
        return {k: v.numpy() for k, v in attempt(candidates[rank], seed).items()}, rank
      except tf.errors.OpError:
        continue
    spec = attempt.get_concrete_function().structured_outputs
    return {k: np.zeros(v.shape, v.dtype.as_numpy_dtype) for k, v in spec.items()}, SUBSTITUTES

  def eval_videos(self, lo, hi):
    """Per video, in order: test views, labels, video_index; an unreadable one is left out (the
    gaps in video_index are the unreadable videos)."""
    self.open()  # here, eagerly: the functions traced below capture its tensors
    parallel = self.cfg.num_parallel_calls or tf.data.AUTOTUNE
    ds = tf.data.Dataset.range(lo, hi).map(self.test_example, num_parallel_calls=parallel,
                                           deterministic=True).ignore_errors().prefetch(2)
    return ds.as_numpy_iterator()


class Synthetic:
  """synthetic_motion rendered here; a host's whole training block is cached when it is small."""

  skipped = ()

  def __init__(self, cfg, split):
    self.cfg, self.split = cfg, split
    self.num_examples = cfg.synthetic[f'num_{split}']

  def open(self):
    return None  # nothing to check: rendered, or built by TFDS on first use

  def class_names(self) -> dict:
    s = self.cfg.synthetic
    return {'label': synthetic.class_names(s.variant, s.classes)}

  def check_eval(self, views_per_video):
    if views_per_video != 1:
      raise ConfigError('synthetic_motion clips are rendered at exactly num_frames x '
                        'crop_size, so test_num_clips and test_num_crops must be 1.')

  def _render_kwargs(self):
    cfg, s = self.cfg, self.cfg.synthetic
    return dict(num_frames=cfg.num_frames, size=cfg.crop_size, variant=s.variant, seed=s.seed,
                split=self.split, classes=s.classes, num_distractors=s.num_distractors,
                background_speed=s.background_speed, with_masks=False, speed=s.speed)

  def _clips(self, lo, hi, cache_bytes):
    """indices -> (uint8 videos, labels) of examples in [lo, hi)."""
    kwargs, cfg = self._render_kwargs(), self.cfg
    size = (hi - lo) * cfg.num_frames * cfg.crop_size ** 2 * 3
    if size > cache_bytes:
      def render(indices):
        data = synthetic.render(indices, **kwargs)
        return data.videos, data.labels
      return render
    cache = synthetic.render(np.arange(lo, hi), **kwargs)
    return lambda indices: (cache.videos[indices - lo], cache.labels[indices - lo])

  def train_batches(self, stream, batch_size, lo, hi):
    cfg, clips, positions = self.cfg, self._clips(lo, hi, cache_bytes=2**30), stream(1)
    while True:
      items = [next(positions) for _ in range(batch_size)]
      videos, labels = clips(np.array([index[0] for index, _ in items]))
      if cfg.single_frame:  # one random frame per clip, from the example's seed
        pick = [np.random.default_rng([*seed, 2]).integers(cfg.num_frames) for _, seed in items]
        videos = videos[np.arange(batch_size), pick][:, None]
      yield dict(clip=videos, label=labels)  # uint8: the training step normalises

  def eval_videos(self, lo, hi):
    cfg, clips = self.cfg, self._clips(lo, hi, cache_bytes=0)
    for start in range(lo, hi, 64):
      videos, labels = clips(np.arange(start, min(start + 64, hi)))
      for i, label in enumerate(labels):
        clip = videos[i:i + 1]
        if cfg.single_frame:  # the middle frame, as transforms.frame_indices
          clip = clip[:, cfg.num_frames // 2:cfg.num_frames // 2 + 1]
        yield dict(clip=to_model_input(clip, cfg.bgr),
                   label=np.array([label]), video_index=np.array([start + i], np.int32))


class SyntheticTfds(Synthetic):
  """synthetic_motion read by index from its TFDS build (built in data.data_dir if absent)."""

  def _clips(self, lo, hi, cache_bytes):
    del lo, hi, cache_bytes
    from mformer_jax.data import tfds_builders  # pylint: disable=g-import-not-at-top  (slow import)
    source = tfds_builders.synthetic_source(self.cfg, self.split)

    def clips(indices):
      examples = source.__getitems__([int(i) for i in indices])
      return (np.stack([np.stack(e['clip']) for e in examples]),
              np.array([e['label'] for e in examples], np.int32))
    return clips

"""Train and eval input pipelines over a `sources` source (prepared shards, or the synthetic set).

Determinism and resumption: the example order of epoch e on host p is a permutation seeded by
(seed, e, p), and every example's augmentation seed is (seed, stream position * P + p). Both are
stateless, so `start_step=s` starts the stream at position s * batch without touching (let alone
decoding) the skipped examples, and yields exactly what the uninterrupted iterator would have.

Hosts: process p of P owns the contiguous block [n*p//P, n*(p+1)//P) of examples (so, shards are
written in example order, disjoint groups of shards).

Bad records (prepared shards): every read checks the TFRecord framing's two CRCs (length and
data). A record that fails them, does not parse or holds a frame that does not decode is skipped
like an unreadable video, logged once with its shard and record index, and counted against
data.max_bad_fraction (an `InputError` beyond). In training its slot in the batch goes to
the next readable example of the epoch's order, so stream position i still feeds step i and
resuming stays bitwise (the substitution is a function of the data alone). At evaluation the
video is left out of the metrics and listed as unreadable. A failure whose record turns out
readable is not the data's: it is raised again, with its own traceback.
"""

import functools
import itertools

import numpy as np
import tensorflow as tf
from absl import logging

from mformer_jax.errors import InputError
from mformer_jax.data import augment
from mformer_jax.data import sources
from mformer_jax.data import transforms
from mformer_jax.data import video
from mformer_jax.data.config import clip_frames


def _process(process_index, process_count):
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  (data imports no jax unless asked)
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return process_index, process_count


def _block(n, p, count):
  return n * p // count, n * (p + 1) // count


def num_examples(data_cfg, split):
  """Examples in `split`, which this opens: a prepared split's shards are checked here (a missing
  one is a MissingInputError, before the caller compiles anything)."""
  source = sources.get(data_cfg, split)
  source.open()
  return source.num_examples


def class_names(data_cfg) -> dict:
  """{label key: class names}, e.g. {'label': [...]} or Epic-Kitchens' {'verb', 'noun'}."""
  return sources.get(data_cfg, 'train').class_names()


class BadRecords:
  """The unreadable records one host's pipeline met: diagnosed, logged once each, counted."""

  def __init__(self, records, split: str, share: int, max_fraction: float):
    self.records, self.split, self.share, self.max_fraction = records, split, share, max_fraction
    self.found = {}  # example -> '<shard> record <k> (<key>): <reason>'

  def describe(self, example) -> str:
    """The entry of `found`, or (an example another host found) the same computed here."""
    e = int(example)
    return self.found.get(e) or f'{self.records.describe(e)}: {self.records.diagnose(e)}'

  def add(self, examples, rerun) -> None:
    """Counts `examples` as unreadable. rerun(example) repeats the failed computation of one whose
    record reads fine, so that a failure that is not the data's raises with its traceback."""
    for e in map(int, examples):
      if e in self.found:
        continue
      reason = self.records.diagnose(e)
      if not reason:
        rerun(e)
        raise RuntimeError(f'{self.split} example {e} failed in the input pipeline, yet its '
                           'record reads, parses and decodes, and it computes alone')
      self.found[e] = f'{self.records.describe(e)}: {reason}'
      logging.warning('skipped an unreadable %s record: %s', self.split, self.found[e])
    if len(self.found) > self.max_fraction * self.share:
      listed = '; '.join(list(self.found.values())[:5]) + (' ...' if len(self.found) > 5 else '')
      raise InputError(
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
      if k == sources.SUBSTITUTES:  # the slot holds a placeholder: never train on it
        raise InputError(f'{k} training records in a row of the epoch order are '
                         f'unreadable: {"; ".join(self.bad.found[int(c)] for c in cands)}')
    return batch


class Stream:
  """One host's training slots from stream position `start` on: slot g holds epoch g // size's
  example at g % size of that epoch's order (a permutation seeded by (seed, epoch, host)), then
  (width > 1) the ones after it in that order, the substitutes for an unreadable record, and
  its augmentation seed (seed, g * count + p)."""

  def __init__(self, lo, hi, seed, p, count, start):
    self.lo, self.size, self.seed, self.p, self.count, self.start = lo, hi - lo, seed, p, count, start

  @functools.lru_cache(maxsize=2)
  def order(self, epoch):
    return self.lo + np.random.default_rng([self.seed, epoch, self.p]).permutation(self.size)

  def epoch(self, epoch, width):
    """Every slot of `epoch`: (candidates (size, width), seeds (size, 2)), int64."""
    pos = np.arange(self.size)
    g = epoch * self.size + pos
    candidates = self.order(epoch)[(pos[:, None] + np.arange(width)) % self.size]
    seeds = np.stack([np.full(self.size, self.seed), g * self.count + self.p], 1)
    return candidates.astype(np.int64), seeds.astype(np.int64)

  def __call__(self, width):
    """The slots from `start` on, one (candidates, seed) at a time."""
    first, skip = divmod(self.start, self.size)
    for epoch in itertools.count(first):
      candidates, seeds = self.epoch(epoch, width)
      yield from zip(candidates[skip:], seeds[skip:])
      skip = 0


def make_train_iterator(data_cfg, *, local_batch_size, seed, start_step=0, process_index=None,
                        process_count=None):
  """Infinite iterator (`TrainBatches`) of {'clip': (b, T, S, S, 3) float32, 'label' |
  'verb','noun': (b,)}."""
  p, count = _process(process_index, process_count)
  source = sources.get(data_cfg, 'train')
  records = source.open()
  n = source.num_examples
  lo, hi = _block(n, p, count)
  if hi <= lo:
    raise InputError(f'Host {p} of {count} has no training examples (n={n}).')

  stream = Stream(lo, hi, seed, p, count, start_step * local_batch_size)
  batches = source.train_batches(stream, local_batch_size, lo, hi)
  if records is None:
    return TrainBatches(batches)
  bad = BadRecords(records, 'train', hi - lo, data_cfg.max_bad_fraction)
  rerun = lambda e, s: source.train_example(tf.constant(e, tf.int64), tf.constant(s))
  return TrainBatches(batches, bad, rerun)


class EvalDataset:
  """Test views grouped by video: iterate for batches of `local_batch_size` views with
  'clip', labels, 'video_index' (global, -1 on padding) and 'mask' (False on padding).

  Every host yields `num_batches` batches (the same number on all hosts, as a jitted eval step
  over global arrays requires); each video of the split appears on exactly one host, all its
  views contiguous. Videos skipped at preparation are listed in `skipped` (path, reason);
  records found unreadable while iterating are left out and listed in `bad.found` (prepared
  data; see the module docstring).
  """

  def __init__(self, cfg, *, local_batch_size, split='test', process_index=None,
               process_count=None):
    p, count = _process(process_index, process_count)
    self.cfg, self.batch_size, self.split = cfg, local_batch_size, split
    self.source = sources.get(cfg, split)
    records = self.source.open()
    total = self.source.num_examples
    self.lo, self.hi = _block(total, p, count)
    self.num_videos = self.hi - self.lo
    self.views_per_video = cfg.test_num_clips * cfg.test_num_crops
    self.num_batches = -(-(-(-total // count)) * self.views_per_video // local_batch_size)
    self.source.check_eval(self.views_per_video)
    self.skipped = list(self.source.skipped)
    self.bad = (BadRecords(records, split, self.num_videos, cfg.max_bad_fraction)
                if records is not None else None)
    self.num_skipped = len(self.skipped)

  def _videos(self):
    """Yields one dict per video, every array with a leading views axis."""
    videos = self.source.eval_videos(self.lo, self.hi)
    if self.bad is None:
      yield from videos
      return
    rerun = lambda e: self.source.test_example(tf.constant(e, tf.int64))
    expected = self.lo
    for example in videos:  # the gaps in video_index are the unreadable videos
      self.bad.add(range(expected, int(example['video_index'])), rerun)
      expected = int(example['video_index']) + 1
      yield {k: np.repeat(v[None], self.views_per_video, 0) if k != 'clip' else v
             for k, v in example.items()}
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


def load_video_views(path, data_cfg):
  """Test views (views, T, S, S, 3) float32 of one raw video file, for `predict` and `features`:
  `transforms.test_views` of the whole video, computed from the frames the views sample alone,
  each resized as it is decoded (`video.read_frames`), so memory grows with the clips, not with
  the video. A video shorter than a clip fills it with repeated frames, and says so."""
  wanted = lambda n, fps: transforms.frame_indices(n, fps, data_cfg).numpy()
  resize = lambda frame: augment.resize_short_side(frame, data_cfg.crop_size).numpy()
  try:
    kept, frames, n, fps = video.read_frames(path, wanted, resize)
  except InputError as e:
    raise InputError(f'cannot read {path}: {e}') from e
  idx = wanted(n, fps)  # (clips, T)
  distinct = min(len(np.unique(clip)) for clip in idx)
  if distinct < idx.shape[1]:
    logging.warning('%s: %d frames at %g fps, shorter than a clip samples: %d distinct frames '
                    'fill each clip of %d (frames repeated)', path, n, fps, distinct,
                    idx.shape[1])
  clips = np.stack(frames)[np.searchsorted(kept, idx)]  # (clips, T, h, w, 3)
  return transforms.crop_views(tf.constant(clips), data_cfg).numpy()

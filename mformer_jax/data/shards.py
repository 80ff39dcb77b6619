"""Random access to the records of a prepared split (the shards `mformer_jax.data.prepare`
writes), by example index, and why a record is unusable when one is.

Every read checks the TFRecord framing's two CRCs (length and data); the index gives each
example's shard, byte offset and length, so a read touches one record only. Opening a split
checks that every shard its summary lists is there (a missing one is a MissingInputError, before
anything is read) and says which are shorter than the index says (an interrupted copy): their
records past the cut are unreadable records, like one failing its CRC.
"""

import concurrent.futures
import functools
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.python.lib.io import tf_record  # random access that checks the record CRCs

from mformer_jax.errors import MissingInputError
from mformer_jax.data import augment
from mformer_jax.data import dataset_not_found
from mformer_jax.data import records


@functools.lru_cache(maxsize=8)
def summary(data_dir, name, split) -> dict:
  """The split's {split}.json: example count, class names, shards, videos skipped at preparation."""
  path = os.path.join(data_dir, f'{split}.json')
  if not data_dir or not tf.io.gfile.exists(path):
    raise dataset_not_found(name, data_dir, split)
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _size(path):
  try:
    return tf.io.gfile.stat(path).length
  except tf.errors.NotFoundError:
    return None


@functools.lru_cache(maxsize=8)
def _opened(data_dir, name, split):
  """(summary, index) of a split whose shards are all there; see the module docstring. Cached:
  the trainer opens its splits at start and at every evaluation, and a bucket answers each stat
  in tens of ms (so they run in parallel)."""
  info = summary(data_dir, name, split)
  with tf.io.gfile.GFile(os.path.join(data_dir, f'{split}.index.npz'), 'rb') as f:
    index = dict(np.load(f))
  names = info['shards']
  with concurrent.futures.ThreadPoolExecutor(16) as pool:
    sizes = list(pool.map(_size, [os.path.join(data_dir, n) for n in names]))
  missing = [n for n, size in zip(names, sizes) if size is None]
  if missing:
    listed = (f'a shard that is not there: {missing[0]}' if len(missing) == 1 else
              f'{len(missing)} shards that are not there: {", ".join(missing[:3])}' +
              (' ...' if len(missing) > 3 else ''))
    raise MissingInputError(
        f'{os.path.join(data_dir, split)}.json lists {listed}. An interrupted copy? Copy the '
        'folder again, or prepare the split again (mformer_jax/data/README.md)')
  ends = index['offset'] + index['length'] + 4  # the data's CRC closes a record
  for k, (shard, size) in enumerate(zip(names, sizes)):
    mine = index['shard'] == k
    lost = int(np.sum(mine & (ends > size)))
    if lost:
      logging.warning('%s is cut short (an interrupted copy?): %d bytes, its index says %d; '
                      '%d of its %d records will be skipped as unreadable', shard, size,
                      ends[mine].max(), lost, int(np.sum(mine)))
  return info, index


class Shards:
  """The records of one prepared split: `frames` and `decoded` as TensorFlow ops (inside
  tf.data), `describe` / `diagnose` in Python for the bad-record report."""

  def __init__(self, data_dir, name, split):
    self.summary, index = _opened(data_dir, name, split)
    self.num = self.summary['num_examples']
    paths = [os.path.join(data_dir, s) for s in self.summary['shards']]
    self.path = tf.gather(tf.constant(paths), index['shard']) if self.num else None
    self.index = {k: tf.constant(v) for k, v in index.items() if k not in ('shard', 'key')}
    self.np_index, self.paths = index, paths

  @staticmethod
  def _read(path, offset, length):
    """One record's bytes, its CRCs checked (tf.errors.DataLossError when they fail), by
    TensorFlow's reader: the diagnosis's, independent of the pipelines' `records.read_record`.
    `offset` is the data's, after the framing's uint64 length and its uint32 CRC."""
    reader = tf_record.tf_record_random_reader(path)
    record, _ = reader.read(int(offset) - 12)
    if len(record) != int(length):
      raise tf.errors.DataLossError(None, None, f'record of {len(record)} bytes, the index '
                                    f'says {int(length)}')
    return record

  @staticmethod
  def _parse(record):
    """All the record's encoded frames, by TensorFlow's parser (the diagnosis's)."""
    parsed = tf.io.parse_single_sequence_example(
        record, sequence_features={'image/encoded': tf.io.FixedLenSequenceFeature([], tf.string)})
    return parsed[1]['image/encoded']

  def frames(self, example, indices=None):
    """The encoded JPEGs of one example (a string vector), all of them or those at `indices`,
    read by offset (`records.read_frames`: only those are cut out of the record)."""
    n = self.index['num_frames'][example]
    indices = tf.range(n) if indices is None else tf.cast(indices, tf.int64)
    read = lambda path, offset, length, idx, num: np.array(
        records.read_frames(os.fsdecode(np.asarray(path).item()), int(offset), int(length),
                            idx.tolist(), int(num)), object)
    encoded = tf.numpy_function(
        read, [tf.gather(self.path, example), self.index['offset'][example],
               self.index['length'][example], indices, n], tf.string, stateful=False)
    return tf.ensure_shape(encoded, indices.shape)

  def decoded(self, example, indices):
    """uint8 frames of shape indices.shape + (H, W, 3): each distinct frame read and decoded
    once, the others never touched."""
    return augment.decode_frames(lambda unique: self.frames(example, unique), indices)

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
    path, offset, length = (self.paths[self.np_index['shard'][e]], self.np_index['offset'][e],
                            self.np_index['length'][e])
    size = _size(path)  # now: the shard may have changed since the split was opened
    if size is None:
      return 'its shard is missing'
    if size < offset + length + 4:
      return (f'the shard ends at byte {size}, before this record'
              f'{" ends" if size > offset - 12 else ""} (cut short: an interrupted copy?)')
    try:
      record = self._read(path, offset, length)
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

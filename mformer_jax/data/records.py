"""Reading a prepared record's frames without TensorFlow's record reader: one read of the
record's bytes, both TFRecord CRCs checked, and only the JPEGs a clip samples cut out of the
serialized `tf.train.SequenceExample` (so a clip does not copy the ~300 frames it does not use).

TensorFlow's random-access reader (`shards.Shards._read`, kept for the bad-record diagnosis and as
the reference the tests compare with) computes CRC32C in software and the sequence parser copies
every frame: ~20 ms of a ~30 ms training clip on one core. Here the CRC is `google_crc32c`'s
(hardware) and the protobuf wire format is walked by hand, ~2 ms. Any failure raises
`RecordError`; the pipelines skip the example and `Shards.diagnose` says why.
"""

import os

import google_crc32c

FRAMES_KEY = b'image/encoded'  # the feature list `prepare` writes one JPEG per frame into
_HEADER = 12  # uint64 length + its masked CRC32C; the data's masked CRC32C follows the data


class RecordError(ValueError):
  """A record that fails its CRCs, is shorter than its index says, or does not parse."""


def masked_crc(data) -> int:
  """TFRecord's masked CRC32C of `data`."""
  crc = google_crc32c.value(bytes(data) if isinstance(data, memoryview) else data)
  return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


def read_record(path: str, offset: int, length: int) -> bytes:
  """The record whose data starts at byte `offset` of the shard at `path` (local or any
  filesystem tf.io.gfile knows), its length and both CRCs checked."""
  start = offset - _HEADER
  if '://' in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (remote shards only)
    with tf.io.gfile.GFile(path, 'rb') as f:
      f.seek(start)
      raw = f.read(length + _HEADER + 4)
  else:
    with open(path, 'rb') as f:
      raw = os.pread(f.fileno(), length + _HEADER + 4, start)
  if len(raw) != length + _HEADER + 4:
    raise RecordError(f'the shard ends {length + _HEADER + 4 - len(raw)} bytes before the record')
  view = memoryview(raw)
  if int.from_bytes(view[:8], 'little') != length:
    raise RecordError(f'record of {int.from_bytes(view[:8], "little")} bytes, the index says '
                      f'{length}')
  if int.from_bytes(view[8:12], 'little') != masked_crc(view[:8]):
    raise RecordError('the record length fails its CRC')
  data = raw[_HEADER:_HEADER + length]
  if int.from_bytes(view[-4:], 'little') != masked_crc(data):
    raise RecordError('the record data fails its CRC')
  return data


def _varint(buf, i):
  value, shift = 0, 0
  while True:
    byte = buf[i]
    i += 1
    value |= (byte & 0x7f) << shift
    if byte < 0x80:
      return value, i
    shift += 7


def _fields(buf, start, end):
  """(field number, value start, value end) of each length-delimited field in buf[start:end];
  the other wire types are skipped."""
  i = start
  while i < end:
    key, i = _varint(buf, i)
    wire = key & 7
    if wire == 2:
      size, i = _varint(buf, i)
      if i + size > end:
        raise RecordError('a field runs past its message')
      yield key >> 3, i, i + size
      i += size
    elif wire == 0:
      _, i = _varint(buf, i)
    elif wire in (1, 5):
      i += 8 if wire == 1 else 4
    else:
      raise RecordError(f'wire type {wire} in a SequenceExample')
  if i != end:
    raise RecordError('a message runs past its end')


def _only(buf, start, end, number):
  """The one length-delimited field `number` of a message, as (start, end)."""
  found = [(s, e) for n, s, e in _fields(buf, start, end) if n == number]
  if len(found) != 1:
    raise RecordError(f'{len(found)} fields {number} where one was expected')
  return found[0]


def frame_spans(record: bytes) -> list:
  """[(start, end)] of each stored frame's `tf.train.Feature` in a serialized SequenceExample
  (SequenceExample.feature_lists = 2 -> FeatureLists.feature_list map entries = 1, each with key
  = 1 and FeatureList = 2 -> FeatureList.feature = 1)."""
  try:
    for number, start, end in _fields(record, 0, len(record)):
      if number != 2:
        continue
      for entry, e_start, e_end in _fields(record, start, end):
        fields = {n: (s, e) for n, s, e in _fields(record, e_start, e_end)}
        if entry == 1 and 1 in fields and record[slice(*fields[1])] == FRAMES_KEY:
          value = fields.get(2, (0, 0))
          return [(s, e) for n, s, e in _fields(record, *value) if n == 1]
  except IndexError as e:  # a varint cut off by the end of the record
    raise RecordError('the record is cut off inside a field') from e
  raise RecordError(f'no {FRAMES_KEY.decode()} feature list')


def jpeg(record: bytes, span) -> bytes:
  """The bytes of one frame: Feature.bytes_list = 1 -> BytesList.value = 1."""
  try:
    return record[slice(*_only(record, *_only(record, *span, 1), 1))]
  except IndexError as e:
    raise RecordError('the record is cut off inside a frame') from e


def read_frames(path, offset, length, indices, num_frames):
  """The encoded JPEGs at `indices` of the record (a list of bytes): the fast path of
  `shards.Shards.frames`. `num_frames` is the index's count, which the record must hold."""
  record = read_record(path, offset, length)
  spans = frame_spans(record)
  if len(spans) != num_frames:
    raise RecordError(f'holds {len(spans)} frames, the index says {num_frames}')
  if any(not 0 <= i < num_frames for i in indices):
    raise RecordError(f'frames {list(indices)} asked of a record of {num_frames}')
  return [jpeg(record, spans[i]) for i in indices]

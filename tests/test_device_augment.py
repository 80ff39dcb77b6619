"""The training pipeline's fast path against its references: records read by hand against
TensorFlow's reader and parser, and uint8 crops finished in the step (`device_augment`) against
the whole recipe in TensorFlow (`transforms.train_augment`)."""

import itertools

import jax
import numpy as np
import pytest
import tensorflow as tf

import data_fixtures as fx
from mformer_jax.data import augment
from mformer_jax.data import config
from mformer_jax.data import device_augment
from mformer_jax.data import pipeline
from mformer_jax.data import records
from mformer_jax.data import shards
from mformer_jax.data import transforms

T, CROP = 4, 32
ROUNDING = 0.5 / 127.5  # half a grey level of the uint8 crop, in model-input units
# Brightness scales an input error by at most 1 + s; contrast and saturation, which mix a pixel
# with a mean that carries the same error, by at most (1 + s) + s each.
JITTER_GAIN = 1.4 * 1.8 * 1.8


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  out, videos = fx.prepared_kinetics(str(tmp_path_factory.mktemp('fast')))
  return out, videos


def test_records_read_the_frames_tensorflow_reads(prepared):
  out, _ = prepared
  split = shards.Shards(out, 'kinetics400', 'train')
  ix = split.np_index
  for e in range(split.num):
    path = split.paths[ix['shard'][e]]
    offset, length, n = int(ix['offset'][e]), int(ix['length'][e]), int(ix['num_frames'][e])
    reference = list(split._parse(split._read(path, offset, length)).numpy())  # pylint: disable=protected-access
    assert records.read_frames(path, offset, length, range(n), n) == reference
    assert records.read_frames(path, offset, length, [n - 1, 0, n - 1], n) == [
        reference[n - 1], reference[0], reference[n - 1]]
    with pytest.raises(records.RecordError, match='holds'):
      records.read_frames(path, offset, length, [0], n + 1)
    with pytest.raises(records.RecordError, match='asked of'):
      records.read_frames(path, offset, length, [n], n)
  # The same inside TensorFlow: the frames at indices, decoded once each.
  idx = tf.constant([[2, 0], [2, 5]])
  got = split.decoded(tf.constant(1, tf.int64), idx).numpy()
  frames = split._parse(split._read(split.paths[ix['shard'][1]], int(ix['offset'][1]),  # pylint: disable=protected-access
                                    int(ix['length'][1]))).numpy()
  want = np.stack([tf.io.decode_jpeg(frames[i]).numpy() for i in (2, 0, 2, 5)])
  np.testing.assert_array_equal(got, want.reshape(2, 2, *want.shape[1:]))


@pytest.mark.parametrize('how', ['flip', 'length'])
def test_records_check_both_crcs(prepared, tmp_path, how):
  out, _ = prepared
  split = shards.Shards(out, 'kinetics400', 'train')
  ix = split.np_index
  path = split.paths[ix['shard'][0]]
  offset, length = int(ix['offset'][0]), int(ix['length'][0])
  data = bytearray(open(path, 'rb').read())
  at = offset + length // 2 if how == 'flip' else offset - 12  # the data, or its length field
  data[at] ^= 0x01 if how == 'length' else 0x40
  bad = tmp_path / 'bad.tfrecord'
  bad.write_bytes(bytes(data))
  with pytest.raises(records.RecordError, match='fails its CRC|the index says'):
    records.read_record(str(bad), offset, length)
  bad.write_bytes(bytes(data[:offset + length]))  # cut before the data's CRC
  with pytest.raises(records.RecordError, match='shard ends'):
    records.read_record(str(bad), offset, length)
  assert records.masked_crc(b'') == 0xa282ead8  # TFRecord's mask of CRC32C('') = 0


def test_device_colour_jitter_is_the_tensorflow_jitter():
  rng = np.random.default_rng(0)
  clip = rng.uniform(0, 1, (T, 8, 8, 3)).astype(np.float32)
  jitter = jax.jit(device_augment.colour_jitter)
  orders, applied = set(), set()
  for s in range(40):
    seed = tf.constant([s, 7], tf.int64)
    draws = augment.colour_jitter_draws(seed).numpy()
    orders.add(tuple(draws[3:6].astype(int)))
    applied.add(bool(draws[6]))
    want = augment.color_jitter(tf.constant(clip), seed).numpy()
    np.testing.assert_allclose(np.asarray(jitter(clip, draws)), want, atol=2e-6)
  assert orders == set(itertools.permutations(range(3))) and applied == {True, False}


@pytest.mark.parametrize('rrc,bgr,colour', [(False, False, True), (True, True, False),
                                            (False, False, False)])
def test_train_clip_finished_on_device_is_the_recipe_within_rounding(rrc, bgr, colour):
  cfg = config.data_config('kinetics400', num_frames=T, sampling_rate=2, crop_size=CROP)
  cfg.train_jitter_scales, cfg.random_resized_crop, cfg.bgr = (36, 44), rrc, bgr
  cfg.color_jitter = colour
  frames = tf.constant(fx.coded_frames(T))
  finish = jax.jit(lambda b: device_augment.model_input(b, bgr))
  for s in range(5):
    seeds = tf.unstack(tf.random.experimental.stateless_split([s, 3], 4))
    host = {k: v.numpy()[None] for k, v in transforms.train_clip(frames, seeds, cfg).items()}
    assert host['clip'].dtype == np.uint8 and (config.COLOUR in host) == colour
    got = np.asarray(finish(host))[0]
    want = transforms.train_augment(frames, seeds, cfg).numpy()
    bound = ROUNDING * (JITTER_GAIN if colour else 1.0) + 1e-5
    assert np.abs(got - want).max() <= bound
    # The crop before rounding is the reference's: rounding it gives the host's clip exactly.
    crop = transforms.train_crop(frames, seeds, cfg).numpy()
    np.testing.assert_array_equal(np.round(crop).astype(np.uint8), host['clip'][0])


def test_float_clips_pass_through_and_uint8_is_normalised():
  clip = np.arange(2 * 3 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 3, 2, 2, 3)
  np.testing.assert_array_equal(np.asarray(device_augment.model_input({'clip': clip}, True)),
                                (clip / np.float32(127.5) - 1)[..., ::-1].astype(np.float32))
  x = np.full((1, 1, 1, 1, 3), 0.25, np.float32)
  assert device_augment.model_input({'clip': x}) is x


def test_batches_hold_what_train_inputs_says(prepared):
  out, _ = prepared
  for name in ('kinetics400', 'synthetic_motion'):
    cfg = config.data_config(name, num_frames=T, sampling_rate=2, crop_size=CROP)
    if name == 'kinetics400':
      cfg.data_dir, cfg.train_jitter_scales = out, (36, 44)
    else:
      cfg.synthetic.num_train = 8
    batch = next(pipeline.make_train_iterator(cfg, local_batch_size=2, seed=0, process_index=0,
                                              process_count=1))
    spec = device_augment.train_inputs(cfg, 2)
    assert set(spec) == set(batch) - set(cfg.label_keys)
    assert (config.COLOUR in spec) == (name == 'kinetics400')
    for key, (shape, dtype) in spec.items():
      assert batch[key].shape == shape and batch[key].dtype == dtype, key


def test_the_trainers_batches_are_the_old_pipelines_clips_within_rounding(prepared):
  """End to end: make_train_iterator's batch, finished as the step does, against each slot's clip
  computed the old way (TensorFlow's reader and parser, the whole recipe in TensorFlow)."""
  out, _ = prepared
  cfg = config.data_config('kinetics400', num_frames=T, sampling_rate=2, crop_size=CROP)
  cfg.data_dir, cfg.train_jitter_scales = out, (36, 44)
  assert cfg.color_jitter and cfg.random_flip
  batch = next(pipeline.make_train_iterator(cfg, local_batch_size=6, seed=4, start_step=1,
                                            process_index=0, process_count=1))
  got = np.asarray(jax.jit(device_augment.model_input)(batch))
  split = shards.Shards(out, 'kinetics400', 'train')
  ix = split.np_index
  slots = pipeline.Stream(0, split.num, seed=4, p=0, count=1, start=6)(1)
  for i, (candidates, seed) in zip(range(6), slots):
    e = int(candidates[0])
    record = split._read(split.paths[ix['shard'][e]], ix['offset'][e], ix['length'][e])  # pylint: disable=protected-access
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
    idx = transforms.frame_indices(ix['num_frames'][e], ix['fps'][e], cfg, train_seed=seeds[0])
    frames = augment.decode_frames(split._parse(record), idx)  # pylint: disable=protected-access
    want = transforms.train_augment(frames, seeds[1:], cfg).numpy()
    assert np.abs(got[i] - want).max() <= ROUNDING * JITTER_GAIN + 1e-5, i
    assert batch['label'][i] == ix['label'][e]

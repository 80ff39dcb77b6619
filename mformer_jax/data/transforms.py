"""What a clip is made of: the frames a clip samples, the training augmentation of one clip and
the test views of one video (TensorFlow ops, run inside the tf.data pipelines and by `predict`).

Every random draw takes an explicit stateless seed, so a clip is a function of (video, seed).
"""

import tensorflow as tf

from mformer_jax.errors import ConfigError
from mformer_jax.data import augment
from mformer_jax.data.config import COLOUR, clip_frames, colour_on_device, train_jitter_scales


def train_crop(frames, seeds, cfg):
  """uint8 (T, H, W, 3) -> float32 [0, 255] (T, S, S, 3): the spatial draws (scale jitter and
  crop, or RandomResizedCrop; flip) and RandAugment, one draw per clip."""
  if cfg.random_resized_crop:
    clip = augment.random_resized_crop(frames, seeds[0], cfg.crop_size)
  else:
    clip = augment.scale_jitter_crop(frames, seeds[0], cfg.crop_size, train_jitter_scales(cfg),
                                     cfg.inverse_uniform_scale)
  clip.set_shape([clip_frames(cfg), cfg.crop_size, cfg.crop_size, 3])
  if cfg.random_flip:
    clip = augment.flip(clip, seeds[1])
  if cfg.rand_augment:
    from mformer_jax.data import randaugment  # pylint: disable=g-import-not-at-top  (rarely used)
    clip = randaugment.rand_augment(clip, seeds[2], cfg.rand_augment)
  return clip


def train_clip(frames, seeds, cfg) -> dict:
  """The pipeline's part of the training augmentation: uint8 (T, H, W, 3) -> {'clip': uint8
  (T, S, S, 3)} (`train_crop` rounded), with the colour jitter's draws where
  `colour_on_device`. The training step finishes it (`device_augment.model_input`)."""
  out = {'clip': tf.saturate_cast(tf.round(train_crop(frames, seeds, cfg)), tf.uint8)}
  if colour_on_device(cfg):
    out[COLOUR] = augment.colour_jitter_draws(seeds[3], cfg.color_jitter_strength)
  return out


def train_augment(frames, seeds, cfg):
  """The whole training recipe in TensorFlow: uint8 (T, H, W, 3) -> normalised float32
  (T, S, S, 3). The reference `train_clip` + `device_augment.model_input` are held to (they
  differ by rounding the crop to uint8)."""
  clip = train_crop(frames, seeds, cfg) / 255.0
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


def test_views(frames, n, fps, cfg):
  """(test_num_clips * test_num_crops, T, S, S, 3), clip-major as the official index order.

  `frames`: the video's uint8 frames (n, H, W, 3), or a function from frame indices to the
  frames there (`shards.Shards.decoded`: only those are read and decoded).
  """
  idx = frame_indices(n, fps, cfg)
  frames = frames(idx) if callable(frames) else tf.gather(frames, idx)
  shape = tf.shape(frames)
  flat = tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))
  flat = augment.resize_short_side(flat, cfg.crop_size)
  return crop_views(tf.reshape(flat, tf.concat([shape[:2], tf.shape(flat)[1:]], 0)), cfg)


def crop_views(resized, cfg):
  """The views of test_views from its clips' frames already resized to the crop's short side
  (`augment.resize_short_side`): (test_num_clips, T, h, w, 3) float32 -> (views, T, S, S, 3)."""
  clips, crops = cfg.test_num_clips, cfg.test_num_crops
  views = augment.three_crops(resized, cfg.crop_size, crops)  # (crops, clips, T, S, S, 3)
  views = tf.reshape(tf.transpose(views, [1, 0, 2, 3, 4, 5]),
                     [clips * crops, clip_frames(cfg), cfg.crop_size, cfg.crop_size, 3])
  return augment.normalise(views, cfg.bgr)

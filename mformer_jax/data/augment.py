"""TF ops for one clip: frame samplers, decoding, spatial/colour augmentation, test views.

Random draws come from stateless seeds, so a clip is a pure function of (seed, example). Spatial
parameters are drawn once per clip and applied to every frame. The samplers mirror
`sampling.py` (the numpy reference) op for op in float64 so both give identical indices.
"""

import math

import tensorflow as tf

from mformer_jax import data


def _ramp(num_frames):
  return tf.range(num_frames, dtype=tf.float64) / max(num_frames - 1, 1)


def linspace_indices(n, fps, u, num_frames, sampling_rate, target_fps=30.0, offset=0):
  """`sampling.linspace_indices`; u has any shape S, the result S + (num_frames,)."""
  n, fps, u = (tf.cast(x, tf.float64) for x in (n, fps, u))
  size = sampling_rate * num_frames / target_fps * fps
  start = u * tf.maximum(n - size, 0.0)
  idx = (start + offset)[..., None] + (size - 1) * _ramp(num_frames)
  return tf.cast(tf.clip_by_value(idx, 0.0, n - 1), tf.int32)


def segment_indices(n, fps, num_frames, u=None, target_fps=30.0):
  """`sampling.segment_indices` (SSv2); u of shape (num_frames,) or None for test."""
  n, fps = tf.cast(n, tf.float64), tf.cast(fps, tf.float64)
  length = tf.maximum(tf.round(n * target_fps / fps), 1.0)
  seg = (length - 1) / num_frames
  i = tf.range(num_frames, dtype=tf.float64)
  starts, ends = tf.round(seg * i), tf.round(seg * (i + 1))
  if u is None:
    virtual = tf.math.floordiv(starts + ends, 2.0)
  else:
    virtual = starts + tf.floor(tf.cast(u, tf.float64) * (ends - starts + 1))
  return tf.cast(tf.minimum(tf.floor(virtual * fps / target_fps), n - 1), tf.int32)


def decode_frames(encoded, indices):
  """Decodes only the JPEGs at `indices` (each distinct one once), shape indices + (H, W, 3).

  encoded: the video's encoded frames (a string vector), or a function from the distinct
  indices to their encoded frames (`shards.Shards.frames`: only those are read)."""
  flat = tf.reshape(indices, [-1])
  unique, where = tf.unique(flat)
  read = encoded if callable(encoded) else lambda u: tf.gather(encoded, u)
  frames = tf.map_fn(lambda s: tf.io.decode_jpeg(s, channels=3), read(unique),
                     fn_output_signature=tf.uint8)
  frames = tf.gather(frames, where)
  return tf.reshape(frames, tf.concat([tf.shape(indices), tf.shape(frames)[1:]], 0))


def short_side_size(height, width, size):
  """Official output size for a short side of `size`: the long side is floored."""
  h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
  size_f = tf.cast(size, tf.float64)
  new_h = tf.where(width < height, tf.floor(h / w * size_f), size_f)
  new_w = tf.where(width < height, size_f, tf.floor(w / h * size_f))
  return tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32)


def resize_short_side(frames, size):
  """Bilinear, half-pixel centres (= torch interpolate, align_corners=False); float32 out."""
  shape = tf.shape(frames)
  new_h, new_w = short_side_size(shape[-3], shape[-2], size)
  same = tf.logical_and(tf.equal(new_h, shape[-3]), tf.equal(new_w, shape[-2]))
  return tf.cond(same, lambda: tf.cast(frames, tf.float32),
                 lambda: tf.image.resize(frames, tf.stack([new_h, new_w]), 'bilinear'))


def jitter_scale(u, jitter_scales, inverse_uniform):
  """Official short side draw: round(U[min, max]), or 1 / U[1/max, 1/min] for SSv2."""
  lo, hi = (float(s) for s in jitter_scales)
  u = tf.cast(u, tf.float64)
  if inverse_uniform:
    return tf.cast(tf.round(1.0 / (1.0 / hi + u * (1.0 / lo - 1.0 / hi))), tf.int32)
  return tf.cast(tf.round(lo + u * (hi - lo)), tf.int32)


def _offset(u, extent, size):
  # np.random.randint(0, extent - size) as official: the far edge is never chosen.
  room = tf.cast(extent - size, tf.float64)
  return tf.where(extent > size, tf.cast(tf.floor(tf.cast(u, tf.float64) * room), tf.int32), 0)


def scale_jitter_crop(frames, seed, crop_size, jitter_scales, inverse_uniform):
  u = tf.random.stateless_uniform([3], seed, dtype=tf.float64)
  frames = resize_short_side(frames, jitter_scale(u[0], jitter_scales, inverse_uniform))
  shape = tf.shape(frames)
  y, x = _offset(u[1], shape[1], crop_size), _offset(u[2], shape[2], crop_size)
  return frames[:, y:y + crop_size, x:x + crop_size]


def random_resized_crop(frames, seed, crop_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        tries=10):
  """torchvision RandomResizedCrop (first of `tries` valid boxes, else a centre crop)."""
  shape = tf.shape(frames)
  height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
  u = tf.random.stateless_uniform([4, tries], seed)
  area = height * width * (scale[0] + u[0] * (scale[1] - scale[0]))
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  aspect = tf.exp(log_lo + u[1] * (log_hi - log_lo))
  w = tf.round(tf.sqrt(area * aspect))
  h = tf.round(tf.sqrt(area / aspect))
  valid = tf.logical_and(tf.logical_and(w > 0, h > 0),
                         tf.logical_and(w <= width, h <= height))
  first = tf.argmax(tf.cast(valid, tf.int32))
  # Fallback: the largest centre crop with the aspect ratio clamped into `ratio`.
  aspect_in = width / height
  fw = tf.where(aspect_in < ratio[0], width, tf.where(aspect_in > ratio[1],
                                                      tf.round(height * ratio[1]), width))
  fh = tf.where(aspect_in < ratio[0], tf.round(width / ratio[0]),
                tf.where(aspect_in > ratio[1], height, height))
  found = tf.reduce_any(valid)
  h, w = tf.where(found, h[first], fh), tf.where(found, w[first], fw)
  y = tf.where(found, tf.floor(u[2, first] * (height - h + 1)), tf.round((height - h) / 2))
  x = tf.where(found, tf.floor(u[3, first] * (width - w + 1)), tf.round((width - w) / 2))
  y, x, h, w = (tf.cast(v, tf.int32) for v in (y, x, h, w))
  crop = tf.cast(frames[:, y:y + h, x:x + w], tf.float32)
  return tf.image.resize(crop, [crop_size, crop_size], 'bilinear')


def flip(frames, seed):
  return tf.cond(tf.random.stateless_uniform([], seed) < 0.5,
                 lambda: tf.reverse(frames, [2]), lambda: frames)


def colour_jitter_draws(seed, strength=0.4, prob=0.8):
  """One clip's colour jitter as 7 float32: the brightness, contrast and saturation factors
  (each U[1-s, 1+s]), the order the three are applied in (a permutation of 0, 1, 2) and
  whether the jitter applies at all (1.0 with probability `prob`)."""
  u = tf.random.stateless_uniform([7], seed)
  factors = 1.0 - strength + 2.0 * strength * u[:3]
  order = tf.cast(tf.argsort(u[3:6]), tf.float32)
  return tf.concat([factors, order, tf.cast(u[6:] < prob, tf.float32)], 0)


def color_jitter(frames, seed, strength=0.4, prob=0.8):
  """Brightness, contrast, saturation in random order (`colour_jitter_draws`) on [0, 1] RGB,
  before normalisation: the reference of `device_augment.colour_jitter`, which the training
  step runs on the same draws."""
  draws = colour_jitter_draws(seed, strength, prob)
  factors, order = draws[:3], tf.cast(draws[3:6], tf.int32)
  grey_weights = tf.constant(data.GREY_WEIGHTS)

  def grey(x):
    return tf.reduce_sum(x * grey_weights, -1, keepdims=True)
  ops = [lambda x: x * factors[0],
         lambda x: (x - tf.reduce_mean(grey(x))) * factors[1] + tf.reduce_mean(grey(x)),
         lambda x: (x - grey(x)) * factors[2] + grey(x)]
  jittered = frames
  for step in range(3):
    jittered = tf.clip_by_value(tf.switch_case(order[step], [
        lambda op=op: op(jittered) for op in ops]), 0.0, 1.0)
  return tf.cond(draws[6] > 0, lambda: jittered, lambda: frames)


def normalise(frames, bgr):
  """The TF twin of `data.to_model_input` (the Motionformer's mean and std): [0, 255] RGB ->
  the model's input, channels reversed for BGR models."""
  scale, shift = data.pixel_affine()
  frames = tf.cast(frames, tf.float32) / scale - shift
  return frames[..., ::-1] if bgr else frames


def three_crops(frames, crop_size, num_crops):
  """Official `uniform_crop`: left/centre/right (or top/centre/bottom); 1 crop = centre.
  frames (..., H, W, 3) with short side == crop_size; returns (num_crops, ..., S, S, 3)."""
  shape = tf.shape(frames)
  height, width = shape[-3], shape[-2]
  cy, cx = (height - crop_size + 1) // 2, (width - crop_size + 1) // 2  # ceil, as official.
  portrait = height > width
  crops = []
  for j in ([1] if num_crops == 1 else range(num_crops)):
    far_y = tf.where(portrait, [0, cy, height - crop_size][j], cy)
    far_x = tf.where(portrait, cx, [0, cx, width - crop_size][j])
    crops.append(frames[..., far_y:far_y + crop_size, far_x:far_x + crop_size, :])
  return tf.stack(crops)

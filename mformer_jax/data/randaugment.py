"""RandAugment for clips with dm-pix: one op pair and one set of magnitudes per clip.

Follows timm's `rand-m{M}-mstd{S}-inc1` (the official SSv2/EK configs): `n` ops (default 2) drawn
with replacement from the 15 'increasing' ops, each applied with probability 0.5 at a magnitude
N(M, S) clipped to [0, 10] (so m15/m20 both mean 10), with a random sign where it has one. Unlike
the official per-frame rebuild (frame 0 gets a different op pair), every frame of a clip gets the
same transform; statistics-driven ops (autocontrast, equalize) use the whole clip's statistics.

The random draws are stateless TF ops; the pixel work is one jitted JAX function on the host CPU,
called from tf.data through `tf.numpy_function`.
"""

import re

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from mformer_jax.errors import ConfigError

OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'SolarizeAdd',
       'Color', 'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateX',
       'TranslateY')
_FILL = 0.5  # timm fills with (128, 128, 128).


def parse(spec):
  """'rand-m20-mstd0.5-inc1' -> (num_ops, magnitude, magnitude_std)."""
  fields = dict(re.fullmatch(r'([a-z]+)([\d.]+)', f).groups() for f in spec.split('-')[1:])
  if not spec.startswith('rand-') or fields.get('inc', '1') != '1':
    raise ConfigError(f'Unsupported rand_augment {spec!r}; expected rand-m<M>[-mstd<S>][-n<N>]'
                      '-inc1.')
  return int(fields.get('n', 2)), float(fields.get('m', 10)), float(fields.get('mstd', 0))


def _affine(clip, linear, shift):
  """Pull-resamples every frame with the same 2D map (about the centre) on axes (y, x)."""
  frames, height, width, _ = clip.shape
  centre = jnp.array([(height - 1) / 2, (width - 1) / 2])
  matrix = jnp.eye(4).at[:2, :2].set(linear).at[:2, 3].set(centre - linear @ centre + shift)
  # dm-pix takes one (H, W, C) image: stack the frames along channels so all share the map.
  stacked = clip.transpose(1, 2, 0, 3).reshape(height, width, frames * 3)
  out = pix.affine_transform(stacked, matrix, order=1, mode='constant', cval=_FILL)
  return out.reshape(height, width, frames, 3).transpose(2, 0, 1, 3)


def _grey(x):
  return pix.rgb_to_grayscale(x, keep_dims=True)


def _blend(base, x, factor):
  return jnp.clip(base + factor * (x - base), 0, 1)


def _equalize(x):
  """Per-channel histogram equalisation over the whole clip (PIL's LUT construction)."""
  q = jnp.round(x * 255).astype(jnp.int32)
  out = []
  for c in range(3):
    hist = jnp.bincount(q[..., c].ravel(), length=256)
    last = hist[jnp.max(jnp.where(hist > 0, jnp.arange(256), 0))]
    step = (q[..., c].size - last) // 255
    lut = jnp.clip((jnp.cumsum(hist) - hist + step // 2) // jnp.maximum(step, 1), 0, 255)
    out.append(jnp.where(step > 0, lut[q[..., c]] / 255, x[..., c]))
  return jnp.stack(out, -1)


def _op(index, x, level, sign):
  """Op `index` on a [0, 1] clip at `level` in [0, 1]; sign in {-1, 1}."""
  lo, hi = x.min((0, 1, 2)), x.max((0, 1, 2))
  shear, turn = 0.3 * level * sign, jnp.deg2rad(30.0 * level * sign)
  cos, sin = jnp.cos(turn), jnp.sin(turn)
  factor = 1.0 + 0.9 * level * sign
  steps = 2.0 ** (8 - (4 - jnp.floor(4 * level)))  # Posterize to 4 - int(4 * level) bits.
  branches = [
      lambda: jnp.where(hi > lo, (x - lo) / jnp.maximum(hi - lo, 1e-6), x),
      lambda: _equalize(x),
      lambda: 1.0 - x,
      lambda: _affine(x, jnp.array([[cos, -sin], [sin, cos]]), jnp.zeros(2)),
      lambda: jnp.floor(x * 255 / steps) * steps / 255,
      lambda: pix.solarize(x, 1.0 - level),
      lambda: jnp.where(x < 128 / 255, jnp.clip(x + 110 / 255 * level, 0, 1), x),
      lambda: _blend(_grey(x), x, factor),
      lambda: _blend(_grey(x).mean(), x, factor),
      lambda: _blend(jnp.zeros_like(x), x, factor),
      lambda: _blend(pix.gaussian_blur(x, 1.0, 3), x, factor),
      lambda: _affine(x, jnp.array([[1.0, 0.0], [shear, 1.0]]), jnp.zeros(2)),
      lambda: _affine(x, jnp.array([[1.0, shear], [0.0, 1.0]]), jnp.zeros(2)),
      lambda: _affine(x, jnp.eye(2), jnp.array([0.0, 0.45 * level * sign * x.shape[2]])),
      lambda: _affine(x, jnp.eye(2), jnp.array([0.45 * level * sign * x.shape[1], 0.0])),
  ]
  return jax.lax.switch(index, branches)


@jax.jit
def _apply(clip, ops, levels, signs, applied):
  x = clip / 255.0
  for i in range(ops.shape[0]):
    x = jnp.where(applied[i], _op(ops[i], x, levels[i], signs[i]), x)
  return x * 255.0


def _apply_np(clip, ops, levels, signs, applied):
  # Pin to the host CPU: the trainer's default device may be an accelerator.
  with jax.default_device(jax.devices('cpu')[0]):
    return np.asarray(_apply(clip, ops, levels, signs, applied), np.float32)


def rand_augment(clip, seed, spec):
  """float32 [0, 255] clip (T, H, W, 3) -> same shape, one RandAugment draw for the clip."""
  num_ops, magnitude, std = parse(spec)
  seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
  ops = tf.random.stateless_uniform([num_ops], seeds[0], 0, len(OPS), dtype=tf.int32)
  levels = tf.clip_by_value(
      magnitude + std * tf.random.stateless_normal([num_ops], seeds[1]), 0.0, 10.0) / 10.0
  signs = tf.where(tf.random.stateless_uniform([num_ops], seeds[2]) < 0.5, -1.0, 1.0)
  applied = tf.random.stateless_uniform([num_ops], seeds[3]) < 0.5
  out = tf.numpy_function(_apply_np, [clip, ops, levels, signs, applied], tf.float32,
                          stateful=False)
  return tf.ensure_shape(out, clip.shape)

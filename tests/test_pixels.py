"""The pixel convention's one home (`data.to_model_input` / `to_display_rgb` and the TF twin
`augment.normalise`): the Motionformer's arithmetic exactly as the literal frames / 127.5 - 1 in
float32, the BGR order, the inverse.

Bit for bit against the literal in the same framework: XLA (jax, eager or jitted) and TF graphs
divide by a constant as a multiplication by its reciprocal, one ulp off numpy's division at
some values, so each caller keeps the arithmetic its code has always done."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from mformer_jax import data
from mformer_jax.data import augment


def _frames():
  # Every uint8 value in every channel, and random clips.
  rng = np.random.default_rng(0)
  ramp = np.stack([np.arange(256, dtype=np.uint8)] * 3, -1)[None, None]
  return [ramp, rng.integers(0, 256, (2, 4, 8, 8, 3), dtype=np.uint8)]


@pytest.mark.parametrize('bgr', [False, True])
def test_model_input_is_the_literal_formula_bit_for_bit(bgr):
  for frames in _frames():
    flip = lambda x: x[..., ::-1] if bgr else x
    jax_literal = lambda x: flip(jnp.asarray(x, jnp.float32) / 127.5 - 1.0)
    tf_literal = lambda x: flip(tf.cast(x, tf.float32) / 127.5 - 1.0)
    pairs = [
        (data.to_model_input(frames, bgr), flip(frames.astype(np.float32) / 127.5 - 1.0)),
        (data.to_model_input(frames.tolist(), bgr),            # any array-like
         flip(frames.astype(np.float32) / 127.5 - 1.0)),
        (data.to_model_input(jnp.asarray(frames), bgr), jax_literal(frames)),  # jax stays jax
        (jax.jit(lambda x: data.to_model_input(x, bgr))(frames), jax.jit(jax_literal)(frames)),
        (augment.normalise(tf.constant(frames), bgr), tf_literal(tf.constant(frames))),
        (tf.function(lambda x: augment.normalise(x, bgr))(tf.constant(frames)),
         tf.function(tf_literal)(tf.constant(frames)))]
    for got, literal in pairs:
      got = np.asarray(got)
      assert got.dtype == np.float32 and got.shape == frames.shape
      np.testing.assert_array_equal(got, np.asarray(literal))


@pytest.mark.parametrize('bgr', [False, True])
def test_display_rgb_inverts_model_input(bgr):
  for frames in _frames():
    x = data.to_model_input(frames, bgr)
    view = x[..., ::-1] if bgr else x
    literal = np.clip(np.round((view + 1.0) * 127.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(data.to_display_rgb(x, bgr), literal)
    np.testing.assert_array_equal(data.to_display_rgb(x, bgr), frames)
  # ImageNet mean and std (image ViTs): (x / 255 - mean) / std, undone by the inverse.
  frames = _frames()[1]
  x = data.to_model_input(frames, mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD)
  want = (frames / 255.0 - np.array(data.IMAGENET_MEAN)) / np.array(data.IMAGENET_STD)
  np.testing.assert_allclose(x, want, atol=1e-5)
  np.testing.assert_array_equal(
      data.to_display_rgb(x, mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD), frames)


def test_bgr_reverses_the_channels():
  red = np.zeros((1, 1, 3), np.uint8)
  red[..., 0] = 255
  np.testing.assert_array_equal(data.to_model_input(red, bgr=True)[0, 0], [-1.0, -1.0, 1.0])
  np.testing.assert_array_equal(data.to_display_rgb(data.to_model_input(red, True), True), red)


def test_bad_mean_or_std_is_one_error():
  with pytest.raises(ValueError, match='expected 3 values each, std > 0'):
    data.to_model_input(np.zeros((1, 3), np.uint8), std=(0.5, 0.5))
  with pytest.raises(ValueError, match='expected 3 values each, std > 0'):
    data.to_display_rgb(np.zeros((1, 3)), std=(0.5, 0.0, 0.5))

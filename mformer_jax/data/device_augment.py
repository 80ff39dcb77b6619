"""The end of the training augmentation, inside the jitted training step: uint8 clips from the
pipeline become model input here (colour jitter, then `to_model_input`).

The host sends uint8 crops (4x fewer bytes to the device than float32) and, per clip, the colour
jitter's draws (`augment.colour_jitter_draws`); the per-pixel float work runs on the device,
where it costs nothing next to the model, instead of ~half of a clip's host time. jax only: the
training step imports this without TensorFlow. `augment.color_jitter` (TensorFlow) is the
reference the tests hold this to.
"""

import jax
import jax.numpy as jnp

from mformer_jax import data
from mformer_jax.data.config import COLOUR, clip_frames, colour_on_device


def colour_jitter(clip, draws):
  """`augment.color_jitter` of one clip on [0, 1] RGB (T, H, W, 3), from its 7 draws."""
  factors, order, apply = draws[:3], draws[3:6].astype(jnp.int32), draws[6] > 0
  grey = lambda x: jnp.sum(x * jnp.asarray(data.GREY_WEIGHTS, x.dtype), -1, keepdims=True)
  ops = (lambda x: x * factors[0],
         lambda x: (x - jnp.mean(grey(x))) * factors[1] + jnp.mean(grey(x)),
         lambda x: (x - grey(x)) * factors[2] + grey(x))
  jittered = clip
  for step in range(3):
    jittered = jnp.clip(jax.lax.switch(order[step], ops, jittered), 0.0, 1.0)
  return jnp.where(apply, jittered, clip)


def model_input(batch: dict, bgr: bool = False):
  """The model's input from a training batch: a uint8 'clip' (with its 'colour' draws where
  the pipeline jitters colour) is finished here; a float 'clip' is model input already."""
  clip = batch['clip']
  if jnp.issubdtype(clip.dtype, jnp.floating):
    return clip
  x = clip.astype(jnp.float32)
  if COLOUR in batch:
    x = jax.vmap(colour_jitter)(x / 255.0, batch[COLOUR]) * 255.0
  return data.to_model_input(x, bgr)


def train_inputs(data_cfg, batch_size: int) -> dict:
  """{key: (shape, dtype)} of the pixels a training batch of `data_cfg`'s pipeline holds (labels
  aside): what `mformer_jax.plan` compiles the step for."""
  s = data_cfg.crop_size
  inputs = {'clip': ((batch_size, clip_frames(data_cfg), s, s, 3), jnp.uint8)}
  if colour_on_device(data_cfg):
    inputs[COLOUR] = ((batch_size, 7), jnp.float32)
  return inputs

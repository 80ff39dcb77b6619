"""The official optimisation recipe (spec section 6.3) as optax: AdamW + step schedule.

Everything is in steps, derived from epochs with `steps_per_epoch` (dataset size / global batch),
so no config holds a hand-entered step count.
"""
import jax
import jax.numpy as jnp
import optax

from mformer_jax import fused


def lr_schedule(t, steps_per_epoch: int):
  """`steps_with_relative_lrs`, updated every step: base * decay^(#boundaries passed), times an
  optional linear warmup from 0 (official: none)."""
  # No boundaries: one that is never reached (the step counter is int32 without x64).
  boundaries = jnp.asarray([round(b * steps_per_epoch) for b in t.lr_boundaries]
                           or [jnp.iinfo(jnp.int32).max])
  warmup = round(t.warmup_epochs * steps_per_epoch)

  def schedule(step):
    lr = t.base_lr * t.lr_decay ** jnp.sum(step >= boundaries)
    if warmup > 0:
      lr = lr * jnp.minimum(1.0, (step + 1) / warmup)
    return lr

  return schedule


def decay_mask(params):
  """True for matrices/kernels; False for norms, biases and the cls/pos/temporal embeddings.

  Python bools, from shapes only; stacked blocks (scan_blocks) are judged per block.
  """
  def keep(path, leaf):
    name = jax.tree_util.keystr(path)
    ndim = len(leaf.shape) - (getattr(path[0], 'key', None) == 'blocks')
    return ndim > 1 and not any(s in name for s in ('cls_token', 'pos_embed', 'temp_embed'))
  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(t, steps_per_epoch: int):
  """(optax transform, schedule). Decay 0.05 on every parameter unless told otherwise."""
  schedule = lr_schedule(t, steps_per_epoch)
  adamw = optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=t.weight_decay,
                      mask=None if t.decay_norms_and_biases else decay_mask)
  if t.grad_clip_norm > 0:
    adamw = optax.chain(optax.clip_by_global_norm(t.grad_clip_norm), adamw)
  return adamw, schedule


def make_fused_optimizer(t, steps_per_epoch: int):
  """The same recipe as `make_optimizer`, applied inside the backward pass (fused.py)."""
  if t.grad_clip_norm > 0:
    raise ValueError('train.fused_update=True cannot clip by global norm (it never holds every '
                     'gradient at once): set train.grad_clip_norm=0')
  schedule = lr_schedule(t, steps_per_epoch)
  return fused.AdamW(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=t.weight_decay,
                     mask=None if t.decay_norms_and_biases else decay_mask), schedule


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per pass over the training set (the official loader drops the last one)."""
  if num_examples < batch_size:
    raise ValueError(f'train.batch_size={batch_size} exceeds the {num_examples} training clips')
  return num_examples // batch_size

"""The official optimisation recipe (its configs and optimiser code) in optax: AdamW, step LR.

Everything is in steps, derived from epochs with `steps_per_epoch` (dataset size / global batch),
so no config holds a hand-entered step count. `step_schedule` is the schedule in steps, and
`lr_schedule` that of a config's epochs.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mformer_jax.train import fused
from mformer_jax.errors import ConfigError


def step_schedule(base_lr: float, boundaries=(), decay: float = 0.1, warmup_steps: int = 0):
  """`steps_with_relative_lrs` in steps: base_lr x decay at each of `boundaries` (a step given
  twice decays twice), times a linear warm-up (step + 1) / warmup_steps until it reaches 1."""
  # A repeated step's scale is the float32 product, as the float32 decay ** n it replaces.
  scales = {}
  for b in boundaries:
    scales[int(b)] = float(np.float32(scales.get(int(b), 1.0)) * np.float32(decay))
  drops = optax.piecewise_constant_schedule(1.0, scales)

  def schedule(step):
    # base_lr times the product of the drops (not drops from base_lr): the float32 rounding of
    # base_lr * decay ** n. The warm-up multiplies, so a boundary inside it still applies.
    lr = base_lr * jnp.asarray(drops(step), jnp.float32)
    if warmup_steps > 0:
      lr = lr * jnp.minimum(1.0, (step + 1) / warmup_steps)
    return lr

  return schedule


def schedule_steps(t, steps_per_epoch: int) -> dict:
  """`step_schedule`'s arguments but base_lr, from a train config in epochs (t.lr_boundaries,
  t.warmup_epochs; official: no warm-up)."""
  return dict(boundaries=[round(b * steps_per_epoch) for b in t.lr_boundaries], decay=t.lr_decay,
              warmup_steps=round(t.warmup_epochs * steps_per_epoch))


def lr_schedule(t, steps_per_epoch: int):
  """The train config's schedule, updated every step."""
  return step_schedule(t.base_lr, **schedule_steps(t, steps_per_epoch))


def decay_mask(params):
  """True for matrices/kernels; False for norms, biases and the cls/pos/temporal embeddings.

  Python bools, from shapes only; stacked blocks (scan_blocks) are judged per block.
  """
  def keep(path, leaf):
    name = jax.tree_util.keystr(path)
    ndim = len(leaf.shape) - (getattr(path[0], 'key', None) == 'blocks')
    return ndim > 1 and not any(s in name for s in ('cls_token', 'pos_embed', 'temp_embed'))
  return jax.tree_util.tree_map_with_path(keep, params)


def adamw(schedule, weight_decay: float, decay_norms_and_biases: bool = True,
          grad_clip_norm: float = 0.0):
  """The recipe's AdamW around any schedule of the update count; decay on every parameter
  unless told otherwise, clipping by global norm if grad_clip_norm > 0."""
  tx = optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay,
                   mask=None if decay_norms_and_biases else decay_mask)
  if grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(grad_clip_norm), tx)
  return tx


def make_optimizer(t, steps_per_epoch: int):
  """(optax transform, schedule) of a train config (official: decay 0.05 everywhere)."""
  schedule = lr_schedule(t, steps_per_epoch)
  return adamw(schedule, t.weight_decay, t.decay_norms_and_biases, t.grad_clip_norm), schedule


def make_fused_optimizer(t, steps_per_epoch: int):
  """The same recipe as `make_optimizer`, applied inside the backward pass (fused.py)."""
  if t.grad_clip_norm > 0:
    raise ConfigError('train.fused_update=True cannot clip by global norm (it never holds every '
                      'gradient at once): set train.grad_clip_norm=0')
  schedule = lr_schedule(t, steps_per_epoch)
  return fused.AdamW(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=t.weight_decay,
                     mask=None if t.decay_norms_and_biases else decay_mask), schedule


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per pass over the training set (the official loader drops the last one)."""
  if num_examples < batch_size:
    raise ConfigError(f'train.batch_size={batch_size} exceeds the {num_examples} training clips')
  return num_examples // batch_size

"""Attention layers of Motionformer: trajectory, joint space-time, divided space-time, space-only.

Token layout everywhere: x is (B, 1 + N, D), index 0 = cls, then token 1 + t*P + p for temporal
slot t (F = T' slots) and patch p. Per-head tensors are (B, tokens, heads, d) ("BTNH", the
layout of `jax.nn.dot_product_attention`). Parameter names follow the official state dict
(`qkv`, `proj_q`, `proj_kv`, `proj`) so checkpoint conversion is a plain table.
"""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mformer_jax.model import approx, fast_attention
from mformer_jax.model.fast_attention import softmax, split_heads

Dense = functools.partial(nn.Dense, kernel_init=nn.initializers.truncated_normal(0.02),
                          bias_init=nn.initializers.zeros)


def merge_heads(x):
  return x.reshape(*x.shape[:-2], -1)


class DenseParams(nn.Module):
  """The parameters of an `nn.Dense(features)` (same names, shapes, init), returned unapplied.

  Lets a fused kernel use a projection inside `lax.map` while the parameter tree stays the
  official one (`<name>/kernel`, `<name>/bias`).
  """
  in_features: int
  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self):
    kernel = self.param('kernel', nn.initializers.truncated_normal(0.02),
                        (self.in_features, self.features), self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
    return kernel.astype(self.dtype), bias.astype(self.dtype)


def cls_attention(q_cls, k, v):
  """The cls query attends to all 1+N tokens (itself included). q_cls: (B, 1, h, d), scaled."""
  a = softmax(jnp.einsum('bqhd,bkhd->bhqk', q_cls, k))
  return jnp.einsum('bhqk,bkhd->bqhd', a, v)


# ----------------------------------------------------------------------------------------------
# Trajectory attention: reference (einsum) implementation of the two steps
# ----------------------------------------------------------------------------------------------
def trajectory_spatial(q, k, v, temporal_slots, attn_dropout=None, return_attn=False):
  """Spatial step: every query attends, separately for each frame f, over that frame's P keys.

  q, k, v: (B, N, h, d) patch tokens, q already scaled. Returns X: (B, N, F, h, d), the
  trajectory token of query n in frame f. Materialises the full (N, N) score matrix per head.
  attn_dropout: optional function applied to the (per-frame) attention probabilities, where the
  official code applies its only attention dropout.
  return_attn: also return the per-frame probabilities (B, h, N, F, P), before dropout (the
  official `space_attn`, the per-frame maps of the appendix's Fig. 2).
  """
  b, n, h, d = k.shape
  p = n // temporal_slots
  scores = jnp.einsum('bnhd,bmhd->bhnm', q, k).reshape(b, h, n, temporal_slots, p)
  attn = probs = softmax(scores)
  if attn_dropout is not None:
    attn = attn_dropout(attn)
  x = jnp.einsum('bhnfp,bfphd->bnfhd', attn, v.reshape(b, temporal_slots, p, h, d))
  return (x, probs) if return_attn else x


def trajectory_diagonal(x, temporal_slots):
  """X[b, s, f(s)] for every query s (its own frame): (B, N, F, ...) -> (B, N, ...)."""
  b, n, f = x.shape[:3]
  xr = x.reshape(b, f, n // f, f, *x.shape[3:])
  diag = jnp.diagonal(xr, axis1=1, axis2=3)          # (B, P, ..., F)
  diag = jnp.moveaxis(diag, -1, 1)                    # (B, F, P, ...)
  return diag.reshape(b, n, *x.shape[3:])


def trajectory_temporal(q2, k2, values):
  """Temporal step: 1D attention of each query along its own trajectory (softmax over F).

  q2: (B, N, h, d) scaled; k2, values: (B, N, F, h, d). Returns (B, N, h, d) and the
  attention (B, h, N, F).
  """
  a = softmax(jnp.einsum('bnhd,bnfhd->bhnf', q2, k2))
  return jnp.einsum('bhnf,bnfhd->bnhd', a, values), a


class TrajectoryAttention(nn.Module):
  """Trajectory attention (paper eqs. 4-6) as the official code computes it.

  values='original': the temporal step aggregates the trajectory tokens themselves (what the
    released checkpoints were trained with; the v-half of proj_kv is dead weight).
  values='projected': it aggregates the v-half of proj_kv (the paper's equations).
  approx: 'none' | 'orthoformer' | 'nystrom' | 'performer' replaces the spatial step.
  impl: 'einsum' (the reference: (N, N) scores, proj_kv on both halves) | 'frames' | 'chunked'
    (exact memory-lean versions, see `fast_attention`; they compute only the used half of
    proj_kv, also after an approximation). query_chunk: queries per chunk for 'chunked'
    (0 = one frame). backend: `jax.nn.dot_product_attention` implementation for 'frames'
    ('xla' | 'cudnn' | 'auto').
  return_attn=True (einsum impl, exact or Orthoformer) also returns {'space': (B, h, N, F, P),
  'temporal': (B, h, N, F)}, the probabilities of the two steps (Orthoformer: the per-frame
  maps its landmarks imply, see `approx.orthoformer`).
  """
  num_heads: int
  temporal_slots: int                  # F = T / tubelet_size token slots
  values: str = 'original'
  approx: str = 'none'
  num_landmarks: int = 128
  nystrom_iters: int = 6
  performer_features: int = 256
  attn_dropout: float = 0.0
  qkv_bias: bool = True
  impl: str = 'einsum'
  query_chunk: int = 0
  backend: str = 'xla'
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False, first_landmarks=None, return_attn=False):
    b, _, dim = x.shape
    h, f = self.num_heads, self.temporal_slots
    dense = functools.partial(Dense, dtype=self.dtype, param_dtype=self.param_dtype)
    d = dim // h
    scale = d ** -0.5
    q, k, v = jnp.split(split_heads(dense(3 * dim, use_bias=self.qkv_bias, name='qkv')(x), 3 * h),
                        3, axis=2)
    cls_out = cls_attention(q[:, :1] * scale, k, v)
    q, k, v = q[:, 1:], k[:, 1:], v[:, 1:]
    if return_attn and (self.impl != 'einsum' or self.approx not in ('none', 'orthoformer')):
      raise ValueError('attention probabilities need impl=einsum and approx none|orthoformer, '
                       f'not impl={self.impl!r} approx={self.approx!r}')
    if self.impl != 'einsum':
      return self._fast(x, cls_out, q, k, v, first_landmarks, train)

    if self.approx == 'none':
      drop = (functools.partial(nn.Dropout(self.attn_dropout), deterministic=not train)
              if self.attn_dropout else None)
      traj, space_attn = trajectory_spatial(q * scale, k, v, f, drop, return_attn=True)
    else:
      traj = self._approx_spatial(q, k, v, first_landmarks, return_attn)
      traj, space_attn = traj if return_attn else (traj, None)
    traj = merge_heads(traj)                                           # (B, N, F, D)

    q2 = split_heads(dense(dim, name='proj_q')(trajectory_diagonal(traj, f)), h) * scale
    kv2 = dense(2 * dim, name='proj_kv')(traj)                         # all N*F trajectory tokens
    k2, v2 = jnp.split(split_heads(kv2, 2 * h), 2, axis=-2)
    values = split_heads(traj, h) if self.values == 'original' else v2
    out, temporal_attn = trajectory_temporal(q2, k2, values)
    self.sow('intermediates', 'temporal_attn', temporal_attn)
    out = dense(dim, name='proj')(merge_heads(jnp.concatenate([cls_out, out], axis=1)))
    return (out, {'space': space_attn, 'temporal': temporal_attn}) if return_attn else out

  def _fast(self, x, cls_out, q, k, v, first_landmarks, train):
    """The impl != 'einsum' path: same parameters, same result, less memory."""
    if self.attn_dropout and train:
      raise NotImplementedError('trajectory impl %r has no attention dropout; use einsum'
                                % self.impl)
    dim = x.shape[-1]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    proj = (*DenseParams(dim, dim, name='proj_q', **kw)(),
            *DenseParams(dim, 2 * dim, name='proj_kv', **kw)())
    spatial = None if self.approx == 'none' else self._approx_spatial(q, k, v, first_landmarks)
    out, temporal_attn = fast_attention.trajectory_fast(
        q, k, v, proj, temporal_slots=self.temporal_slots, values=self.values,
        scale=(dim // self.num_heads) ** -0.5, impl=self.impl, query_chunk=self.query_chunk,
        backend=self.backend, spatial=spatial)
    self.sow('intermediates', 'temporal_attn', temporal_attn)
    out = jnp.concatenate([cls_out, out], axis=1)
    return Dense(dim, name='proj', **kw)(merge_heads(out))

  def _approx_spatial(self, q, k, v, first_landmarks, return_attn=False):
    """(B, N, h, d) unscaled -> (B, N, F, h, d) via the selected approximation.

    return_attn (Orthoformer only) also returns its implied per-frame maps (B, h, N, F, P).
    """
    b, n, h, d = q.shape
    attn = None
    to_rows = lambda t: t.transpose(0, 2, 1, 3).reshape(b * h, n, d)  # (B*h, N, d), batch-major
    q, k, v = to_rows(q), to_rows(k), to_rows(v)
    if self.approx == 'orthoformer':
      if first_landmarks is not None:
        landmarks = dict(first_index=first_landmarks)
      elif self.has_rng('landmarks'):
        landmarks = dict(rng=self.make_rng('landmarks'))
      else:  # evaluation: the same landmarks for a clip in any batch
        landmarks = dict(first_index=approx.eval_first_index(approx.layer_key(self.name or ''),
                                                             b, h, n))
      x = approx.orthoformer(q, k, v, num_landmarks=self.num_landmarks,
                             num_frames=self.temporal_slots,
                             return_attn=return_attn, **landmarks)
      if return_attn:
        x, attn = x[0], x[1].reshape(b, h, n, self.temporal_slots, -1)
    elif self.approx == 'nystrom':
      x = approx.nystrom(q, k, v, num_landmarks=self.num_landmarks, num_frames=self.temporal_slots,
                         pinv_iters=self.nystrom_iters)
    elif self.approx == 'performer':
      # Fixed random features per layer (a constant, like a buffer), so eval is deterministic.
      feats = approx.orthogonal_gaussian(approx.layer_key(self.name or ''),
                                         self.performer_features, d)
      x = approx.performer(q, k, v, num_frames=self.temporal_slots, features=feats)
    else:
      raise ValueError(f'unknown approx {self.approx!r}')
    x = x.reshape(b, h, n, self.temporal_slots, d).transpose(0, 2, 3, 1, 4)
    return (x, attn) if return_attn else x


# ----------------------------------------------------------------------------------------------
# Joint and divided space-time attention
# ----------------------------------------------------------------------------------------------
class JointAttention(nn.Module):
  """Standard multi-head attention over all 1+N tokens (timm ViT names: qkv, proj).

  return_attn=True also returns {'joint': (B, h, 1+N, 1+N)}, the softmax before dropout.
  """
  num_heads: int
  attn_dropout: float = 0.0
  qkv_bias: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False, return_attn=False):
    dim = x.shape[-1]
    dense = functools.partial(Dense, dtype=self.dtype, param_dtype=self.param_dtype)
    q, k, v = jnp.split(split_heads(dense(3 * dim, use_bias=self.qkv_bias, name='qkv')(x),
                                    3 * self.num_heads), 3, axis=2)
    a = probs = softmax(jnp.einsum('bqhd,bkhd->bhqk', q, k) * (dim // self.num_heads) ** -0.5)
    if self.attn_dropout:
      a = nn.Dropout(self.attn_dropout)(a, deterministic=not train)
    out = jnp.einsum('bhqk,bkhd->bqhd', a, v)
    out = dense(dim, name='proj')(merge_heads(out))
    return (out, {'joint': probs}) if return_attn else out


class DividedAttention(nn.Module):
  """Motionformer's divided attention: 'time' (fixed patch, over slots) or 'space' (fixed slot).

  Unlike TimeSformer the cls token is a key/value of every group, and the cls query attends to
  all 1+N tokens in both calls.
  return_attn=True also returns {mode: probabilities}: every patch query's softmax over
  [cls, its group], (B, h, N, 1+F) for 'time' (the F tokens at its patch position) and
  (B, h, N, 1+P) for 'space' (the P patches of its slot); the cls query's row is left out.
  """
  num_heads: int
  temporal_slots: int
  mode: str  # 'time' | 'space'
  qkv_bias: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False, return_attn=False):
    del train  # the official attn_drop is constructed but never applied
    b, _, dim = x.shape
    f = self.temporal_slots
    dense = functools.partial(Dense, dtype=self.dtype, param_dtype=self.param_dtype)
    q, k, v = jnp.split(split_heads(dense(3 * dim, use_bias=self.qkv_bias, name='qkv')(x),
                                    3 * self.num_heads), 3, axis=2)
    q = q * (dim // self.num_heads) ** -0.5
    cls_out = cls_attention(q[:, :1], k, v)
    grid = lambda t: t[:, 1:].reshape(b, f, -1, *t.shape[2:])         # (B, F, P, h, d)
    qg, kg, vg = grid(q), grid(k), grid(v)
    # Group-internal logits plus a logit for the cls key, one softmax over [cls, group].
    if self.mode == 'time':
      inner = jnp.einsum('bfphd,bgphd->bhfpg', qg, kg)
    else:
      inner = jnp.einsum('bfphd,bfqhd->bhfpq', qg, kg)
    to_cls = jnp.einsum('bfphd,bhd->bhfp', qg, k[:, 0])[..., None]
    a = softmax(jnp.concatenate([to_cls, inner], axis=-1))
    out = jnp.einsum('bhfp,bhd->bfphd', a[..., 0], v[:, 0])
    if self.mode == 'time':
      out = out + jnp.einsum('bhfpg,bgphd->bfphd', a[..., 1:], vg)
    else:
      out = out + jnp.einsum('bhfpq,bfqhd->bfphd', a[..., 1:], vg)
    out = jnp.concatenate([cls_out, out.reshape(b, -1, *out.shape[3:])], axis=1)
    out = dense(dim, name='proj')(merge_heads(out))
    return (out, {self.mode: a.reshape(*a.shape[:2], -1, a.shape[-1])}) if return_attn else out

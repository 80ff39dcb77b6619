"""Memory-lean exact trajectory attention (selected by `ModelConfig.trajectory_impl`).

The reference (`attention.trajectory_spatial` + `trajectory_temporal`) materialises the
(N, N) score matrix per head and then applies `proj_kv` to all N*F trajectory tokens. Two exact
alternatives, equal to it in float32 (values and gradients; tests/test_fast_attention.py):

* 'frames'  -- the spatial step is F independent attentions of all N queries against one frame's
  P keys, i.e. ONE `jax.nn.dot_product_attention` call with frames folded into the batch. With
  `implementation='cudnn'` (GPU, bf16/fp16) that is a flash kernel and never holds the scores;
  with 'xla' (CPU) XLA still builds the (F, N, P) = (N, N) logits, so on CPU it is a layout
  change, not a memory saving.
* 'chunked' -- spatial AND temporal step fused per chunk of queries (default: one frame's P
  queries), run with `lax.map` (a compiled loop) and `jax.checkpoint` on the chunk body, so
  neither the (N, N) scores nor the (N, F, D) trajectory tokens ever exist in full, forward or
  backward: only one chunk's (C, N) scores and (C, F, D) tokens are live at a time. Everything
  after the qkv projection is per query (query s only needs row s of the scores and its own F
  trajectory tokens), which is what makes the fusion exact.

Both fast modes (and the approximations when a fast mode is selected) compute only what is
used of `proj_kv`: with values='original' the temporal values are the trajectory tokens
themselves and the v-half of `proj_kv` is dead weight (its parameters still exist, for
checkpoint compatibility; they get zero gradient as in the reference), and the k-half is
applied to the query instead of the N*F trajectory tokens (`temporal_from_tokens`).
"""
from typing import Optional

import jax
import jax.numpy as jnp

IMPLS = ('einsum', 'frames', 'chunked')
BACKENDS = ('xla', 'cudnn', 'auto')   # jax.nn.dot_product_attention implementation; auto = None


def softmax(logits, axis=-1):
  """Softmax in at least float32, whatever the compute dtype (bfloat16 logits overflow exp)."""
  dtype = jnp.promote_types(logits.dtype, jnp.float32)
  return jax.nn.softmax(logits.astype(dtype), axis=axis).astype(logits.dtype)


def _dense(x, kernel, bias):
  return jnp.einsum('...i,io->...o', x, kernel) + bias


def split_heads(x, num_heads):
  """(..., D) -> (..., heads, D / heads)."""
  return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


def trajectory_frames(q, k, v, temporal_slots: int, backend: str = 'xla'):
  """Spatial step as one dot_product_attention over B*F (query set, frame) pairs.

  q (scaled), k, v: (B, N, h, d). Returns (B, N, F, h, d) like `trajectory_spatial`.
  """
  b, n, h, d = k.shape
  f = temporal_slots
  qf = jnp.broadcast_to(q[:, None], (b, f, n, h, d)).reshape(b * f, n, h, d)
  kf = k.reshape(b * f, n // f, h, d)
  vf = v.reshape(b * f, n // f, h, d)
  x = jax.nn.dot_product_attention(qf, kf, vf, scale=1.0,
                                   implementation=None if backend == 'auto' else backend)
  return x.reshape(b, f, n, h, d).transpose(0, 2, 1, 3, 4)


def temporal_from_tokens(traj, frame_of_query, wq, bq, wkv, bkv, *, values: str, scale: float):
  """Temporal step from trajectory tokens, computing only the used half of proj_kv.

  traj: (B, C, F, h, d) trajectory tokens of C queries; frame_of_query: (C,) int, the frame of
  each query (its diagonal token). wq/bq: proj_q; wkv/bkv: the full proj_kv (D, 2D) / (2D,).
  Returns out (B, C, h, d) and the temporal attention (B, h, C, F).

  With values='original' the keys only ever meet the query in a dot product, so the query is
  projected back through the key weights instead of projecting all F trajectory tokens:
  q . (W_h^T x + b_h) = (W_h q) . x + q . b_h per head h. Exact up to rounding, and F times
  fewer multiply-adds than proj_kv on N*F tokens (that projection is 1/3 of Mformer-B's FLOPs).
  """
  b, c, f, h, d = traj.shape
  dim = h * d
  xm = traj.reshape(b, c, f, dim)
  own = (frame_of_query[:, None] == jnp.arange(f))[None, :, :, None]   # (1, C, F, 1)
  diag = jnp.sum(jnp.where(own, xm, 0), axis=2)                          # exact: one term
  q2 = split_heads(_dense(diag, wq, bq), h) * scale                          # (B, C, h, d)
  if values == 'original':
    wk, bk = wkv[:, :dim].reshape(dim, h, d), bkv[:dim].reshape(h, d)
    back = jnp.einsum('bchd,jhd->bchj', q2, wk)                          # (B, C, h, D)
    logits = (jnp.einsum('bchj,bcfj->bhcf', back, xm)
              + jnp.einsum('bchd,hd->bhc', q2, bk)[..., None])
    vals = traj
  else:
    k2 = split_heads(_dense(xm, wkv[:, :dim], bkv[:dim]), h)
    logits = jnp.einsum('bchd,bcfhd->bhcf', q2, k2)
    vals = split_heads(_dense(xm, wkv[:, dim:], bkv[dim:]), h)
  a = softmax(logits)
  return jnp.einsum('bhcf,bcfhd->bchd', a, vals), a


def trajectory_chunked(q, k, v, proj, *, temporal_slots: int, values: str, scale: float,
                       query_chunk: int = 0, remat: bool = True):
  """Fused exact trajectory attention (spatial + temporal) over query chunks.

  q (scaled), k, v: (B, N, h, d) patch tokens; proj = (wq, bq, wkv, bkv) the proj_q and proj_kv
  parameters (already in the compute dtype). query_chunk: queries per chunk (0 = one frame, P);
  N is padded up to a multiple (padded queries are computed and dropped).
  remat: recompute each chunk in the backward pass (without it the loop stacks every chunk's
  residuals, i.e. the (N, N) scores again).
  Returns out (B, N, h, d) and the temporal attention (B, h, N, F).
  """
  b, n, h, d = k.shape
  f = temporal_slots
  p = n // f
  c = p if query_chunk <= 0 else min(query_chunk, n)
  nc = -(-n // c)
  pad = nc * c - n
  # Operands laid out once so that both spatial products are plain batched matmuls (XLA:CPU
  # runs einsums with interleaved batch dimensions 2-3x slower).
  keys_t = k.reshape(b, f * p, h, d).transpose(0, 2, 3, 1)                 # (B, h, d, F*P)
  vt = v.reshape(b, f, p, h, d).transpose(0, 3, 1, 2, 4)               # (B, h, F, P, d)
  frame = jnp.minimum(jnp.arange(nc * c) // p, f - 1).reshape(nc, c)
  qc = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0))).reshape(b, nc, c, h, d).swapaxes(0, 1)

  def body(args):
    qi, fi = args
    a = softmax(jnp.einsum('bchd,bhdx->bhcx', qi, keys_t).reshape(b, h, c, f, p))
    traj = jnp.einsum('bhfcp,bhfpd->bhfcd', a.transpose(0, 1, 3, 2, 4), vt)
    traj = traj.transpose(0, 3, 2, 1, 4)                                # (B, C, F, h, d)
    return temporal_from_tokens(traj, fi, *proj, values=values, scale=scale)

  if remat:
    # Save nothing inside a chunk: the backward pass recomputes the chunk's scores, so only the
    # chunk inputs (C queries) are kept per step, never N x N or N x F x D.
    body = jax.checkpoint(body, prevent_cse=False,
                          policy=jax.checkpoint_policies.nothing_saveable)
  out, attn = jax.lax.map(body, (qc, frame))              # (nc, B, C, h, d), (nc, B, h, C, F)
  out = out.swapaxes(0, 1).reshape(b, nc * c, h, d)[:, :n]
  attn = attn.transpose(1, 2, 0, 3, 4).reshape(b, h, nc * c, f)[:, :, :n]
  return out, attn


def trajectory_fast(q, k, v, proj, *, temporal_slots: int, values: str, scale: float, impl: str,
                    query_chunk: int = 0, backend: str = 'xla', spatial: Optional[jnp.ndarray] = None):
  """Exact trajectory attention of the patch tokens with a memory-lean implementation.

  q (unscaled), k, v: (B, N, h, d). `spatial`: precomputed trajectory tokens (B, N, F, h, d)
  (approximations); then only the temporal step runs. Returns (B, N, h, d), (B, h, N, F).
  """
  n = q.shape[1]
  if spatial is None and impl == 'chunked':
    return trajectory_chunked(q * scale, k, v, proj, temporal_slots=temporal_slots, values=values,
                              scale=scale, query_chunk=query_chunk)
  if spatial is None:
    if impl != 'frames':
      raise ValueError(f'unknown trajectory impl {impl!r}; expected one of {IMPLS}')
    spatial = trajectory_frames(q * scale, k, v, temporal_slots, backend)
  frame = jnp.arange(n) // (n // temporal_slots)
  return temporal_from_tokens(spatial, frame, *proj, values=values, scale=scale)

"""Approximations of the *spatial* step of trajectory attention.

Every function here maps unscaled patch queries/keys/values `q, k, v` of shape (BH, N, d), with
N = F * P tokens in frame-major order, to trajectory tokens X of shape (BH, N, F, d) where

    X[n, f] ~= sum_p softmax_p(q_n . k_{f,p} / sqrt(d)) v_{f,p}

i.e. one per-frame softmax per (query, frame) pair -- the quantity `trajectory_spatial` computes
exactly. The temporal step that follows is unchanged.

* `orthoformer`: the paper's Orthoformer with landmarks shared across frames (the model's path),
  landmarks chosen greedily from the queries, most orthogonal first, with no gradient through
  the selection. The first landmark is random (a JAX key) or replayed (an index per row); a
  layer given no 'landmarks' RNG stream (evaluation, predict, features) takes
  `eval_first_index`, which is the same for a clip whatever batch it is in.
* `nystrom`: Nystromformer-style segment-mean landmarks + iterative pseudo-inverse, per frame.
* `performer`: FAVOR+ positive orthogonal random features, per-frame normalisation.
(The official Nystrom and Performer branches crash; these are our own working versions.)

With num_frames=1 every function is plain softmax self-attention approximated (X[:, :, 0]), which
is how the Long Range Arena encoder (`mformer_jax/lra`) uses them through `self_attention`. An
optional key padding `mask` (BH, N), True = real token, keeps padded tokens out of every key
sum and out of the landmark choice; without one, behaviour is unchanged.
"""
import zlib

import jax
import jax.numpy as jnp
import numpy as np


def _frames(x, num_frames):
  bh, n = x.shape[:2]
  return x.reshape(bh, num_frames, n // num_frames, *x.shape[2:])


def _mask_keys(logits, mask, num_frames):
  """Logits (..., F, P) over keys with padded keys at the dtype's minimum (weight 0)."""
  if mask is None:
    return logits
  m = _frames(mask, num_frames)  # (BH, F, P)
  m = m.reshape(m.shape[0], *([1] * (logits.ndim - 3)), *m.shape[1:])
  return jnp.where(m, logits, jnp.finfo(logits.dtype).min)


def layer_key(name: str) -> jax.Array:
  """A layer's fixed key (its Performer features, its eval-time landmarks): key(0) folded with
  the layer's name by crc32, which, unlike Python's salted str hash, is the same in every
  process and on every host."""
  return jax.random.fold_in(jax.random.key(0), zlib.crc32(name.encode()) % 2**31)


# ----------------------------------------------------------------------------------------------
# Orthoformer
# ----------------------------------------------------------------------------------------------
def eval_first_index(key, batch: int, heads: int, n: int, mask=None):
  """The Orthoformer's first landmark of every row (b * heads + head, batch-major), (batch *
  heads,) int32, where no 'landmarks' RNG stream is given. The official model draws it at random
  even at test time; here each head's is drawn from `key` (a layer_key) alone, uniform over the
  row's n tokens (or its real ones, mask (batch * heads, n)), so a clip gets the same landmarks
  in evaluation, predict and features, whatever batch it is in and wherever in it."""
  keys = jax.random.split(key, heads)
  if mask is None:
    per_head = jax.vmap(lambda k: jax.random.randint(k, (), 0, n))(keys)
    return jnp.broadcast_to(per_head, (batch, heads)).reshape(-1)
  logits = jnp.where(mask, 0.0, -jnp.inf).reshape(batch, heads, n)
  return jax.vmap(lambda lg: jax.vmap(jax.random.categorical)(keys, lg))(logits).reshape(-1)


def orthogonal_landmark_indices(q, num_landmarks: int, first_index, mask=None):
  """Greedy most-orthogonal subset of the rows of q, per batch row.

  q: (BH, N, d); first_index: (BH,) int. Returns (BH, L) token indices in increasing token order
  (the official code returns landmarks in token order, via a selection mask).
  Selection: keep for every token the running max |cos| to the selected set; the next landmark
  is the unselected token with the smallest value (ties -> lowest index). Runs as a fori_loop.
  Padded tokens (mask False) come after every real one.
  """
  qn = q / jnp.maximum(jnp.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
  bh, n, _ = q.shape
  rows = jnp.arange(bh)

  def cos_to(idx):
    return jnp.abs(jnp.einsum('bnd,bd->bn', qn, qn[rows, idx]))

  selected = jnp.zeros((bh, n), bool).at[rows, first_index].set(True)
  running_max = cos_to(first_index)
  if mask is not None:
    running_max = jnp.where(mask, running_max, 2.0)  # above any |cos|, below 'selected'

  def step(_, carry):
    selected, running_max = carry
    nxt = jnp.argmin(jnp.where(selected, 10.0, running_max), axis=-1)
    return selected.at[rows, nxt].set(True), jnp.maximum(running_max, cos_to(nxt))

  selected, _ = jax.lax.fori_loop(1, num_landmarks, step, (selected, running_max))
  # Stable sort puts the selected tokens first, in token order.
  return jnp.argsort(~selected, axis=-1, stable=True)[:, :num_landmarks]


def orthoformer(q, k, v, *, num_landmarks: int, num_frames: int, rng=None, first_index=None,
                return_attn: bool = False, mask=None):
  """Orthoformer with landmarks shared across frames. Exactly one of rng / first_index."""
  bh, n, d = q.shape
  if (rng is None) == (first_index is None):
    raise ValueError('orthoformer needs exactly one of rng (random first landmark) or '
                     'first_index (replay)')
  if num_landmarks > n:
    raise ValueError(f'num_landmarks={num_landmarks} exceeds the {n} tokens')
  if first_index is None and mask is None:
    first_index = jax.random.randint(rng, (bh,), 0, n)
  elif first_index is None:  # uniform over the real tokens
    first_index = jax.random.categorical(rng, jnp.where(mask, 0.0, -jnp.inf))
  first_index = jnp.asarray(first_index).reshape(bh)
  scale = d ** -0.25
  q, k = q * scale, k * scale
  idx = jax.lax.stop_gradient(orthogonal_landmark_indices(jax.lax.stop_gradient(q), num_landmarks,
                                                          first_index, mask))
  landmarks = jax.lax.stop_gradient(jnp.take_along_axis(q, idx[..., None], axis=1))  # (BH, L, d)
  kernel_1 = jax.nn.softmax(jnp.einsum('bnd,bld->bnl', q, landmarks), axis=-1)
  kernel_2 = jax.nn.softmax(_mask_keys(
      jnp.einsum('bld,bfpd->blfp', landmarks, _frames(k, num_frames)), mask, num_frames), -1)
  pooled = jnp.einsum('blfp,bfpd->blfd', kernel_2, _frames(v, num_frames))
  x = jnp.einsum('bnl,blfd->bnfd', kernel_1, pooled)
  if return_attn:
    return x, jnp.einsum('bnl,blfp->bnfp', kernel_1, kernel_2), idx
  return x


# ----------------------------------------------------------------------------------------------
# Nystrom
# ----------------------------------------------------------------------------------------------
def _segment_means(x, num_segments, mask=None):
  """Means of `num_segments` contiguous, near-equal segments along axis -2 (of the real tokens
  only, if `mask` (x.shape[:-1]) is given: then padding changes nothing)."""
  n = x.shape[-2]
  if mask is not None:
    count = jnp.maximum(jnp.sum(mask, -1, keepdims=True), 1)
    seg = (jnp.arange(n) * num_segments) // count                          # (..., N)
    onehot = (seg[..., None, :] == jnp.arange(num_segments)[:, None]) & mask[..., None, :]
    onehot = onehot / jnp.maximum(jnp.sum(onehot, -1, keepdims=True), 1)  # (..., S, N)
    return jnp.einsum('...sn,...nd->...sd', onehot.astype(x.dtype), x)
  seg = (np.arange(n) * num_segments) // n  # static segment id per token
  onehot = jnp.asarray(np.eye(num_segments)[seg].T / np.bincount(seg, minlength=num_segments)[:, None],
                       x.dtype)
  return jnp.einsum('sn,...nd->...sd', onehot, x)


def iterative_pinv(a, num_iters: int):
  """Moore-Penrose pseudo-inverse of row-stochastic matrices (Nystromformer's iteration)."""
  eye = jnp.eye(a.shape[-1], dtype=a.dtype)
  z = jnp.swapaxes(a, -1, -2) / (jnp.max(jnp.sum(jnp.abs(a), -2), -1)[..., None, None]
                                  * jnp.max(jnp.sum(jnp.abs(a), -1), -1)[..., None, None])

  def body(_, z):
    az = a @ z
    return 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))

  return jax.lax.fori_loop(0, num_iters, body, z)


def nystrom(q, k, v, *, num_landmarks: int, num_frames: int, pinv_iters: int = 6, mask=None):
  """Per-frame Nystrom approximation; exact (up to the pinv iteration) when L == P.

  With a mask, landmarks are means over the real tokens only and padded keys get no weight, so
  a padded sequence gives what the unpadded one does (the Nystromformer code instead averages
  zeroed padding into its landmarks)."""
  bh, n, d = q.shape
  p = n // num_frames
  lm = min(num_landmarks, p)
  scale = d ** -0.25
  q, k = q * scale, _frames(k * scale, num_frames)
  q_lm = _segment_means(q, lm, mask)                    # (BH, L, d), shared by all frames
  k_lm = _segment_means(k, lm, None if mask is None else _frames(mask, num_frames))  # (BH, F, L, d)
  kernel_1 = jax.nn.softmax(jnp.einsum('bnd,bfld->bfnl', q, k_lm), -1)
  kernel_2 = jax.nn.softmax(jnp.einsum('bld,bfmd->bflm', q_lm, k_lm), -1)
  kernel_3 = jax.nn.softmax(_mask_keys(jnp.einsum('bld,bfpd->bflp', q_lm, k), mask, num_frames),
                            -1)
  pooled = jnp.einsum('bflp,bfpd->bfld', kernel_3, _frames(v, num_frames))
  pooled = iterative_pinv(kernel_2, pinv_iters) @ pooled
  return jnp.einsum('bfnl,bfld->bnfd', kernel_1, pooled)


# ----------------------------------------------------------------------------------------------
# Performer (FAVOR+)
# ----------------------------------------------------------------------------------------------
def orthogonal_gaussian(key, num_features: int, dim: int, dtype=jnp.float32):
  """(m, d) random features: blocks of orthogonal rows with chi-distributed norms."""
  blocks = []
  keys = jax.random.split(key, num_features // dim + 2)
  for i in range(num_features // dim + 1):
    qmat, _ = jnp.linalg.qr(jax.random.normal(keys[i], (dim, dim)))
    blocks.append(qmat.T)
  w = jnp.concatenate(blocks, 0)[:num_features]
  norms = jnp.linalg.norm(jax.random.normal(keys[-1], (num_features, dim)), axis=-1)
  return (w * norms[:, None]).astype(dtype)


def _positive_features(x, w, stabiliser_axes, mask=None):
  proj = jnp.einsum('...d,md->...m', x, w)
  proj = proj - 0.5 * jnp.sum(x * x, -1, keepdims=True)
  # A shift shared by the numerator and denominator of the per-frame ratio cancels exactly.
  # Padded rows (mask False) neither set the shift nor count: their features are 0.
  real = proj if mask is None else jnp.where(mask[..., None], proj, -jnp.inf)
  shift = jnp.max(real, axis=stabiliser_axes, keepdims=True)
  proj = proj - jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
  return jnp.exp(proj) if mask is None else jnp.where(mask[..., None], jnp.exp(proj), 0.0)


def performer(q, k, v, *, num_frames: int, features, mask=None):
  """Per-frame linear attention with positive random features `features` (m, d)."""
  d = q.shape[-1]
  scale = d ** -0.25
  w = features.astype(q.dtype)
  phi_q = _positive_features(q * scale, w, (-1,))                              # (BH, N, m)
  phi_k = _positive_features(_frames(k * scale, num_frames), w, (-3, -2, -1),
                             None if mask is None else _frames(mask, num_frames))  # (BH, F, P, m)
  kv = jnp.einsum('bfpm,bfpd->bfmd', phi_k, _frames(v, num_frames))
  num = jnp.einsum('bnm,bfmd->bnfd', phi_q, kv)
  den = jnp.einsum('bnm,bfm->bnf', phi_q, jnp.sum(phi_k, axis=2))
  return num / den[..., None]


# ----------------------------------------------------------------------------------------------
# Plain self-attention (one group of keys)
# ----------------------------------------------------------------------------------------------
def exact(q, k, v, *, mask=None):
  """The reference: softmax(q k^T / sqrt(d)) v over the real keys, (BH, N, d)."""
  logits = jnp.einsum('bnd,bmd->bnm', q, k) * q.shape[-1] ** -0.5
  return jnp.einsum('bnm,bmd->bnd', jax.nn.softmax(_mask_keys(logits, mask, 1), -1), v)


def self_attention(q, k, v, *, method: str, mask=None, **kw):
  """(BH, N, d) -> (BH, N, d): `exact` or one approximation with a single group of keys
  (num_frames=1). kw: num_landmarks / rng / first_index / pinv_iters / features."""
  if method == 'exact':
    return exact(q, k, v, mask=mask, **kw)
  fns = {'orthoformer': orthoformer, 'nystrom': nystrom, 'performer': performer}
  if method not in fns:
    raise ValueError(f'unknown attention {method!r}; expected exact, {", ".join(fns)}')
  return fns[method](q, k, v, num_frames=1, mask=mask, **kw)[:, :, 0]

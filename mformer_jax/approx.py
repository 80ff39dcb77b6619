"""Approximations of the *spatial* step of trajectory attention.

Every function here maps unscaled patch queries/keys/values `q, k, v` of shape (BH, N, d), with
N = F * P tokens in frame-major order, to trajectory tokens X of shape (BH, N, F, d) where

    X[n, f] ~= sum_p softmax_p(q_n . k_{f,p} / sqrt(d)) v_{f,p}

i.e. one per-frame softmax per (query, frame) pair -- the quantity `trajectory_spatial` computes
exactly. The temporal step that follows is unchanged.

* `orthoformer`: the paper's Orthoformer with landmarks shared across frames (the model's path),
  landmarks chosen greedily from the queries, most orthogonal first, with no gradient through
  the selection. The first landmark is random (a JAX key) or replayed (an index per row).
* `nystrom`: Nystromformer-style segment-mean landmarks + iterative pseudo-inverse, per frame.
* `performer`: FAVOR+ positive orthogonal random features, per-frame normalisation.
(The official Nystrom and Performer branches crash; these are our own working versions.)
"""
import jax
import jax.numpy as jnp
import numpy as np


def _frames(x, num_frames):
  bh, n, d = x.shape
  return x.reshape(bh, num_frames, n // num_frames, d)


# ----------------------------------------------------------------------------------------------
# Orthoformer
# ----------------------------------------------------------------------------------------------
def orthogonal_landmark_indices(q, num_landmarks: int, first_index):
  """Greedy most-orthogonal subset of the rows of q, per batch row.

  q: (BH, N, d); first_index: (BH,) int. Returns (BH, L) token indices in increasing token order
  (the official code returns landmarks in token order, via a selection mask).
  Selection: keep for every token the running max |cos| to the selected set; the next landmark
  is the unselected token with the smallest value (ties -> lowest index). Runs as a fori_loop.
  """
  qn = q / jnp.maximum(jnp.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
  bh, n, _ = q.shape
  rows = jnp.arange(bh)

  def cos_to(idx):
    return jnp.abs(jnp.einsum('bnd,bd->bn', qn, qn[rows, idx]))

  selected = jnp.zeros((bh, n), bool).at[rows, first_index].set(True)
  running_max = cos_to(first_index)

  def step(_, carry):
    selected, running_max = carry
    nxt = jnp.argmin(jnp.where(selected, 10.0, running_max), axis=-1)
    return selected.at[rows, nxt].set(True), jnp.maximum(running_max, cos_to(nxt))

  selected, _ = jax.lax.fori_loop(1, num_landmarks, step, (selected, running_max))
  # Stable sort puts the selected tokens first, in token order.
  return jnp.argsort(~selected, axis=-1, stable=True)[:, :num_landmarks]


def orthoformer(q, k, v, *, num_landmarks: int, num_frames: int, rng=None, first_index=None,
                return_attn: bool = False):
  """Orthoformer with landmarks shared across frames. Exactly one of rng / first_index."""
  bh, n, d = q.shape
  if (rng is None) == (first_index is None):
    raise ValueError('orthoformer needs exactly one of rng (random first landmark) or '
                     'first_index (replay)')
  if num_landmarks > n:
    raise ValueError(f'num_landmarks={num_landmarks} exceeds the {n} tokens')
  if first_index is None:
    first_index = jax.random.randint(rng, (bh,), 0, n)
  first_index = jnp.asarray(first_index).reshape(bh)
  scale = d ** -0.25
  q, k = q * scale, k * scale
  idx = jax.lax.stop_gradient(orthogonal_landmark_indices(jax.lax.stop_gradient(q), num_landmarks,
                                                          first_index))
  landmarks = jax.lax.stop_gradient(jnp.take_along_axis(q, idx[..., None], axis=1))  # (BH, L, d)
  kernel_1 = jax.nn.softmax(jnp.einsum('bnd,bld->bnl', q, landmarks), axis=-1)
  kernel_2 = jax.nn.softmax(jnp.einsum('bld,bfpd->blfp', landmarks, _frames(k, num_frames)), -1)
  pooled = jnp.einsum('blfp,bfpd->blfd', kernel_2, _frames(v, num_frames))
  x = jnp.einsum('bnl,blfd->bnfd', kernel_1, pooled)
  if return_attn:
    return x, jnp.einsum('bnl,blfp->bnfp', kernel_1, kernel_2), idx
  return x


# ----------------------------------------------------------------------------------------------
# Nystrom
# ----------------------------------------------------------------------------------------------
def _segment_means(x, num_segments):
  """Means of `num_segments` contiguous, near-equal segments along axis -2."""
  n = x.shape[-2]
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


def nystrom(q, k, v, *, num_landmarks: int, num_frames: int, pinv_iters: int = 6):
  """Per-frame Nystrom approximation; exact (up to the pinv iteration) when L == P."""
  bh, n, d = q.shape
  p = n // num_frames
  lm = min(num_landmarks, p)
  scale = d ** -0.25
  q, k = q * scale, _frames(k * scale, num_frames)
  q_lm = _segment_means(q, lm)                          # (BH, L, d), shared by all frames
  k_lm = _segment_means(k, lm)                          # (BH, F, L, d), per frame
  kernel_1 = jax.nn.softmax(jnp.einsum('bnd,bfld->bfnl', q, k_lm), -1)
  kernel_2 = jax.nn.softmax(jnp.einsum('bld,bfmd->bflm', q_lm, k_lm), -1)
  kernel_3 = jax.nn.softmax(jnp.einsum('bld,bfpd->bflp', q_lm, k), -1)
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


def _positive_features(x, w, stabiliser_axes):
  proj = jnp.einsum('...d,md->...m', x, w)
  proj = proj - 0.5 * jnp.sum(x * x, -1, keepdims=True)
  # A shift shared by the numerator and denominator of the per-frame ratio cancels exactly.
  proj = proj - jax.lax.stop_gradient(jnp.max(proj, axis=stabiliser_axes, keepdims=True))
  return jnp.exp(proj)


def performer(q, k, v, *, num_frames: int, features):
  """Per-frame linear attention with positive random features `features` (m, d)."""
  d = q.shape[-1]
  scale = d ** -0.25
  w = features.astype(q.dtype)
  phi_q = _positive_features(q * scale, w, (-1,))                              # (BH, N, m)
  phi_k = _positive_features(_frames(k * scale, num_frames), w, (-3, -2, -1))   # (BH, F, P, m)
  kv = jnp.einsum('bfpm,bfpd->bfmd', phi_k, _frames(v, num_frames))
  num = jnp.einsum('bnm,bfmd->bnfd', phi_q, kv)
  den = jnp.einsum('bnm,bfm->bnf', phi_q, jnp.sum(phi_k, axis=2))
  return num / den[..., None]

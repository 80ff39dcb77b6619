"""Semi-supervised label propagation with frozen features (Jabri et al. 2020, `videowalk`).

Every frame gets a grid of L2-normalised features. Frame t's labels are a weighted sum of the
labels of a context: the first frame (ground truth, long-term memory) and the previous
`context` frames (their own propagated soft labels; the video is front-padded with copies of
frame 0). Affinities are feature dot products / temperature; a context frame's cell counts only
within `radius` grid cells of the query cell (the first frame everywhere); each query keeps the
top-k over all context cells jointly and softmaxes them.

Features of a Motionformer: it embeds tubelets of `tubelet_size` (2) frames, so a frame has no
tokens of its own. Two ways to give it some (`tubelets=`):
  repeat:  clips of num_frames/2 consecutive frames, each frame repeated to fill its tubelet;
           frame t's tokens are those of its slot (a still tubelet: no motion inside it).
  sliding: real clips of num_frames consecutive frames starting at every residue mod 2, so each
           frame t starts a tubelet (t, t+1) of some clip; frame t takes that tubelet's tokens.
Both cost the same (2 T / num_frames clips). The tokens are those of one block (`layer`): the
last block after the final LayerNorm by default (DINO's choice), or block i's raw output.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

TUBELETS = ('repeat', 'sliding')


def clip_plan(num_video_frames, num_frames, tubelet, mode):
  """[(frame indices of one clip (num_frames,), {slot: video frame})] covering every frame."""
  last = num_video_frames - 1
  plan = []
  if mode == 'repeat':
    slots = num_frames // tubelet
    for start in range(0, num_video_frames, slots):
      frames = [min(start + i, last) for i in range(slots)]
      plan.append((np.repeat(frames, tubelet),
                   {i: start + i for i in range(slots) if start + i <= last}))
  elif mode == 'sliding':
    starts = sorted(s + r for s in range(0, num_video_frames, num_frames) for r in range(tubelet))
    for start in starts:
      if start > last:
        continue
      frames = [min(start + i, last) for i in range(num_frames)]
      plan.append((np.array(frames), {i: start + tubelet * i for i in range(num_frames // tubelet)
                                      if start + tubelet * i <= last}))
  else:
    raise ValueError(f'tubelets={mode!r}; expected one of {TUBELETS}')
  return plan


def model_features(model, variables, frames, *, layer=-1, tubelets='repeat', batch_size=4):
  """(T, S, S, 3) uint8 frames -> (T, S/p, S/p, D) L2-normalised token features."""
  cfg = model.cfg
  t, s = frames.shape[0], frames.shape[1]
  if s % cfg.patch_size or frames.shape[2] != s:
    raise ValueError(f'frames {frames.shape[1:3]} must be square multiples of {cfg.patch_size}')
  grid = s // cfg.patch_size
  layer = layer % cfg.depth
  key = None if layer == cfg.depth - 1 else f'block{layer}_out'

  @jax.jit
  def tokens(clips):
    x = clips.astype(jnp.float32) / 127.5 - 1.0  # the trainer's normalisation (mean, std 0.5)
    out, state = model.apply(variables, x, method='features', mutable=['intermediates'])
    if key is not None:
      out = state['intermediates'][key][0]
    return out[:, 1:].reshape(clips.shape[0], cfg.temporal_slots, grid, grid, -1)

  plan = clip_plan(t, cfg.num_frames, cfg.tubelet_size, tubelets)
  feats = [None] * t
  for i in range(0, len(plan), batch_size):
    chunk = plan[i:i + batch_size]
    clips = np.stack([frames[idx] for idx, _ in chunk])
    pad = batch_size - len(chunk)  # one compiled shape for every batch
    clips = np.concatenate([clips, np.repeat(clips[-1:], pad, 0)]) if pad else clips
    out = np.asarray(tokens(clips), np.float32)
    for b, (_, slots) in enumerate(chunk):
      for slot, frame in slots.items():
        if feats[frame] is None:
          feats[frame] = out[b, slot]
  return l2_normalise(np.stack(feats))


def pixel_features(frames, stride):
  """Baseline: each cell's raw RGB patch, mean-centred; (T, S/stride, S/stride, stride^2 3)."""
  t, s = frames.shape[:2]
  g = s // stride
  x = frames[:, :g * stride, :g * stride].astype(np.float32) / 255.0
  x = x.reshape(t, g, stride, g, stride, 3).transpose(0, 1, 3, 2, 4, 5).reshape(t, g, g, -1)
  return l2_normalise(x - x.mean(axis=-1, keepdims=True) + 1e-3)


def oracle_features(ids, num_objects, grid):
  """Sanity check: each cell's ground-truth label histogram as its feature, so that cells
  of one object match each other and nothing else; (T, grid, grid, K + 1)."""
  return l2_normalise(soft_labels(ids, num_objects, grid))


def l2_normalise(x):
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def soft_labels(ids, num_objects, grid):
  """(..., H, W) ids -> (..., grid, grid, K + 1) one-hot averaged over each cell's pixels
  (antialiased bilinear downsampling); void (255) counts as background."""
  ids = np.where(np.asarray(ids) == 255, 0, ids)
  onehot = (ids[..., None] == np.arange(num_objects + 1)).astype(np.float32)
  shape = onehot.shape[:-3] + (grid, grid, num_objects + 1)
  return np.asarray(jax.image.resize(onehot, shape, 'linear', antialias=True))


def upsample_argmax(labels, size):
  """(T, h, w, C) soft labels -> (T, H, W) ids: bilinear upsampling, then argmax."""
  t, _, _, c = labels.shape
  up = jax.image.resize(jnp.asarray(labels), (t, size[0], size[1], c), 'linear')
  return np.asarray(jnp.argmax(up, axis=-1)).astype(np.uint8)


def radius_bias(grid, radius):
  """(hw, hw) 0 where the key cell lies within `radius` cells of the query cell, else -1e10."""
  yy, xx = np.divmod(np.arange(grid * grid), grid)
  dist = np.sqrt((yy[:, None] - yy[None]) ** 2 + (xx[:, None] - xx[None]) ** 2)
  return np.where(dist < radius, 0.0, -1e10).astype(np.float32)


@functools.partial(jax.jit, static_argnames=('topk', 'temperature'))
def _step(query, keys, labels, bias, *, topk, temperature):
  """query (Q, D), keys (1 + n, Q, D), labels (1 + n, Q, C) -> (Q, C)."""
  logits = jnp.einsum('qd,nkd->qnk', query, keys)
  logits = logits.at[:, 1:].add(bias[:, None, :])  # the first frame is not radius-restricted
  logits = logits.reshape(query.shape[0], -1) / temperature
  weights, index = jax.lax.top_k(logits, topk)
  weights = jax.nn.softmax(weights, axis=-1)
  return jnp.einsum('qk,qkc->qc', weights, labels.reshape(-1, labels.shape[-1])[index])


def propagate(feats, first_labels, *, topk=10, context=20, radius=12.0, temperature=0.05):
  """feats (T, g, g, D), first_labels (g, g, C) -> (T, g, g, C) soft labels (frame 0 = given)."""
  t, g, _, d = feats.shape
  q = g * g
  feats = jnp.asarray(feats.reshape(t, q, d))
  first = jnp.asarray(first_labels.reshape(q, -1))
  bias = jnp.asarray(radius_bias(g, radius))
  topk = min(topk, (1 + context) * q)
  queue_f = [feats[0]] * context
  queue_l = [first] * context
  out = [first]
  for i in range(1, t):
    keys = jnp.stack([feats[0]] + queue_f)
    labels = jnp.stack([first] + queue_l)
    pred = _step(feats[i], keys, labels, bias, topk=topk, temperature=temperature)
    out.append(pred)
    queue_f, queue_l = queue_f[1:] + [feats[i]], queue_l[1:] + [pred]
  return np.asarray(jnp.stack(out)).reshape(t, g, g, -1)

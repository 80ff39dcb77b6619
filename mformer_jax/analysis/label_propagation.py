"""Semi-supervised label propagation with frozen features, by the protocol of videowalk (Jabri
et al. 2020) or of DINO's `eval_video_segmentation.py` (`PROTOCOLS`).

Every frame gets a grid of L2-normalised features. Frame t's labels are a weighted sum of the
labels of a context: the first frame (ground truth, long-term memory) and up to `context`
previous frames (their own propagated soft labels). Affinities are feature dot products /
temperature; context cells count only within a neighbourhood of the query cell; each query
keeps the top-k over all context cells jointly and softmaxes them (DINO's exp(aff / 0.1),
zeroed outside the top k and normalised to sum 1, is the same softmax). Where the protocols
differ, a `Protocol` field says how.

Features of a Motionformer: it embeds tubelets of `tubelet_size` (2) frames, so a frame has no
tokens of its own. Two ways to give it some (`tubelets=`):
  repeat:  clips of num_frames/2 consecutive frames, each frame repeated to fill its tubelet;
           frame t's tokens are those of its slot (a still tubelet: no motion inside it).
  sliding: real clips of num_frames consecutive frames starting at every residue mod 2, so each
           frame t starts a tubelet (t, t+1) of some clip; frame t takes that tubelet's tokens.
Both cost the same (2 T / num_frames clips). An image ViT is the one-frame model
(`single_frame.py`): a clip is one frame. The tokens are those of one block (`layer`): the last
block after the final LayerNorm by default (DINO's choice), or block i's raw output.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from mformer_jax.errors import ConfigError
from mformer_jax.data import PIXEL_MEAN, PIXEL_STD, to_model_input

TUBELETS = ('repeat', 'sliding')
NEIGHBOURHOODS = ('disk', 'square')
LABELS = ('videowalk', 'dino')


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Every setting of a propagation run (the results JSON records all of them)."""
  topk: int
  context: int            # previous frames besides the first
  radius: float           # neighbourhood size, in feature cells
  temperature: float
  neighbourhood: str      # disk: distance < radius | square: |dy|, |dx| <= radius
  restrict_first: bool    # the neighbourhood also applies to the first frame
  pad_queue: bool         # the queue starts as `context` copies of frame 0 (else empty, growing)
  labels: str             # how labels enter and leave the grid (`first_labels`, `to_ids`)
  # The long side is floored to a multiple of this (0: the patch size); a patch that does not
  # divide it keeps its own (`davis.size_multiple`).
  size_multiple: int

  def __post_init__(self):
    for field, allowed in (('neighbourhood', NEIGHBOURHOODS), ('labels', LABELS)):
      if getattr(self, field) not in allowed:
        raise ConfigError(f'{field}={getattr(self, field)!r}; expected one of {allowed}')
    if self.topk < 1 or self.context < 0 or self.temperature <= 0 or self.size_multiple < 0:
      raise ConfigError('need topk >= 1, context >= 0, temperature > 0, size_multiple >= 0: '
                        f'{self}')


PROTOCOLS = {
    # videowalk's README command (--topk 10 --videoLen 20 --radius 12 --temperature 0.05
    # --cropSize -1: full 480p), code/test.py: first frame unrestricted, queue front-padded with
    # frame 0; labels averaged over each cell in, bilinear to the frame and argmax out.
    'videowalk': Protocol(topk=10, context=20, radius=12.0, temperature=0.05, neighbourhood='disk',
                          restrict_first=False, pad_queue=True, labels='videowalk',
                          size_multiple=0),
    # DINO's defaults (--topk 5 --n_last_frames 7 --size_mask_neighborhood 12, aff / 0.1): the
    # square window masks every context frame, the queue grows from empty; labels by nearest
    # sampling in; out: bilinear x cell, per-channel min-max, argmax, nearest to the frame. Its
    # frames: short side 480, the long side floored to a multiple of 64 (its patches: 8, 16).
    'dino': Protocol(topk=5, context=7, radius=12.0, temperature=0.1, neighbourhood='square',
                     restrict_first=True, pad_queue=False, labels='dino', size_multiple=64),
}


def input_size(frame_hw, short_side, cell, multiple=0, square=False):
  """(H, W) the features are computed at: the short side `short_side` (0: the frame's own,
  floored to `cell`), the long side at the frame's aspect ratio floored to `multiple` (0: the
  cell size); `square`: short_side x short_side (the squeeze)."""
  multiple = multiple or cell
  if multiple % cell:
    raise ConfigError(f'the patch size {cell} does not divide {multiple}, the multiple the long '
                      'side is floored to')
  h, w = frame_hw
  short = short_side or min(h, w) // cell * cell
  if short % cell or short <= 0:
    nearest, below = '', short // cell * cell
    if below > 0:
      nearest = f' (it divides {below} and {below + cell})'
    raise ConfigError(f'the patch size {cell} does not divide the short side {short}{nearest}')
  if square:
    return short, short
  long = int(short * max(h, w) / min(h, w) // multiple * multiple)
  if long < short:  # only when the multiple exceeds the long side itself
    raise ConfigError(f'the long side of {w}x{h} at short side {short} floors to {long}, '
                      f'below a multiple of {multiple}')
  return (short, long) if h <= w else (long, short)


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
    raise ConfigError(f'tubelets={mode!r}; expected one of {TUBELETS}')
  return plan


def model_features(model, variables, frames, *, layer=-1, tubelets='repeat', batch_size=4,
                   mean=PIXEL_MEAN, std=PIXEL_STD):
  """(T, H, W, 3) uint8 frames -> (T, H/p, W/p, D) L2-normalised token features; the pixels
  normalised with the model source's mean and std (`data.to_model_input`)."""
  cfg = model.cfg
  t, h, w = frames.shape[:3]
  if h % cfg.patch_size or w % cfg.patch_size:
    raise ConfigError(f'frames {h}x{w} are not multiples of the patch size {cfg.patch_size}')
  grid = (h // cfg.patch_size, w // cfg.patch_size)
  layer = layer % cfg.depth
  key = None if layer == cfg.depth - 1 else f'block{layer}_out'

  @jax.jit
  def tokens(clips):
    out, state = model.apply(variables, clips, method='features', mutable=['intermediates'])
    if key is not None:
      out = state['intermediates'][key][0]
    return out[:, 1:].reshape(clips.shape[0], cfg.temporal_slots, *grid, -1)

  plan = clip_plan(t, cfg.num_frames, cfg.tubelet_size, tubelets)
  feats = [None] * t
  for i in range(0, len(plan), batch_size):
    chunk = plan[i:i + batch_size]
    clips = np.stack([frames[idx] for idx, _ in chunk])
    pad = batch_size - len(chunk)  # one compiled shape for every batch
    clips = np.concatenate([clips, np.repeat(clips[-1:], pad, 0)]) if pad else clips
    out = np.asarray(tokens(to_model_input(clips, mean=mean, std=std)), np.float32)
    for b, (_, slots) in enumerate(chunk):
      for slot, frame in slots.items():
        if feats[frame] is None:
          feats[frame] = out[b, slot]
  return l2_normalise(np.stack(feats))


def pixel_features(frames, stride):
  """Baseline: each cell's raw RGB patch, mean-centred; (T, H/stride, W/stride, stride^2 3)."""
  t, h, w = frames.shape[:3]
  gh, gw = h // stride, w // stride
  x = frames[:, :gh * stride, :gw * stride].astype(np.float32) / 255.0
  x = x.reshape(t, gh, stride, gw, stride, 3).transpose(0, 1, 3, 2, 4, 5).reshape(t, gh, gw, -1)
  return l2_normalise(x - x.mean(axis=-1, keepdims=True) + 1e-3)


def oracle_features(ids, num_objects, grid):
  """Sanity check: each cell's ground-truth label histogram as its feature, so that cells
  of one object match each other and nothing else; (T, gh, gw, K + 1)."""
  return l2_normalise(soft_labels(ids, num_objects, grid))


def l2_normalise(x):
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _onehot(ids, num_objects):
  ids = np.where(np.asarray(ids) == 255, 0, ids)  # void counts as background
  return (ids[..., None] == np.arange(num_objects + 1)).astype(np.float32)


def soft_labels(ids, num_objects, grid):
  """(..., H, W) ids -> (..., gh, gw, K + 1) one-hot averaged over each cell's pixels
  (antialiased bilinear downsampling; videowalk's labels in)."""
  onehot = _onehot(ids, num_objects)
  shape = onehot.shape[:-3] + tuple(grid) + (num_objects + 1,)
  return np.asarray(jax.image.resize(onehot, shape, 'linear', antialias=True))


def _pil_nearest(ids, hw):
  return np.array(Image.fromarray(np.asarray(ids, np.uint8)).resize(hw[::-1], Image.NEAREST))


def first_labels(ids, num_objects, grid, protocol):
  """The first frame's (H, W) ids as (gh, gw, K + 1) labels on the feature grid."""
  if protocol.labels == 'dino':  # PIL nearest from the frame to the grid (DINO's `read_seg`)
    return _onehot(_pil_nearest(ids, grid), num_objects)
  return soft_labels(ids, num_objects, grid)


def to_ids(labels, size, protocol, cell):
  """(T, gh, gw, C) soft labels -> (T, H, W) ids at the frame size `size`.

  videowalk: bilinear upsampling to the frame, argmax. dino: bilinear upsampling by the cell
  size (to the frame size the features were computed at), each channel min-max normalised
  where its maximum is positive, argmax, PIL nearest to the frame size."""
  t, gh, gw, c = labels.shape
  if protocol.labels == 'videowalk':
    up = jax.image.resize(jnp.asarray(labels), (t, size[0], size[1], c), 'linear')
    return np.asarray(jnp.argmax(up, axis=-1)).astype(np.uint8)
  up = np.asarray(jax.image.resize(jnp.asarray(labels), (t, gh * cell, gw * cell, c), 'linear'))
  lo = up.min(axis=(1, 2), keepdims=True)
  span = up.max(axis=(1, 2), keepdims=True) - lo
  positive = up.max(axis=(1, 2), keepdims=True) > 0
  up = np.where(positive, (up - lo) / np.where(span > 0, span, 1), up)
  ids = np.argmax(up, axis=-1).astype(np.uint8)
  return np.stack([_pil_nearest(f, size) for f in ids])


def neighbourhood_bias(grid, radius, shape='disk'):
  """(q, q) 0 where the key cell lies in the query cell's neighbourhood, else -1e10; q = gh gw.
  disk: Euclidean distance < radius (videowalk's mask); square: |dy|, |dx| <= radius (DINO's
  `restrict_neighborhood`)."""
  gh, gw = grid
  yy, xx = np.divmod(np.arange(gh * gw, dtype=np.int32), gw)
  dy, dx = np.abs(yy[:, None] - yy[None]), np.abs(xx[:, None] - xx[None])
  inside = np.sqrt(dy ** 2 + dx ** 2) < radius if shape == 'disk' else np.maximum(dy, dx) <= radius
  return np.where(inside, 0.0, -1e10).astype(np.float32)


@functools.partial(jax.jit, static_argnames=('topk', 'temperature', 'restrict_first'))
def _step(query, keys, labels, bias, *, topk, temperature, restrict_first):
  """query (Q, D), keys (1 + n, Q, D), labels (1 + n, Q, C) -> (Q, C)."""
  logits = jnp.einsum('qd,nkd->qnk', query, keys)
  if restrict_first:
    logits = logits + bias[:, None, :]
  else:
    logits = logits.at[:, 1:].add(bias[:, None, :])
  logits = logits.reshape(query.shape[0], -1) / temperature
  weights, index = jax.lax.top_k(logits, min(topk, logits.shape[1]))
  weights = jax.nn.softmax(weights, axis=-1)
  return jnp.einsum('qk,qkc->qc', weights, labels.reshape(-1, labels.shape[-1])[index])


def propagate(feats, first, protocol):
  """feats (T, gh, gw, D), first (gh, gw, C) -> (T, gh, gw, C) soft labels (frame 0 = given)."""
  t, gh, gw, d = feats.shape
  q = gh * gw
  feats = jnp.asarray(feats.reshape(t, q, d))
  first = jnp.asarray(first.reshape(q, -1))
  bias = jnp.asarray(neighbourhood_bias((gh, gw), protocol.radius, protocol.neighbourhood))
  n = protocol.context if protocol.pad_queue else 0
  queue_f, queue_l = [feats[0]] * n, [first] * n
  out = [first]
  for i in range(1, t):
    pred = _step(feats[i], jnp.stack([feats[0]] + queue_f), jnp.stack([first] + queue_l), bias,
                 topk=protocol.topk, temperature=protocol.temperature,
                 restrict_first=protocol.restrict_first)
    out.append(pred)
    keep = max(len(queue_f) + 1 - protocol.context, 0)  # the newest `context` frames
    queue_f, queue_l = (queue_f + [feats[i]])[keep:], (queue_l + [pred])[keep:]
  return np.asarray(jnp.stack(out)).reshape(t, gh, gw, -1)

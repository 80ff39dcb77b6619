r"""Attention maps of a Motionformer (appendix Fig. 2): the probabilities every layer computes.

    from mformer_jax.model import attention_maps
    maps = attention_maps.compute(model, variables, clip)        # clip (B, T, H, W, 3)
    maps = attention_maps.compute(model, variables, clip, layers=[11])   # one layer only

Keys by `model.cfg.attention` (N = F*P patch tokens, F temporal slots, P patches per slot;
token n = f*P + p; leading axis = the selected layers, in increasing order):
  trajectory  'space'    (L, B, heads, N, F, P)  query n's softmax over the P patches of each
                                                 slot f (the per-frame maps of Fig. 2)
              'temporal' (L, B, heads, N, F)     its softmax over its F trajectory tokens
  joint       'joint'    (L, B, heads, 1+N, 1+N) the full space-time softmax, cls first
  divided     'time'     (L, B, heads, N, 1+F)   softmax over [cls, the F tokens at n's patch]
              'space'    (L, B, heads, N, 1+P)   softmax over [cls, the P patches of n's slot]
  space       'space'    (L, B, heads, N, 1+P)   as divided (single-frame attention)
Divided maps leave out the cls query's row (it attends to all 1+N tokens in both steps).
Orthoformer models give the maps the model actually uses, which are approximate: the per-frame
softmax implied by its landmarks, softmax(q L) softmax_f(L k) (`approx.orthoformer`), with the
model's eval landmarks (`approx.eval_first_index`, or `first_landmarks` replayed like the model's
forward). Nystrom and Performer have no per-frame probabilities; they are an error (load the
weights with approx='none' for the exact attention they approximate).

The clip is embedded once; blocks then run one at a time up to the last selected layer, all
with the reference einsum attention whatever the model's trajectory_impl ('frames' runs
`dot_product_attention`, which is not float64-exact, and a selected layer needs the (N, N)
probabilities anyway, so no other layer costs more memory than it), reading the probabilities
of the selected layers only: only their maps are ever held. Values equal the official code's
tensors (tests/test_attention_maps.py).
"""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib import figure
from matplotlib.backends import backend_agg

from mformer_jax.errors import ConfigError
from mformer_jax.model import attention
from mformer_jax.model.layout import unstack_blocks
from mformer_jax.model.motionformer import Block, ModelConfig, Motionformer


_ATTENTION_MODULES = (attention.TrajectoryAttention, attention.JointAttention,
                      attention.DividedAttention)


def select_layers(layers, depth: int) -> list[int]:
  """Sorted distinct layer indices (None = all; negative counts from the end)."""
  if layers is None:
    return list(range(depth))
  chosen = [int(i) for i in np.atleast_1d(layers)]
  bad = [i for i in chosen if not -depth <= i < depth]
  if bad or not chosen:
    raise ConfigError(f'layer {bad or chosen} out of range: the model has {depth} layers '
                      f'(0..{depth - 1}, or negative from the end)')
  return sorted({i % depth for i in chosen})


@functools.lru_cache(maxsize=16)
def _block_fn(cfg: ModelConfig, with_maps: bool):
  """jit(params, x, first_landmarks) -> next x [, {name: probabilities}] for one block.

  With maps, every attention module's call is intercepted to return its probabilities: the
  block is the model's own code, so the recomputed layer cannot drift from the forward.
  """
  block = Block(cfg, 0.0)

  def run(params, x, first_landmarks):
    maps = {}

    def capture(next_fun, args, kwargs, context):
      if with_maps and context.method_name == '__call__' and isinstance(context.module,
                                                                        _ATTENTION_MODULES):
        out, probs = next_fun(*args, **kwargs, return_attn=True)
        maps.update(probs)
        return out
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(capture):
      x = block.apply({'params': params}, x, False, first_landmarks)
    return (x, maps) if with_maps else x

  return jax.jit(run)


def compute(model: Motionformer, variables, clip, *, layers=None, first_landmarks=None):
  """{name: (len(layers), B, heads, ...)} attention probabilities; see the module docstring.

  model/variables: from `weights.load_official`, `weights.load_model` or a training run
  (either block layout). layers: indices (None = every layer). first_landmarks: Orthoformer
  only, (depth, B*heads) as `Motionformer.__call__`.
  """
  cfg = model.cfg
  if cfg.attention == 'trajectory' and cfg.approx not in ('none', 'orthoformer'):
    raise ConfigError(f'approx={cfg.approx!r} has no per-frame attention probabilities; load the '
                      "model with approx='none' for the exact maps of these weights")
  chosen = select_layers(layers, cfg.depth)
  params = unstack_blocks(variables['params'])
  x = model.apply(variables, jnp.asarray(clip), method=Motionformer.embed)
  block_cfg = dataclasses.replace(cfg, scan_blocks=False, remat='none', trajectory_impl='einsum')
  maps = {}
  for i in range(chosen[-1] + 1):
    fl = None if first_landmarks is None else jnp.asarray(first_landmarks)[i]
    if i in chosen:
      x, probs = _block_fn(block_cfg, True)(params[f'blocks_{i}'], x, fl)
      for name, value in probs.items():
        maps.setdefault(name, []).append(value)
    else:
      x = _block_fn(block_cfg, False)(params[f'blocks_{i}'], x, fl)
  return {name: jnp.stack(values) for name, values in maps.items()}


def frame_maps(maps, cfg: ModelConfig):
  """Per-slot attention (L, B, heads, N, F, P) of every patch query, whatever the attention;
  each (query, slot) row sums to 1.

  trajectory: 'space' as is. joint: the query's row restricted to each slot's P patches and
  renormalised. divided: one block's two steps composed (time first, then space, as the block
  runs them): patch q of slot f reaches query n = (f0, p0) through token (f0, q), weight
  space[n, q] * time[(f0, q), f], renormalised over q; the cls paths are left out. 'space'
  models never look at another slot: an error.
  """
  f = cfg.temporal_slots
  if cfg.attention == 'trajectory':
    return maps['space']
  if cfg.attention == 'joint':
    a = maps['joint'][..., 1:, 1:]
    a = a.reshape(*a.shape[:-1], f, a.shape[-1] // f)
  elif cfg.attention == 'divided':
    space, time = maps['space'][..., 1:], maps['time'][..., 1:]
    lead, p = space.shape[:3], space.shape[-1]
    space = space.reshape(*lead, f, p, p)                            # [f0, p0, q]
    time = time.reshape(*lead, f, p, f)                              # [f0, q, f]
    a = jnp.einsum('...apq,...aqf->...apfq', space, time).reshape(*lead, f * p, f, p)
  else:
    raise ConfigError(f'{cfg.attention!r} attention never looks at another temporal slot')
  return a / a.sum(-1, keepdims=True)


def _panel(frame, heat, *, path, slot, query=None, truth=None, size=256):
  """One slot: frame with the heatmap, its argmax (circle) with an arrow from the previous
  slot's argmax (path: (x, y) per slot), the query (star) and the true position (+), as RGB."""
  s = frame.shape[0]
  fig = figure.Figure(figsize=(size / 100, size / 100), dpi=100)  # no pyplot: no global state
  canvas = backend_agg.FigureCanvasAgg(fig)
  ax = fig.add_axes([0, 0, 1, 1])
  ax.imshow(frame, extent=(0, s, s, 0), interpolation='nearest')
  ax.imshow(heat / heat.max(), extent=(0, s, s, 0), cmap='jet', alpha=0.45, vmin=0, vmax=1,
            interpolation='bilinear')
  if slot:                                 # where the peak came from: the previous slot's
    ax.annotate('', xy=path[slot], xytext=path[slot - 1],
                arrowprops=dict(arrowstyle='->', color='white', lw=1.5))
  ax.plot(*path[slot], 'o', ms=6, mfc='none', mec='white', mew=1.5)
  if truth is not None:
    ax.plot(*truth, '+', ms=8, color='black', mew=1.5)
  if query is not None:
    ax.plot(*query, '*', ms=14, color='yellow', mec='black')
  ax.text(1, 1, f'slot {slot}', color='white', fontsize=9, va='top',
          bbox=dict(facecolor='black', alpha=0.5, pad=1, lw=0))
  ax.set_xlim(0, s)
  ax.set_ylim(s, 0)
  ax.axis('off')
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def patch_centres(cfg: ModelConfig, size: int) -> np.ndarray:
  """(P, 2) (row, col) pixel centre of every patch of a size x size frame, row-major."""
  g = size // cfg.patch_size
  rows, cols = np.meshgrid(np.arange(g), np.arange(g), indexing='ij')
  return (np.stack([rows, cols], -1).reshape(-1, 2) + 0.5) * cfg.patch_size


def query_token(cfg: ModelConfig, size: int, frame: int, x: float, y: float) -> int:
  """Token index n of pixel (x, y) of input frame `frame`; clear errors when outside."""
  if not 0 <= frame < cfg.num_frames:
    raise ConfigError(f'query frame {frame} outside the clip (0..{cfg.num_frames - 1})')
  if not (0 <= x < size and 0 <= y < size):
    raise ConfigError(f'query point ({x}, {y}) outside the {size}x{size} frame')
  g = size // cfg.patch_size
  return ((frame // cfg.tubelet_size) * g + int(y) // cfg.patch_size) * g + int(x) // cfg.patch_size


def render(frames, fmap, cfg: ModelConfig, *, token, query_xy, truth=None):
  """Panels (F, S', S', 3) of one query: frames (F, S, S, 3) uint8 (one per slot), fmap (F, P)."""
  s = frames.shape[1]
  g = s // cfg.patch_size
  centres = patch_centres(cfg, s)
  path = [tuple(centres[i][::-1]) for i in np.argmax(fmap, -1)]
  q_slot = token // (g * g)
  return np.stack([
      _panel(frames[f], fmap[f].reshape(g, g), path=path, slot=f,
             query=query_xy if f == q_slot else None,
             truth=None if truth is None else truth[f][::-1])
      for f in range(len(frames))])


def input_bgr(cfg: ModelConfig) -> bool:
  """Whether a model takes BGR input, from the model alone (a checkpoint need not carry a data
  config): the released EK models were trained on BGR (as data.config sets data.bgr for
  epic_kitchens), every other model on RGB."""
  return cfg.epic_kitchens

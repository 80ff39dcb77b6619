r"""Attention maps of a Motionformer (appendix Fig. 2): the probabilities every layer computes.

    from mformer_jax.analysis import attention_maps
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
model's eval landmarks (its fixed per-layer key, or `first_landmarks` replayed like the model's
forward). Nystrom and Performer have no per-frame probabilities; they are an error (load the
weights with approx='none' for the exact attention they approximate).

The clip is embedded once; blocks then run one at a time up to the last selected layer, all
with the reference einsum attention whatever the model's trajectory_impl ('frames' runs
`dot_product_attention`, which is not float64-exact, and a selected layer needs the (N, N)
probabilities anyway, so no other layer costs more memory than it), reading the probabilities
of the selected layers only: only their maps are ever held. Values equal the official code's
tensors (tests/test_attention_maps.py).

CLI (Fig. 2): a PNG strip of the F slots with the query's attention overlaid, the query point
marked and the per-slot argmax path drawn as arrows, plus an animated GIF (or MP4):

  python -m mformer_jax.analysis.attention_maps --checkpoint=workdirs/demo --synthetic=0
  python -m mformer_jax.analysis.attention_maps --checkpoint=k400.pyth --video=clip.mp4 \
      --query=0,112,96 --layer=11 --head=-1 --output=maps/

--query=FRAME,X,Y: FRAME indexes the model's T input frames, X (column) and Y (row) are pixels
of the model's input (the crop shown in the strip). --head=-1 averages the heads.
"""
import dataclasses
import functools
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mformer_jax import attention, convert
from mformer_jax.model import Block, ModelConfig, Motionformer

_ATTENTION_MODULES = (attention.TrajectoryAttention, attention.JointAttention,
                      attention.DividedAttention)


def select_layers(layers, depth: int) -> list[int]:
  """Sorted distinct layer indices (None = all; negative counts from the end)."""
  if layers is None:
    return list(range(depth))
  chosen = [int(i) for i in np.atleast_1d(layers)]
  bad = [i for i in chosen if not -depth <= i < depth]
  if bad or not chosen:
    raise ValueError(f'layer {bad or chosen} out of range: the model has {depth} layers '
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

  model/variables: from `convert.load_official`, `checkpointing.load_model` or a training run
  (either block layout). layers: indices (None = every layer). first_landmarks: Orthoformer
  only, (depth, B*heads) as `Motionformer.__call__`.
  """
  cfg = model.cfg
  if cfg.attention == 'trajectory' and cfg.approx not in ('none', 'orthoformer'):
    raise ValueError(f'approx={cfg.approx!r} has no per-frame attention probabilities; load the '
                     "model with approx='none' for the exact maps of these weights")
  chosen = select_layers(layers, cfg.depth)
  params = convert.unstack_blocks(variables['params'])
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

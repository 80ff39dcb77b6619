"""The model's parameter tree: its shapes, the check that loaded weights fit them, and the two
layouts of the blocks: `blocks_0 .. blocks_{L-1}` (the official one, a subtree per block) and,
for `scan_blocks=True`, `blocks` with a leading depth axis. Every loader returns the layout of
the config it is given (`blocks_layout`)."""
import dataclasses
import re
from typing import Any, Mapping

import jax
import numpy as np
from flax import traverse_util

from mformer_jax.errors import CheckpointMismatchError
from mformer_jax.model.motionformer import ModelConfig, Motionformer, init_variables


def stack_blocks(params: Mapping) -> dict:
  """blocks_0 .. blocks_{L-1} -> blocks with a leading depth axis (the scan_blocks layout)."""
  names = sorted((k for k in params if re.fullmatch(r'blocks_\d+', k)), key=lambda k: int(k[7:]))
  if not names:
    return dict(params)
  out = {k: v for k, v in params.items() if k not in names}
  out['blocks'] = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                               *[params[k] for k in names])
  return out


def unstack_blocks(params: Mapping) -> dict:
  """Inverse of `stack_blocks` (a no-op on unstacked parameters)."""
  if 'blocks' not in params:
    return dict(params)
  stacked = jax.device_get(params['blocks'])
  out = {k: v for k, v in params.items() if k != 'blocks'}
  for i in range(jax.tree.leaves(stacked)[0].shape[0]):
    out[f'blocks_{i}'] = jax.tree.map(lambda a, i=i: a[i], stacked)
  return out


def blocks_layout(params: Mapping, cfg: ModelConfig) -> dict:
  """`params` (either layout) in the layout that `cfg` builds."""
  return stack_blocks(params) if cfg.scan_blocks else unstack_blocks(params)


def unscanned(cfg: ModelConfig) -> ModelConfig:
  """`cfg` with the blocks unstacked (the official layout)."""
  return dataclasses.replace(cfg, scan_blocks=False)


def check_fit(got: Mapping[str, Any], want: Mapping[str, Any], what: str, hint: str = '') -> None:
  """The mismatch check of loaded weights ({name: shape} of what was read and of what the
  model needs): a CheckpointMismatchError listing every missing, unexpected and mis-shaped name,
  or nothing when they fit."""
  missing = sorted(set(want) - set(got))
  unexpected = sorted(set(got) - set(want))
  misshaped = [f'{k}: checkpoint {tuple(got[k])} vs model {tuple(want[k])}'
               for k in sorted(set(want) & set(got)) if tuple(got[k]) != tuple(want[k])]
  if missing or unexpected or misshaped:
    lines = [f'{what} does not fit the model{hint}:']
    for title, keys in (('missing', missing), ('unexpected', unexpected), ('mis-shaped', misshaped)):
      if keys:
        lines.append(f'  {title} ({len(keys)}): ' + ', '.join(keys))
    raise CheckpointMismatchError('\n'.join(lines))


def param_shapes(cfg: ModelConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Flax path -> shape of the parameters `cfg` builds, in its layout (shapes only)."""
  shapes = jax.eval_shape(lambda: init_variables(Motionformer(cfg), jax.random.key(0)))
  return {p: tuple(v.shape) for p, v in traverse_util.flatten_dict(shapes['params']).items()}

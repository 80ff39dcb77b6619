"""Merging loaded weights into a model's fresh parameters, with dont_load patterns."""
import re

import jax
import numpy as np
from flax import traverse_util

from mformer_jax.errors import ConfigError
from mformer_jax.model import HEAD_PARAMS, ModelConfig
from mformer_jax.model.layout import blocks_layout, check_fit

HEAD_KEYS = tuple(HEAD_PARAMS.values())
# `load(dont_load=HEAD_PATTERNS)` keeps the fresh classifier(s): fine-tuning to a new label set.
HEAD_PATTERNS = (f'({"|".join(HEAD_KEYS)})/.*',)


def names(flat) -> dict:
  """{'/'-joined name: value} of a flattened tree."""
  return {'/'.join(k): v for k, v in flat.items()}


def merge(params, cfg: ModelConfig, like, dont_load, what: str):
  """`params` in the structure and dtypes of `like`; names matching a dont_load pattern keep
  like's values (big_vision's merge_params), the rest must fit exactly."""
  patterns = [re.compile(p) for p in dont_load]
  fresh = names(traverse_util.flatten_dict(jax.device_get(like)))
  got = names(traverse_util.flatten_dict(blocks_layout(params, cfg)))
  unused = [p.pattern for p in patterns if not any(p.fullmatch(n) for n in fresh)]
  if unused:
    raise ConfigError(f'dont_load pattern(s) {unused} match no parameter of the model')
  kept = lambda n: any(p.fullmatch(n) for p in patterns)
  head = lambda n: n.split('/')[0] in HEAD_KEYS
  heads_differ = {(n, v.shape) for n, v in got.items() if head(n)} != {
      (n, v.shape) for n, v in fresh.items() if head(n)}
  hint = (' (fine-tuning to a new label set? keep the fresh head: dont_load=HEAD_PATTERNS, '
          '--config.init.reset_head=True)' if heads_differ and not patterns else '')
  check_fit({n: v.shape for n, v in got.items() if not kept(n)},
                    {n: v.shape for n, v in fresh.items() if not kept(n)}, what, hint)
  out = {tuple(n.split('/')): v if kept(n) else np.asarray(got[n], v.dtype)
         for n, v in fresh.items()}
  return traverse_util.unflatten_dict(out)

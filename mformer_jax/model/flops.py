"""Parameter and multiply-accumulate counts computed from the model itself.

MACs are counted the way the paper (and torch's FlopCounterMode / 2) counts them: every matrix
product and convolution, nothing else (softmax, norms, GELU are free). We trace the forward to a
jaxpr (no computation, abstract shapes only) and sum the MACs of every `dot_general` and
`conv_general_dilated`, descending into nested jaxprs (jit, remat, custom_jvp) and multiplying
loop bodies by their trip counts.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from mformer_jax.model.motionformer import ModelConfig, Motionformer, init_variables


def _dot_macs(eqn) -> int:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (lc, rc), (lb, _) = eqn.params['dimension_numbers']
  batch = math.prod(lhs[i] for i in lb)
  contract = math.prod(lhs[i] for i in lc)
  lhs_free = math.prod(s for i, s in enumerate(lhs) if i not in lc and i not in lb)
  rhs_free = math.prod(s for i, s in enumerate(rhs) if i not in rc and i not in eqn.params['dimension_numbers'][1][1])
  return batch * contract * lhs_free * rhs_free


def _conv_macs(eqn) -> int:
  out = eqn.outvars[0].aval.shape
  kernel = eqn.invars[1].aval.shape
  dn = eqn.params['dimension_numbers']
  out_feature = out[dn.out_spec[1]]
  return math.prod(out) * math.prod(kernel) // out_feature // eqn.params['feature_group_count']


def _sub_jaxprs(eqn):
  for p in eqn.params.values():
    for item in (p if isinstance(p, (tuple, list)) else (p,)):
      if isinstance(item, jex_core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jex_core.Jaxpr):
        yield item


def count_macs(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      total += _dot_macs(eqn)
    elif name == 'conv_general_dilated':
      total += _conv_macs(eqn)
    elif name == 'scan':
      total += eqn.params['length'] * count_macs(eqn.params['jaxpr'].jaxpr)
    elif name == 'cond':  # one branch runs (remat='tied' has two identical ones)
      total += max(count_macs(b.jaxpr) for b in eqn.params['branches'])
    elif name == 'while':
      # fori_loop with static bounds: trip count is known only at run time in general; count
      # the body once per iteration when the bounds are literals, else once (documented).
      total += count_macs(eqn.params['body_jaxpr'].jaxpr) * _while_trips(eqn)
    else:
      total += sum(count_macs(j) for j in _sub_jaxprs(eqn))
  return total


def _while_trips(eqn) -> int:
  # lax.fori_loop(lo, hi) lowers to while with (i, hi, ...) carried; literals give the count.
  try:
    lo, hi = (v.val for v in eqn.invars[eqn.params['cond_nconsts'] + eqn.params['body_nconsts']:][:2])
    return max(int(hi) - int(lo), 1)
  except (AttributeError, TypeError, ValueError):
    return 1


def model_macs(cfg: ModelConfig, batch_size: int = 1) -> int:
  """MACs of one inference forward (eval mode) on a (batch, T, S, S, 3) clip."""
  model = Motionformer(cfg)
  variables = jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))
  clip = jax.ShapeDtypeStruct((batch_size, cfg.num_frames, cfg.img_size, cfg.img_size, 3),
                              jnp.float32)
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, clip)
  return count_macs(jaxpr.jaxpr)


def reference_macs(model_cfg) -> int:
  """MACs of one view of the reference computation (what the official code does), whatever
  impl, remat or block layout runs it: a leaner impl raises the utilisation, not the work
  counted. `model_cfg`: a ModelConfig, dict or ConfigDict."""
  if isinstance(model_cfg, ModelConfig):
    model_cfg = dataclasses.asdict(model_cfg)
  elif hasattr(model_cfg, 'to_dict'):
    model_cfg = model_cfg.to_dict()
  reference = {**model_cfg, 'trajectory_impl': 'einsum', 'remat': 'none', 'scan_blocks': False}
  return model_macs(ModelConfig.from_config(reference))


def model_params(cfg: ModelConfig) -> int:
  """Number of parameters (the unused 2D patch embedding included, as in the state dict)."""
  shapes = jax.eval_shape(lambda: init_variables(Motionformer(cfg), jax.random.key(0)))
  return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes['params']))

"""AdamW inside the backward pass, one block at a time (`train.fused_update=True`).

A standard step holds every parameter gradient at once (405 MB for Mformer-B in float32)
before AdamW runs. Here the backward pass is an explicit loop over the stacked blocks
(`scan_blocks=True`): it recomputes block k from its saved input, takes the block's vjp and
applies AdamW to block k's slices of the parameters and moments in place, so only one block's
gradient is ever live. The embedding and the head are updated at the end by the same rule.

Same update as `optax.adamw` with the recipe's schedule and decay mask (`optim.py`; tested
against it). Not compatible with clipping by global norm, which needs every gradient first.
The forward keeps only each block's input and recomputes the block in the backward pass (as
`remat='full'`). Dropout and drop-path keys are per block (`fold_in(key, k)`), so a run with
dropout draws different masks than the scanned model would; without dropout the step equals
the standard one.
"""
import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from mformer_jax.errors import ConfigError
from mformer_jax.model import Block, Motionformer, drop_path_rates


@dataclasses.dataclass(frozen=True)
class AdamW:
  schedule: Callable[[Any], Any]            # update count -> learning rate
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 0.05
  mask: Optional[Callable[[Any], Any]] = None  # params -> tree of bools (decay or not)

  def init(self, params):
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)
    return {'count': jnp.zeros((), jnp.int32), 'mu': zeros(), 'nu': zeros()}

  def leaf_update(self, p, g, mu, nu, count, decay: bool):
    """optax.adamw for one tensor; `count` = updates before this one."""
    mu = (1 - self.b1) * g + self.b1 * mu
    nu = (1 - self.b2) * (g * g) + self.b2 * nu
    t = count + 1
    u = (mu / (1 - self.b1 ** t).astype(mu.dtype)) / (
        jnp.sqrt(nu / (1 - self.b2 ** t).astype(nu.dtype)) + self.eps)
    if decay and self.weight_decay:
      u = u + self.weight_decay * p
    return p - self.schedule(count) * u, mu, nu

  def tree_update(self, params, grads, mu, nu, count, decay):
    out = jax.tree.map(lambda *a: self.leaf_update(*a[:4], count, a[4]),
                       params, grads, mu, nu, decay)
    pick = lambda i: jax.tree.map(lambda _, o: o[i], params, out)
    return pick(0), pick(1), pick(2)


def _index(tree, k):
  return jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, k, keepdims=False), tree)


def _put(tree, new, k):
  return jax.tree.map(lambda a, b: jax.lax.dynamic_update_index_in_dim(a, b, k, 0), tree, new)


def train_step(model: Motionformer, opt: AdamW, params, opt_state, clip, loss_fn, rngs):
  """One fused step: (new params, new opt_state, loss, aux, global gradient norm).

  loss_fn(model output) -> (scalar loss, aux); rngs: {'dropout': key, 'landmarks': key}.
  """
  c = model.cfg
  if not c.scan_blocks:
    raise ConfigError('the fused update loops over stacked blocks: set model.scan_blocks=True')
  rest = {k: v for k, v in params.items() if k != 'blocks'}
  decay = (opt.mask(params) if opt.mask else jax.tree.map(lambda _: True, params))
  count = opt_state['count']
  block = Block(c, 0.0)
  rates = jnp.asarray(drop_path_rates(c), jnp.float32)

  def block_fn(p, x, k):
    layer_rngs = {name: jax.random.fold_in(key, k) for name, key in rngs.items()}
    return block.apply({'params': p}, x, True, None, rates[k] if c.drop_path else None,
                       rngs=layer_rngs)

  # Forward: keep each block's input only.
  x0, embed_vjp = jax.vjp(lambda r: model.apply({'params': r}, clip, method='embed'), rest)

  def forward(x, k):
    return block_fn(_index(params['blocks'], k), x, k), x

  x_last, inputs = jax.lax.scan(forward, x0, jnp.arange(c.depth))
  head = lambda r, x: loss_fn(model.apply({'params': r}, x, train=True, rngs=rngs, method='logits'))
  loss, head_vjp, aux = jax.vjp(head, rest, x_last, has_aux=True)
  g_rest, g_x = head_vjp(jnp.ones_like(loss))

  def update(ops):
    p, g, mu, nu = ops
    return opt.tree_update(p, g, mu, nu, count, decay['blocks'])

  def backward(i, carry):
    g_x, sq, blocks, mu, nu = carry
    k = c.depth - 1 - i
    p = _index(blocks, k)
    _, vjp = jax.vjp(lambda p, x: block_fn(p, x, k), p, inputs[k])
    g_p, g_x = vjp(g_x)
    sq = sq + sum(jnp.sum(jnp.square(g.astype(sq.dtype))) for g in jax.tree.leaves(g_p))
    # Inside a cond the new slices are materialised before the in-place writes; fused into the
    # writes instead, each write would read the other stacks and XLA would copy all three.
    ops = (p, g_p, _index(mu, k), _index(nu, k))
    p, m, n = jax.lax.cond(count >= 0, update, update, ops)
    return g_x, sq, _put(blocks, p, k), _put(mu, m, k), _put(nu, n, k)

  carry = (g_x, jnp.zeros((), c.param_dtype), params['blocks'], opt_state['mu']['blocks'],
           opt_state['nu']['blocks'])
  g_x, sq, blocks, mu_b, nu_b = jax.lax.fori_loop(0, c.depth, backward, carry)
  g_rest = jax.tree.map(jnp.add, g_rest, embed_vjp(g_x)[0])
  sq = sq + sum(jnp.sum(jnp.square(g.astype(sq.dtype))) for g in jax.tree.leaves(g_rest))
  mu_r = {k: v for k, v in opt_state['mu'].items() if k != 'blocks'}
  nu_r = {k: v for k, v in opt_state['nu'].items() if k != 'blocks'}
  rest, mu_r, nu_r = opt.tree_update(rest, g_rest, mu_r, nu_r, count,
                                     {k: v for k, v in decay.items() if k != 'blocks'})
  new_state = {'count': count + 1, 'mu': {**mu_r, 'blocks': mu_b}, 'nu': {**nu_r, 'blocks': nu_b}}
  return {**rest, 'blocks': blocks}, new_state, loss, aux, jnp.sqrt(sq)

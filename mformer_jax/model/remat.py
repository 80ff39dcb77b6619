"""Block rematerialisation that also saves memory on XLA:CPU (`ModelConfig.remat='tied'`).

`jax.checkpoint` ties each block's recomputation to the block's output cotangent with an
optimization barrier, but XLA:CPU's pipeline expands those barriers before scheduling; its
scheduler then starts every block's recomputation early (and defers weight gradients), so
12 blocks' MLP intermediates are live at once and remat saves nothing on CPU (`--xla_dump_to`
live ranges at the peak). Here the whole backward of a block (recompute + transpose, weight
gradients included) runs inside one `lax.cond`, whose branches XLA executes as a unit, and the
cond's operands include the cotangent, so it cannot start early. Both branches are the same
function, so the (run-time) predicate does not affect the result.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp


def tied_call(block, x, train: bool, first_landmarks=None):
  """`block(x, train, first_landmarks)`, saving only x; the backward recomputes the block."""

  def pure(variables, x, rng):
    rngs = {} if rng is None else {'dropout': rng}
    return block.clone(parent=None).apply(variables, x, train, first_landmarks, rngs=rngs)

  def fn(mdl, x):
    return mdl(x, train, first_landmarks)

  def fwd(mdl, x):
    rng = mdl.make_rng('dropout') if train and mdl.has_rng('dropout') else None
    variables = {'params': mdl.variables['params']}
    return pure(variables, x, rng), (variables, x, rng)

  def bwd(res, g):
    variables, x, rng = res

    def backward(ops):
      variables, x, g = ops
      _, vjp = jax.vjp(lambda v, x: pure(v, x, rng), variables, x)
      return vjp(g)

    pred = jnp.ravel(g)[0] >= 0        # any run-time value: both branches are identical
    var_t, x_t = jax.lax.cond(pred, backward, backward, (variables, x, g))
    return var_t, x_t

  return nn.custom_vjp(fn, forward_fn=fwd, backward_fn=bwd)(block, x)

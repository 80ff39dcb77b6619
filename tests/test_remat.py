"""remat.tied_call (ModelConfig.remat='tied'): the block's backward, recomputed inside one
lax.cond, gives the gradients of the plain block (whole models: tests/test_scan.py, slow)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mformer_jax.model import remat


class Block(nn.Module):
  """A block's signature (x, train, first_landmarks): weights before and after a tanh."""

  @nn.compact
  def __call__(self, x, train, first_landmarks=None):
    return nn.Dense(3)(jnp.tanh(nn.Dense(5)(x))) + x


class Net(nn.Module):
  tied: bool

  @nn.compact
  def __call__(self, x):
    block = Block(name='block')
    return remat.tied_call(block, x, True) if self.tied else block(x, True)


def test_tied_call_gradients_equal_the_plain_blocks():
  x = jax.random.normal(jax.random.key(0), (4, 3))
  params = Net(False).init(jax.random.key(1), x)['params']

  def grads(tied):
    loss = lambda p, x: jnp.sum(jnp.sin(Net(tied).apply({'params': p}, x)))
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)

  plain, tied = grads(False), grads(True)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7), plain, tied)
  np.testing.assert_array_equal(Net(True).apply({'params': params}, x),
                                Net(False).apply({'params': params}, x))
  assert float(jnp.abs(tied[0]['block']['Dense_0']['kernel']).max()) > 0

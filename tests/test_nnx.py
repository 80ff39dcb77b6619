"""The linen model from Flax NNX through `flax.nnx.bridge.ToNNX` (docs/nnx.md): the model and its
attention modules initialise lazily, take converted weights into their NNX state, and give the
linen model's logits and gradients."""
import inspect
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.nnx import bridge

from mformer_jax.model import ModelConfig, Motionformer, attention, init_variables
from mformer_jax.model.layout import param_shapes

TINY = dict(num_classes=5, num_frames=4, img_size=16, patch_size=8, embed_dim=16, depth=2,
            num_heads=2, pretrain_img_size=16)
DOC = pathlib.Path(__file__).resolve().parent.parent / 'docs' / 'nnx.md'


def _random(shapes, seed):
  """Random values of a tree of shapes (numpy: nothing to compile). Not the fresh values: the
  fresh head and tubelet kernel are zeros, under which misplaced weights still give equal
  logits."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: (0.1 * rng.standard_normal(x.shape)).astype(x.dtype), shapes)


def _to_nnx(module, params, *args, **kwargs):
  """docs/nnx.md's recipe: wrap, build the state from an example input, put `params` in it."""
  m = bridge.ToNNX(module, rngs=nnx.Rngs(0))
  bridge.lazy_init(m, *args, **kwargs)
  nnx.update(m, nnx.State(params))
  return m


def _loss(logits):
  logits = logits if isinstance(logits, dict) else {'label': logits}
  return sum(optax.softmax_cross_entropy_with_integer_labels(v, jnp.arange(v.shape[0]) % 3).sum()
             for v in logits.values())


SLOW = pytest.mark.slow  # two compilations of a forward and backward pass: ~10 s on 2 cores


@pytest.mark.parametrize('overrides', [
    {'attention': 'joint'},                   # the fast tier's case: the cheapest to compile
    pytest.param({}, marks=SLOW),             # trajectory attention, the chunked kernel
    pytest.param({'scan_blocks': True, 'remat': 'full'}, marks=SLOW),  # lax.scan, remat
    pytest.param({'remat': 'dots'}, marks=SLOW),                       # nn.remat per block
    pytest.param({'epic_kitchens': True, 'num_verbs': 3, 'num_nouns': 4, 'attention': 'divided'},
                 marks=SLOW),
])
def test_model_from_nnx_same_logits_and_gradients(overrides):
  cfg = ModelConfig(**{**TINY, **overrides})
  model = Motionformer(cfg)
  clip = np.random.default_rng(3).standard_normal((3, 4, 16, 16, 3)).astype(np.float32)
  m = bridge.ToNNX(model, rngs=nnx.Rngs(0))
  bridge.lazy_init(m, clip, train=False)
  params = _random(jax.eval_shape(lambda: init_variables(model, jax.random.key(1)))['params'], 2)
  nnx.update(m, nnx.State(params))

  # Jitted, as used (op by op the tiny model takes tens of seconds on a busy CPU).
  nnx_out = nnx.jit(lambda m: (m(clip, train=False),
                               nnx.grad(lambda m: _loss(m(clip, train=False)))(m)))(m)
  linen = lambda p: model.apply({'params': p}, clip, train=False)
  want = jax.jit(lambda p: (linen(p), jax.grad(lambda p: _loss(linen(p)))(p)))(params)
  logits, grads = nnx_out[0], nnx.to_pure_dict(nnx_out[1])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
               logits, want[0])
  assert jax.tree.structure(grads) == jax.tree.structure(want[1])
  assert float(jnp.abs(want[1]['pre_logits']['kernel']).max()) > 1e-3  # the gradient reaches far
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               grads, want[1])

@pytest.mark.parametrize('module,tokens', [
    (attention.TrajectoryAttention(num_heads=2, temporal_slots=2), 1 + 2 * 4),
    (attention.TrajectoryAttention(num_heads=2, temporal_slots=2, impl='chunked'), 1 + 2 * 4),
    (attention.JointAttention(num_heads=2), 1 + 2 * 4),
    (attention.DividedAttention(num_heads=2, temporal_slots=2, mode='time'), 1 + 2 * 4),
    (attention.DividedAttention(num_heads=2, temporal_slots=2, mode='space'), 1 + 2 * 4),
])
def test_attention_modules_from_nnx(module, tokens):
  x = np.random.default_rng(0).standard_normal((2, tokens, 8)).astype(np.float32)
  params = _random(jax.eval_shape(module.init, jax.random.key(1), x)['params'], 2)
  m = _to_nnx(module, params, x)
  np.testing.assert_allclose(m(x), module.apply({'params': params}, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('overrides', [{}, {'epic_kitchens': True}, {'scan_blocks': True},
                                       {'attention': 'divided'}])
def test_no_method_shares_a_parameter_name(overrides):
  """ToNNX exposes the linen module's methods as attributes: a method named like a top-level
  parameter (a `head` method beside the 'head' Dense) shadows it and lazy_init fails with
  'expected Mapping; got partial'. Checked on full-size names, abstractly."""
  top = {path[0] for path in param_shapes(ModelConfig(**overrides))}
  methods = {n for n, _ in inspect.getmembers(Motionformer, inspect.isfunction)}
  assert top and not top & methods, top & methods


@pytest.mark.slow  # the golden model op by op
def test_docs_example_runs(capsys):
  """docs/nnx.md's Python block, as written (a committed golden checkpoint stands in for the
  download)."""
  block = re.search(r'```python\n(.*?)```', DOC.read_text(), re.S).group(1)
  exec(compile(block, str(DOC), 'exec'), {})  # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert re.search(r'max \|nnx - linen\| = 0\.0+e\+00', out), out

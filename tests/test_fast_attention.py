"""Memory-lean trajectory attention equals the einsum reference; Orthoformer is a compiled loop.

Structural memory checks use XLA's `memory_analysis()` of the compiled function (no timing).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mformer_jax.model import approx, attention, fast_attention
from mformer_jax.model import REMAT_POLICIES, ModelConfig, Motionformer, init_variables

TOL = 1e-5


def _max_err(a, b):
  return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b)))


def _loss(module, **kw):
  """jitted (variables, x) -> ((loss, output), grads w.r.t. variables and x)."""
  def f(variables, x):
    y = module.apply(variables, x, **kw)
    return jnp.sum(jnp.sin(3.0 * y)), y
  return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))


# (batch, frames F, patches P, heads, head dim, values, impls with query chunks):
# F > P, F < P, F == P; chunks of one frame, ragged (padded) and all queries at once.
CASES = [((2, 4, 6, 4, 8), 'original', [('frames', 0), ('chunked', 5)]),
         ((1, 6, 3, 2, 16), 'projected', [('chunked', 0)])]


@pytest.mark.slow
@pytest.mark.parametrize('shape,values,impls', CASES)
def test_layer_impls_match_einsum(shape, values, impls):
  b, f, p, h, d = shape
  x = jax.random.normal(jax.random.key(0), (b, 1 + f * p, h * d))
  ref = attention.TrajectoryAttention(h, f, values=values)
  variables = ref.init(jax.random.key(1), x)
  (l0, y0), g0 = _loss(ref)(variables, x)
  for impl, chunk in impls:
    mod = attention.TrajectoryAttention(h, f, values=values, impl=impl, query_chunk=chunk)
    # Same parameter tree and the same initial values as the reference module.
    assert _max_err(mod.init(jax.random.key(1), x), variables) == 0.0
    (_, y), g = _loss(mod)(variables, x)
    np.testing.assert_allclose(y, y0, atol=TOL)
    assert _max_err(g, g0) < TOL, (impl, chunk)


def test_spatial_frames_function_matches_reference():
  b, f, p, h, d = 2, 3, 5, 2, 8
  q, k, v = jax.random.normal(jax.random.key(2), (3, b, f * p, h, d))
  np.testing.assert_allclose(fast_attention.trajectory_frames(q, k, v, f),
                             attention.trajectory_spatial(q, k, v, f), atol=TOL)


TINY = dict(num_classes=5, num_frames=4, img_size=32, patch_size=8, embed_dim=32, depth=1,
            num_heads=4, drop_path=0.2)


@pytest.mark.slow
@pytest.mark.parametrize('extra,impls', [
    ({}, ('frames', 'chunked')),
    ({'approx': 'orthoformer', 'num_landmarks': 4, 'remat': 'tied', 'img_size': 24,
      'trajectory_values': 'projected', 'depth': 2},
     ('chunked',))])
def test_model_impls_match_einsum(extra, impls):
  clip = jax.random.normal(jax.random.key(3), (2, 4, extra.get('img_size', 32),
                                               extra.get('img_size', 32), 3))
  ref = Motionformer(ModelConfig(**{**TINY, **extra, 'trajectory_impl': 'einsum'}))
  variables = init_variables(ref, jax.random.key(0))
  kw = dict(train=True, rngs={'dropout': jax.random.key(5), 'landmarks': jax.random.key(6)})
  (_, y0), g0 = _loss(ref, **kw)(variables, clip)
  for impl in impls:
    mod = Motionformer(ModelConfig(**{**TINY, **extra, 'trajectory_impl': impl}))
    (_, y), g = _loss(mod, **kw)(variables, clip)
    np.testing.assert_allclose(y, y0, atol=TOL)
    assert _max_err(g, g0) < TOL, impl


@pytest.mark.slow
def test_remat_policies_match():
  clip = jax.random.normal(jax.random.key(3), (1, 4, 32, 32, 3))
  base = Motionformer(ModelConfig(**TINY))
  variables = init_variables(base, jax.random.key(0))
  kw = dict(train=True, rngs={'dropout': jax.random.key(5)})
  (_, y0), g0 = _loss(base, **kw)(variables, clip)
  for policy in set(REMAT_POLICIES) - {'none'}:
    (_, y), g = _loss(Motionformer(ModelConfig(**TINY, remat=policy)), **kw)(variables, clip)
    np.testing.assert_allclose(y, y0, atol=TOL)
    assert _max_err(g, g0) < TOL, policy


def test_config_validation():
  with pytest.raises(ValueError, match='trajectory_impl'):
    ModelConfig(trajectory_impl='flash')
  with pytest.raises(ValueError, match='attention_backend'):
    ModelConfig(attention_backend='triton')
  with pytest.raises(ValueError, match='query_chunk'):
    ModelConfig(query_chunk=-1)
  with pytest.raises(ValueError, match='dropout'):
    ModelConfig(trajectory_impl='chunked', attn_dropout=0.1)


def _temp_bytes(fn, *args):
  return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.slow
def test_chunked_never_holds_the_score_matrix():
  """XLA scratch of forward+backward stays below one (heads, N, N) float32 matrix."""
  b, f, p, h, d = 1, 8, 128, 4, 16
  n = f * p
  x = jax.random.normal(jax.random.key(0), (b, 1 + n, h * d))
  nn_bytes = n * n * h * 4
  temps = {}
  for impl in ('einsum', 'chunked'):
    mod = attention.TrajectoryAttention(h, f, impl=impl, query_chunk=64)
    variables = mod.init(jax.random.key(1), x)
    grad = jax.grad(lambda v, x: jnp.sum(mod.apply(v, x) ** 2), argnums=(0, 1))
    temps[impl] = _temp_bytes(grad, variables, x)
  assert temps['einsum'] > nn_bytes            # the reference does hold it (sanity)
  assert temps['chunked'] < nn_bytes / 2, temps
  assert temps['chunked'] < temps['einsum'] / 4, temps


def _ortho(q, k, v, lm):
  return approx.orthoformer(q, k, v, num_landmarks=lm, num_frames=4, rng=jax.random.key(0))


def test_orthoformer_selection_is_a_compiled_loop():
  q, k, v = jax.random.normal(jax.random.key(0), (3, 2, 64, 8))
  sizes = {}
  for lm in (4, 64):
    jaxpr = jax.make_jaxpr(lambda q, k, v: _ortho(q, k, v, lm))(q, k, v)
    text = str(jaxpr)
    assert 'while' in text or 'scan' in text
    sizes[lm] = len(text.splitlines())
    hlo = jax.jit(lambda q, k, v: _ortho(q, k, v, lm)).lower(q, k, v).as_text()
    assert 'while' in hlo
  assert abs(sizes[64] - sizes[4]) < 10         # no per-landmark unrolling


@pytest.mark.slow
def test_orthoformer_memory_is_n_by_l():
  """Scratch of forward+backward grows linearly in N (an (N, N) term would quadruple it)."""
  bh, f, d, lm = 4, 8, 16, 16
  temps = []
  for p in (64, 128):
    q, k, v = jax.random.normal(jax.random.key(0), (3, bh, f * p, d))
    grad = jax.grad(lambda q, k, v: jnp.sum(_ortho(q, k, v, lm) ** 2), argnums=(0, 1, 2))
    temps.append(_temp_bytes(grad, q, k, v))
  assert temps[1] < 2.5 * temps[0], temps
  assert temps[1] < bh * (f * 128) ** 2 * 4 / 4, temps

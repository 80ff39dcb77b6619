"""Parity with tensors produced by the official PyTorch code (tests/goldens, see its README).

Everything goes through the public API: `weights.load_official(path)` reads the state dict and the
file's own cfg, `model.apply` gives logits. Tolerances: float32 1e-5, float64 1e-10. The logits
are checked through the default trajectory_impl 'auto' (ModelConfig.trajectory_kernel: the
chunked kernel for trajectory attention) and through the einsum reference it keeps selectable.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mformer_jax import weights

from mformer_jax.model import approx, attention
GOLDENS = os.path.join(os.path.dirname(__file__), 'goldens')
MODELS = ['trajectory_orig', 'trajectory_fixed', 'joint', 'divided', 'trajectory_orthoformer',
          'trajectory_img224_p16', 'trajectory_img336_p16', 'ek_trajectory']


def _golden(name):
  return np.load(os.path.join(GOLDENS, name))


def _clip(z, dtype=jnp.float32):
  return jnp.asarray(z['io__input'], dtype).transpose(0, 2, 3, 4, 1)  # (B,C,T,H,W) -> (B,T,H,W,C)


def _replayed_landmarks(z, depth):
  keys = [f'rng__randint_call{i}' for i in range(depth)]
  if keys[0] not in z.files:
    return None
  return jnp.stack([jnp.asarray(z[k]).reshape(-1) for k in keys])


def _run(variant, overrides=None, dtype=jnp.float32, mutable=False):
  path = os.path.join(GOLDENS, f'model_{variant}.npz')
  z = np.load(path)
  model, variables = weights.load_official(path, overrides)
  out = model.apply(variables, _clip(z, dtype), train=False,
                    first_landmarks=_replayed_landmarks(z, model.cfg.depth),
                    mutable=['intermediates'] if mutable else False)
  return z, model, out


def _logit_pairs(z, out, suffix=''):
  if isinstance(out, dict):
    return [(np.asarray(out[k]), z[f'io__logits{suffix}_{k}']) for k in ('verb', 'noun')]
  return [(np.asarray(out), z[f'io__logits{suffix}'])]


# None: the default ('auto'); 'einsum': the reference, op for op like the official code.
IMPLS = [None, 'einsum']


def _impl_overrides(impl, **overrides):
  return {**overrides, **({} if impl is None else {'trajectory_impl': impl})}


def _assert_impl(model, variant, impl):
  """The kernel that actually ran: the default is chunked for trajectory attention only."""
  default = 'chunked' if model.cfg.attention == 'trajectory' else 'einsum'
  assert model.cfg.trajectory_kernel == (impl or default), (variant, impl)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('variant', MODELS)
def test_float32_logits(variant, impl):
  z, model, out = _run(variant, _impl_overrides(impl))
  _assert_impl(model, variant, impl)
  pairs = _logit_pairs(z, out)
  assert len(pairs) == (2 if variant.startswith('ek') else 1)
  for ours, ref in pairs:
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('variant', MODELS)
def test_float64_logits(variant, impl):
  with jax.enable_x64(True):
    z, model, out = _run(variant, _impl_overrides(impl, dtype='float64'), dtype=jnp.float64)
    _assert_impl(model, variant, impl)
    for ours, ref in _logit_pairs(z, out, '_f64'):
      assert ours.dtype == np.float64
      np.testing.assert_allclose(ours, ref, atol=1e-10, rtol=0)


def test_ek_heads_and_softmax_eval_output():
  """Both EK heads; the official eval forward returns softmax of each head's logits."""
  z, model, out = _run('ek_trajectory')
  assert out['verb'].shape == (2, 97) and out['noun'].shape == (2, 300)
  for k in ('verb', 'noun'):
    np.testing.assert_allclose(jax.nn.softmax(out[k]), z[f'io__output_eval_{k}'], atol=1e-6)


@pytest.mark.parametrize('variant', ['trajectory_orig', 'divided', 'trajectory_img336_p16'])
def test_intermediates(variant):
  z, model, (logits, state) = _run(variant, mutable=True)
  inter = jax.tree.map(lambda t: np.asarray(t[0]), dict(state['intermediates']),
                       is_leaf=lambda t: isinstance(t, tuple))  # sow stores 1-tuples
  np.testing.assert_allclose(inter['patch_embed_3d_out'], z['inter__patch_embed_3d_out'], atol=1e-5)
  np.testing.assert_allclose(inter['pos_embed_total'], z['inter__pos_embed_total'], atol=1e-5)
  np.testing.assert_allclose(inter['block0_in'], z['inter__block0_in'], atol=1e-5)
  for i in range(model.cfg.depth):
    np.testing.assert_allclose(inter[f'blocks_{i}']['attn_out'], z[f'inter__block{i}_attn_out'],
                               atol=1e-5)
    if variant == 'divided':
      np.testing.assert_allclose(inter[f'blocks_{i}']['timeattn_out'],
                                 z[f'inter__block{i}_timeattn_out'], atol=1e-5)
    np.testing.assert_allclose(inter[f'block{i}_out'], z[f'inter__block{i}_out'], atol=1e-5)
  _, feat = model.apply(weights.load_official(os.path.join(GOLDENS, f'model_{variant}.npz'))[1],
                        _clip(z), return_features=True)
  np.testing.assert_allclose(feat, z['io__features'], atol=1e-5)


def _module_attention(values, approx_type='none', num_landmarks=6):
  z = _golden('module_trajectory_attention.npz')
  params = {name: {'kernel': jnp.asarray(z[f'{name}.weight']).T, 'bias': jnp.asarray(z[f'{name}.bias'])}
            for name in ('qkv', 'proj_q', 'proj_kv', 'proj')}
  module = attention.TrajectoryAttention(num_heads=4, temporal_slots=3, values=values,
                                         approx=approx_type, num_landmarks=num_landmarks)
  return z, module, {'params': params}


@pytest.mark.parametrize('values,prefix', [('original', 'orig'), ('projected', 'fixed')])
def test_trajectory_attention_module(values, prefix):
  """Raw TrajectoryAttention with F=3 != P=5: output and the temporal attention."""
  z, module, variables = _module_attention(values)
  y, state = module.apply(variables, jnp.asarray(z['io__x']), mutable=['intermediates'])
  np.testing.assert_allclose(y, z[f'{prefix}__y'], atol=1e-5)
  np.testing.assert_allclose(state['intermediates']['temporal_attn'][0],
                             z[f'{prefix}__temporal_attn'], atol=1e-6)
  with jax.enable_x64(True):
    v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
    module64 = module.clone(dtype=jnp.float64, param_dtype=jnp.float64)
    y64 = module64.apply(v64, jnp.asarray(z['io__x'], jnp.float64))
    np.testing.assert_allclose(y64, z[f'{prefix}__y_f64'], atol=1e-10, rtol=0)


def test_trajectory_attention_module_orthoformer():
  z, module, variables = _module_attention('original', 'orthoformer', num_landmarks=6)
  y = module.apply(variables, jnp.asarray(z['io__x']),
                   first_landmarks=jnp.asarray(z['ortho__first_landmark_idx']).reshape(-1))
  np.testing.assert_allclose(y, z['ortho__y'], atol=1e-5)


@pytest.mark.parametrize('prefix,first', [('shared', None), ('fixedfirst0', 0)])
def test_orthoformer_function(prefix, first):
  """The raw function: landmarks (token order), their indices, output and attention."""
  z = _golden('fn_orthoformer.npz')
  q, k, v = (jnp.asarray(z[f'io__{n}']) for n in 'qkv')
  first_index = (z['shared__first_landmark_idx'].reshape(-1) if first is None
                 else np.full(q.shape[0], first))
  x, attn, idx = approx.orthoformer(q, k, v, num_landmarks=5, num_frames=3,
                                    first_index=first_index, return_attn=True)
  np.testing.assert_array_equal(idx, z[f'{prefix}__landmark_idx'])
  scaled_q = np.asarray(q) * q.shape[-1] ** -0.25
  np.testing.assert_allclose(np.take_along_axis(scaled_q, np.asarray(idx)[..., None], 1),
                             z[f'{prefix}__landmarks'], atol=1e-6)
  np.testing.assert_allclose(x, z[f'{prefix}__out'], atol=1e-5)
  if prefix == 'shared':
    np.testing.assert_allclose(attn, z['shared__attn'], atol=1e-6)


def test_orthoformer_random_first_landmark_is_seeded():
  """With a JAX key the first landmark is random but reproducible; different keys differ."""
  z = _golden('fn_orthoformer.npz')
  q, k, v = (jnp.asarray(z[f'io__{n}']) for n in 'qkv')
  run = lambda seed: approx.orthoformer(q, k, v, num_landmarks=5, num_frames=3,
                                        rng=jax.random.key(seed), return_attn=True)[2]
  a, b = run(0), run(0)
  np.testing.assert_array_equal(a, b)
  assert not all(np.array_equal(run(0), run(s)) for s in range(1, 4))

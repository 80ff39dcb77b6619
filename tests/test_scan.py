"""`scan_blocks=True`: one lax.scan over stacked blocks equals the unrolled model.

Forward and gradients against the unrolled model with the same (stacked) weights, the goldens
through the stacked layout, and every conversion path in both layouts.
"""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mformer_jax.model import layout
from mformer_jax import weights
from mformer_jax.run import checkpoints
from mformer_jax.model import ModelConfig, Motionformer

GOLDENS = os.path.join(os.path.dirname(__file__), 'goldens')
SMALL = dict(num_frames=4, img_size=32, embed_dim=32, depth=3, num_heads=2, num_classes=5)


def _clip(b=2, cfg=ModelConfig(**SMALL)):
  return jax.random.normal(jax.random.key(1), (b, cfg.num_frames, cfg.img_size, cfg.img_size, 3))


def _pair(**kw):
  loop_cfg = ModelConfig(**{**SMALL, **kw})
  scan_cfg = dataclasses.replace(loop_cfg, scan_blocks=True)
  params = Motionformer(loop_cfg).init(jax.random.key(0), _clip(1))['params']
  return Motionformer(loop_cfg), Motionformer(scan_cfg), params, layout.stack_blocks(params)


@pytest.mark.slow
@pytest.mark.parametrize('kw', [
    dict(attention='trajectory', trajectory_impl='einsum'),
    dict(attention='trajectory', trajectory_impl='chunked'),
    dict(attention='joint'), dict(attention='divided'),
    dict(attention='trajectory', approx='orthoformer', num_landmarks=4)])
def test_forward_equals_unrolled(kw):
  loop, scan, params, stacked = _pair(**kw)
  assert jax.tree.leaves(stacked['blocks'])[0].shape[0] == SMALL['depth']
  first = (jnp.zeros((SMALL['depth'], 2 * SMALL['num_heads']), jnp.int32)
           if kw.get('approx') == 'orthoformer' else None)
  a = loop.apply({'params': params}, _clip(), first_landmarks=first)
  b = scan.apply({'params': stacked}, _clip(), first_landmarks=first)
  np.testing.assert_allclose(b, a, atol=2e-6, rtol=0)
  # The scan model's own init has the stacked structure.
  init = jax.eval_shape(lambda: scan.init(jax.random.key(0), _clip(1))['params'])
  assert jax.tree.map(lambda x: x.shape, init) == jax.tree.map(lambda x: x.shape, stacked)


@pytest.mark.slow
@pytest.mark.parametrize('remat', ['none', 'full', 'tied'])
def test_gradients_equal_unrolled(remat):
  loop, scan, params, stacked = _pair(trajectory_impl='chunked', drop_path=0.0)
  scan = Motionformer(dataclasses.replace(scan.cfg, remat=remat))

  def loss(model):
    return lambda p: jnp.sum(model.apply({'params': p}, _clip(), train=True,
                                         rngs={'dropout': jax.random.key(3)}) ** 2)

  g_loop = layout.stack_blocks(jax.grad(loss(loop))(params))
  g_scan = jax.grad(loss(scan))(stacked)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, atol=1e-6, rtol=1e-5),
               g_loop, g_scan)
  assert all(float(jnp.abs(g).max()) > 0 for g in g_scan['blocks']['mlp']['fc1']['kernel'])


@pytest.mark.slow
def test_drop_path_is_per_layer_under_scan():
  """Rates rise 0 -> drop_path over the stacked blocks: at drop_path=1 with depth 2, block 0
  (rate 0) always runs and block 1 (rate 1) is always skipped, so training equals a 1-block
  model with block 0's weights."""
  cfg = ModelConfig(**{**SMALL, 'drop_path': 1.0, 'depth': 2}, scan_blocks=True)
  model = Motionformer(cfg)
  params = model.init(jax.random.key(0), _clip(1))['params']
  train = model.apply({'params': params}, _clip(8), train=True, rngs={'dropout': jax.random.key(5)})
  one = Motionformer(dataclasses.replace(cfg, depth=1, scan_blocks=False))
  first = {**{k: v for k, v in params.items() if k != 'blocks'},
           'blocks_0': jax.tree.map(lambda a: a[0], params['blocks'])}
  np.testing.assert_allclose(train, one.apply({'params': first}, _clip(8)), atol=1e-6, rtol=0)
  assert not np.allclose(train, model.apply({'params': params}, _clip(8)), atol=1e-3)


def test_golden_logits_through_stacked_layout():
  path = os.path.join(GOLDENS, 'model_trajectory_orig.npz')
  z = np.load(path)
  model, variables = weights.load_official(path, {'scan_blocks': True})
  assert 'blocks' in variables['params'] and 'blocks_0' not in variables['params']
  clip = jnp.asarray(z['io__input']).transpose(0, 2, 3, 4, 1)
  np.testing.assert_allclose(model.apply(variables, clip), z['io__logits'], atol=1e-5, rtol=0)
  # Export from the stacked layout is the official state dict again, key for key, exactly.
  sd = weights.export_official(variables)
  ref = weights.read_checkpoint(path)[0]
  assert set(sd) == set(ref)
  for k in sd:
    np.testing.assert_array_equal(sd[k], ref[k])


@pytest.mark.slow
def test_layout_round_trip_and_load(tmp_path):
  loop, scan, params, stacked = _pair()
  back = layout.unstack_blocks(stacked)
  jax.tree.map(np.testing.assert_array_equal, back, jax.device_get(params))
  assert layout.unstack_blocks(back).keys() == back.keys()          # no-op when unstacked
  # A converted (unstacked) checkpoint starts a stacked model, and the other way round.
  checkpoints.save_params(str(tmp_path / 'loop'), params, loop.cfg)
  fresh = scan.init(jax.random.key(9), _clip(1))['params']
  got = weights.load(str(tmp_path / 'loop'), scan.cfg, like=fresh)[1]
  jax.tree.map(np.testing.assert_array_equal, got, stacked)
  checkpoints.save_params(str(tmp_path / 'scan'), stacked, scan.cfg)
  fresh = loop.init(jax.random.key(9), _clip(1))['params']
  got = weights.load(str(tmp_path / 'scan'), loop.cfg, like=fresh)[1]
  jax.tree.map(np.testing.assert_array_equal, got, jax.device_get(params))


def test_program_is_smaller_than_unrolled():
  """What the option is for: one block in the compiled program instead of `depth`."""
  loop, scan, params, stacked = _pair(depth=6)

  def hlo_size(model, p):
    return len(jax.jit(lambda p: model.apply({'params': p}, _clip())).lower(p).as_text())

  assert hlo_size(scan, stacked) < 0.4 * hlo_size(loop, params)

"""The fused (optimizer-in-backward) step equals jax.grad + optax.adamw, and saves memory.

Both through the trainer's own `train.train_step`."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mformer_jax.model import layout
from mformer_jax import weights, train
from mformer_jax.train import fused, optim
from mformer_jax.errors import ConfigError
from mformer_jax.model import ModelConfig, Motionformer

CFG = ModelConfig(num_frames=4, img_size=32, embed_dim=32, depth=3, num_heads=2, num_classes=5,
                  drop_path=0.0, trajectory_impl='chunked', scan_blocks=True)


def _data(b=2):
  clip = jax.random.normal(jax.random.key(1), (b, 4, 32, 32, 3))
  return clip, jnp.arange(b) % 5


def _loss(out, labels):
  loss = optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()
  return loss, {'n': labels.shape[0]}


def schedule(count):
  return 1e-2 * 0.5 ** (count >= 1)   # a step change, so a wrong count shows


@pytest.mark.slow
@pytest.mark.parametrize('cfg', [CFG, dataclasses.replace(CFG, attention='divided'),
                                 dataclasses.replace(CFG, remat='full')])
def test_equals_grad_plus_optax(cfg):
  """In float64: Adam divides by sqrt(nu), so float32 rounding in near-zero gradients would
  show up as lr-sized differences; in float64 the two steps agree to rounding."""
  with jax.enable_x64(True):
    _equals_grad_plus_optax(dataclasses.replace(cfg, dtype='float64'))


def _steps(model, weight_decay=0.05):
  """The trainer's real step, standard (jax.grad + optax AdamW) and fused, with label smoothing
  and the metrics, as `train_and_evaluate` binds it."""
  tx = optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay,
                   mask=optim.decay_mask)
  opt = fused.AdamW(schedule, weight_decay=weight_decay, mask=optim.decay_mask)
  bind = lambda tx, fused_update: functools.partial(
      train.train_step, model=model, tx=tx, schedule=schedule, label_smoothing=0.2,
      fused_update=fused_update)
  return (tx, bind(tx, False)), (opt, bind(opt, True))


def _equals_grad_plus_optax(cfg):
  model = Motionformer(cfg)
  clip, labels = _data()
  batch = {'clip': clip.astype(jnp.float64), 'label': labels}
  params = model.init(jax.random.key(0), batch['clip'][:1])['params']
  (tx, reference), (opt, ours) = _steps(model)
  s_ref = jax.jit(lambda p: train.create_train_state(p, tx, 0))(params)
  s_new = jax.jit(lambda p: train.create_train_state(p, opt, 0))(params)
  reference, ours = jax.jit(reference), jax.jit(ours)
  for _ in range(3):
    s_ref, m_ref = reference(s_ref, batch)
    s_new, m_new = ours(s_new, batch)
    assert m_new.keys() == m_ref.keys() == {'accuracy', 'loss', 'grad_norm', 'learning_rate'}
    for k in m_ref:
      np.testing.assert_allclose(np.asarray(m_new[k], float), np.asarray(m_ref[k], float),
                                 rtol=1e-12, err_msg=k)
  close = lambda a, b: np.testing.assert_allclose(a, b, atol=1e-12, rtol=1e-10)
  jax.tree.map(close, s_new['params'], s_ref['params'])
  jax.tree.map(close, s_new['opt_state']['mu'], s_ref['opt_state'][0].mu)
  jax.tree.map(close, s_new['opt_state']['nu'], s_ref['opt_state'][0].nu)
  assert int(s_new['opt_state']['count']) == 3 and int(s_new['step']) == 3
  assert s_new['params']['blocks']['mlp']['fc1']['kernel'].dtype == jnp.float64
  # The parameters moved (the comparison is not between two no-ops).
  assert all(float(jnp.abs(a - b).max()) > 1e-4 for a, b in
             zip(s_new['params']['blocks']['mlp']['fc1']['kernel'],
                 params['blocks']['mlp']['fc1']['kernel']))


@pytest.mark.slow
def test_decay_mask_judges_stacked_blocks_per_block():
  params = Motionformer(dataclasses.replace(CFG, scan_blocks=False)).init(
      jax.random.key(0), _data(1)[0])['params']
  flat = optim.decay_mask(params)
  stacked = optim.decay_mask(layout.stack_blocks(params))
  assert stacked['blocks'] == flat['blocks_0']
  assert stacked['blocks']['mlp']['fc1'] == {'kernel': True, 'bias': False}
  assert not stacked['pos_embed'] and stacked['head']['kernel']


def test_needs_stacked_blocks():
  model = Motionformer(dataclasses.replace(CFG, scan_blocks=False))
  with pytest.raises(ConfigError, match='scan_blocks'):  # refused before it looks at anything
    fused.train_step(model, fused.AdamW(schedule), {}, {}, None, None, {})


@pytest.mark.slow
def test_gradients_are_never_all_live():
  """XLA's scratch for the fused step is below the standard step's by most of the gradients."""
  # Weights dominate (2 tokens per clip), as for Mformer-B at batch 1 on CPU. The fused step
  # holds about 7 blocks' worth (one gradient, old and new slices of params and moments)
  # instead of every block's gradient.
  cfg = dataclasses.replace(CFG, num_frames=2, img_size=16, embed_dim=128, depth=12,
                            remat='full')
  model = Motionformer(cfg)
  clip, labels = jax.random.normal(jax.random.key(1), (1, 2, 16, 16, 3)), jnp.zeros(1, jnp.int32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), clip[:1])['params'])
  batch = {'clip': clip, 'label': labels}
  (tx, reference), (opt, ours) = _steps(model)

  def temp(step, opt):
    state = jax.eval_shape(lambda p: train.create_train_state(p, opt, 0), shapes)
    compiled = jax.jit(step, donate_argnums=(0,)).lower(state, batch).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  block_bytes = sum(a.size * 4 for a in jax.tree.leaves(shapes['blocks']))
  saved = temp(reference, tx) - temp(ours, opt)
  assert saved > 0.3 * block_bytes, (saved, block_bytes)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_state():
  """Mixed precision as in the training configs: bf16 activations, float32 params and moments."""
  cfg = dataclasses.replace(CFG, dtype='bfloat16')
  model = Motionformer(cfg)
  clip, labels = _data()
  params = model.init(jax.random.key(0), clip[:1])['params']
  opt = fused.AdamW(schedule, mask=optim.decay_mask)
  step = jax.jit(lambda p, s: fused.train_step(model, opt, p, s, clip.astype(jnp.bfloat16),
                                               lambda out: _loss(out, labels),
                                               {'dropout': jax.random.key(2)}))
  new, state, loss, _, norm = step(params, opt.init(params))
  f32 = fused.train_step(Motionformer(CFG), opt, params, opt.init(params), clip,
                         lambda out: _loss(out, labels), {'dropout': jax.random.key(2)})
  assert {a.dtype for a in jax.tree.leaves((new, state['mu'], state['nu']))} == {np.dtype('float32')}
  np.testing.assert_allclose(loss, f32[2], rtol=2e-2)
  np.testing.assert_allclose(norm, f32[4], rtol=5e-2)

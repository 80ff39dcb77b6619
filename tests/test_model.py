"""Model behaviour: full-size counts, gradients, train-only randomness, dtypes, approximations."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mformer_jax.model import approx, attention, flops, posembed
from mformer_jax.model import ModelConfig, Motionformer, init_variables
from mformer_jax.errors import ConfigError
from mformer_jax.model.posembed import bicubic_matrix

STATS = json.load(open(os.path.join(os.path.dirname(__file__), 'goldens', 'full_size_stats.json')))
TINY = dict(num_classes=5, num_frames=4, img_size=16, patch_size=8, embed_dim=16, depth=2,
            num_heads=2, pretrain_img_size=16)


def _hr_resize_macs():
  """The HR pos-embed resize is a matmul here (torch's interpolate is not counted as FLOPs)."""
  return 21 * 14 * 14 * 768 + 21 * 21 * 14 * 768


@pytest.mark.parametrize('name,overrides,extra', [
    ('K400_motionformer_224_16x4', {}, 0),
    ('K400_motionformer_224_32x3 (L)', {'num_frames': 32}, 0),
    ('K400_motionformer_336_16x8 (HR)', {'img_size': 336}, _hr_resize_macs()),
    ('K400_joint_224_16x4', {'attention': 'joint'}, 0),
    ('K400_divided_224_16x4', {'attention': 'divided'}, 0),
    ('SSv2_motionformer_224_16x4', {'num_classes': 174}, 0),
    ('EK_motionformer_224_16x4', {'epic_kitchens': True}, 0),
])
def test_full_size_params_and_macs(name, overrides, extra):
  """Computed from the model (abstract trace, no FLOPs run) == the official measurement."""
  cfg = ModelConfig(**overrides)
  assert flops.model_params(cfg) == STATS[name]['params_total']
  macs = flops.reference_macs(cfg)  # the computation the official code does (einsum)
  assert macs == STATS[name]['flops_per_view'] // 2 + extra
  assert round(macs / 1e9, 1) == STATS[name]['GMACs_per_view(=flops/2/1e9)']


def test_spec_table_headline_numbers():
  b = ModelConfig()
  assert round(flops.model_params(b) / 1e6, 1) == 109.1
  assert [round(flops.reference_macs(ModelConfig(**o)) / 1e9, 1) for o in
          ({}, {'num_frames': 32}, {'img_size': 336}, {'attention': 'joint'},
           {'attention': 'divided'})] == [369.4, 1184.9, 958.4, 180.5, 185.5]


def test_bicubic_matrix_matches_torch_rules():
  m = bicubic_matrix(14, 1.5)
  assert m.shape == (21, 14)
  np.testing.assert_allclose(m.sum(1), 1, atol=1e-12)     # clamped taps keep the weights
  np.testing.assert_allclose(bicubic_matrix(14, 1.0), np.eye(14), atol=1e-12)
  # torch.nn.functional.interpolate(grid, scale_factor=1.5, mode='bicubic', align_corners=False),
  # computed once by tests/data/make_torch_fixtures.py; and again here where torch is installed.
  with np.load(os.path.join(os.path.dirname(__file__), 'data', 'torch_bicubic.npz')) as z:
    grid, ref = z['grid'], z['ref']
  np.testing.assert_array_equal(grid, np.random.default_rng(0).standard_normal((1, 1, 14, 14)))
  np.testing.assert_allclose(m @ grid[0, 0] @ m.T, ref[0, 0], atol=1e-12)
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  live = torch.nn.functional.interpolate(torch.from_numpy(grid), scale_factor=1.5, mode='bicubic',
                                         align_corners=False).numpy()
  np.testing.assert_allclose(m @ grid[0, 0] @ m.T, live[0, 0], atol=1e-12)


VIT_REFERENCE = os.path.join(os.path.dirname(__file__), 'data', 'vit_reference.npz')


@pytest.mark.parametrize('rule', ['official', 'dino'])
def test_posembed_non_square_grid_equals_torch_bicubic_in_float64(rule):
  """A 14x14 table to the 30x52 grid of a 480x832 frame, through the model's own position
  embedding, against torch's float64 bicubic (tests/data/make_vit_reference.py): per-axis scale
  n_out / n_in (official) or DINO's (n_out + 0.1) / n_in."""
  ref = np.load(VIT_REFERENCE)
  table, want = ref['posembed/table'], ref[f'posembed/{rule}_30x52']
  with jax.enable_x64(True):
    cfg = ModelConfig(num_frames=2, patch_size=16, pretrain_img_size=224, embed_dim=2, depth=1,
                      num_heads=1, dtype='float64', pos_embed_resize=rule)
    model = Motionformer(cfg)
    params = jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))['params']
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), params)
    params['pos_embed'] = np.concatenate([np.zeros((1, 1, 2)), table.reshape(1, 196, 2)], 1)
    pos = model.apply({'params': params}, (30, 52), method='position_embedding')
  np.testing.assert_allclose(np.asarray(pos)[0, 1:].reshape(30, 52, 2), want, rtol=0, atol=1e-10)


def test_posembed_square_grid_keeps_the_official_single_scale():
  """Square grids: one matrix from sqrt(npatch / N0) (the official rule the goldens guard);
  DINO's rule resizes square grids too, with its own scale."""
  mh, mw = posembed.spatial_resize_matrices(14, (21, 21))
  np.testing.assert_array_equal(mh, bicubic_matrix(14, np.sqrt(21 * 21 / 196)))
  assert mh is mw
  dh, _ = posembed.spatial_resize_matrices(14, (21, 21), 'dino')
  np.testing.assert_array_equal(dh, bicubic_matrix(14, 21.1 / 14))
  assert np.abs(dh - mh).max() > 1e-3
  with pytest.raises(ConfigError, match='expected one of'):
    ModelConfig(pos_embed_resize='nearest')


@pytest.mark.slow
def test_posembed_non_square_clip_runs_end_to_end():
  """A 24x40 clip (3x5 patches) on a model whose table is 2x2: tokens per slot follow the grid."""
  cfg = ModelConfig(**TINY)
  model = Motionformer(cfg)
  variables = init_variables(model, jax.random.key(0), random_tubelet=True)
  clip = jax.random.normal(jax.random.key(1), (1, 4, 24, 40, 3))
  tokens = model.apply(variables, clip, method='features')
  assert tokens.shape == (1, 1 + cfg.temporal_slots * 3 * 5, cfg.embed_dim)
  assert np.isfinite(np.asarray(tokens)).all()


# ----------------------------------------------------------------------------------------------
# Gradients (float64 finite differences on a tiny model)
# ----------------------------------------------------------------------------------------------
def _directional_check(f, x, rng, eps=1e-6, n_dirs=3):
  g = jax.grad(f)(x)
  for i in range(n_dirs):
    u = jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype)
    fd = (f(x + eps * u) - f(x - eps * u)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(g, u), fd, rtol=1e-6, atol=1e-9)
  return g


@pytest.mark.slow
@pytest.mark.parametrize('overrides', [
    {'attention': 'trajectory'}, {'attention': 'trajectory', 'trajectory_values': 'projected'},
    {'attention': 'joint'}, {'attention': 'divided'}, {'attention': 'space'},
    {'approx': 'nystrom', 'num_landmarks': 2}, {'approx': 'performer', 'performer_features': 8}])
def test_model_gradients_match_finite_differences(overrides):
  with jax.enable_x64(True):
    cfg = ModelConfig(**TINY, **overrides, dtype='float64')
    model = Motionformer(cfg)
    key = jax.random.key(0)
    variables = init_variables(model, key)
    # The official init zeroes the tubelet kernel and temp_embed; randomise everything.
    leaves, tree = jax.tree.flatten(variables)
    variables = jax.tree.unflatten(tree, [0.3 * jax.random.normal(jax.random.fold_in(key, i), l.shape, l.dtype)
                                          for i, l in enumerate(leaves)])
    clip = jax.random.normal(jax.random.key(1), (2, 4, 16, 16, 3), jnp.float64)
    f = lambda x: jnp.sum(jnp.sin(model.apply(variables, x)))
    g = _directional_check(f, clip, jax.random.key(2))
    assert jnp.all(jnp.isfinite(g)) and jnp.abs(g).max() > 0
    fp = lambda p: jnp.sum(jnp.sin(model.apply({'params': p}, clip)))
    gp = jax.grad(fp)(variables['params'])
    attn = gp['blocks_0']['attn']
    assert all(jnp.abs(attn[k]['kernel']).max() > 0 for k in attn
               if not (k == 'proj_kv' and overrides.get('trajectory_values', 'original') == 'original'))


@pytest.mark.slow
def test_dead_value_projection_gets_no_gradient():
  """values='original': the v-half of proj_kv is unused, exactly as in the released models."""
  cfg = ModelConfig(**TINY)
  model = Motionformer(cfg)
  variables = init_variables(model, jax.random.key(0))
  clip = jax.random.normal(jax.random.key(1), (1, 4, 16, 16, 3))
  g = jax.grad(lambda p: jnp.sum(model.apply({'params': p}, clip) ** 2))(variables['params'])
  kv = g['blocks_0']['attn']['proj_kv']['kernel']
  d = cfg.embed_dim
  assert jnp.abs(kv[:, :d]).max() > 0
  assert jnp.abs(kv[:, d:]).max() == 0


@pytest.mark.slow
def test_orthoformer_gradient_flows_through_queries_not_selection():
  """Gradient = derivative with the landmarks held fixed (they are constants, stop_gradient)."""
  with jax.enable_x64(True):
    bh, f, p, d, num_l = 2, 3, 5, 4, 4
    ks = jax.random.split(jax.random.key(0), 4)
    q, k, v = (jax.random.normal(kk, (bh, f * p, d), jnp.float64) for kk in ks[:3])
    w = jax.random.normal(ks[3], (bh, f * p, f, d), jnp.float64)
    first = jnp.array([0, 3])
    loss = lambda q: jnp.sum(w * approx.orthoformer(q, k, v, num_landmarks=num_l, num_frames=f,
                                                    first_index=first))
    idx = approx.orthoformer(q, k, v, num_landmarks=num_l, num_frames=f, first_index=first,
                             return_attn=True)[2]
    lm = jnp.take_along_axis(q * d ** -0.25, idx[..., None], 1)

    def frozen_loss(q2):  # the same formula with the landmarks frozen at their values for q
      qs, kf = q2 * d ** -0.25, (k * d ** -0.25).reshape(bh, f, p, d)
      k1 = jax.nn.softmax(jnp.einsum('bnd,bld->bnl', qs, lm), -1)
      k2 = jax.nn.softmax(jnp.einsum('bld,bfpd->blfp', lm, kf), -1)
      x = jnp.einsum('bnl,blfd->bnfd', k1, jnp.einsum('blfp,bfpd->blfd', k2, v.reshape(bh, f, p, d)))
      return jnp.sum(w * x)

    np.testing.assert_allclose(loss(q), frozen_loss(q), rtol=1e-12)
    g = jax.grad(loss)(q)
    assert jnp.abs(g).max() > 0                          # flows into q via the landmark kernel
    _directional_check(frozen_loss, q, jax.random.key(5))
    np.testing.assert_allclose(g, jax.grad(frozen_loss)(q), rtol=1e-10, atol=1e-12)
    # ...and differs from differentiating through the landmark values (which would move with q).
    moving = lambda q2: jnp.sum(w * _orthoformer_moving_landmarks(q2, k, v, idx, f))
    assert jnp.abs(jax.grad(moving)(q) - g).max() > 1e-6


def _orthoformer_moving_landmarks(q, k, v, idx, f):
  """Orthoformer whose landmark *values* carry gradient (the thing the official code avoids)."""
  bh, n, d = q.shape
  qs, ks = q * d ** -0.25, (k * d ** -0.25).reshape(bh, f, n // f, d)
  lm = jnp.take_along_axis(qs, idx[..., None], 1)
  k1 = jax.nn.softmax(jnp.einsum('bnd,bld->bnl', qs, lm), -1)
  k2 = jax.nn.softmax(jnp.einsum('bld,bfpd->blfp', lm, ks), -1)
  return jnp.einsum('bnl,blfd->bnfd', k1, jnp.einsum('blfp,bfpd->blfd', k2, v.reshape(bh, f, n // f, d)))


# ----------------------------------------------------------------------------------------------
# Train-only randomness, dtypes, variants
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dropout_and_droppath_only_in_training():
  cfg = ModelConfig(**{**TINY, 'depth': 3}, drop_path=0.5, dropout=0.3, head_dropout=0.3)
  model = Motionformer(cfg)
  variables = init_variables(model, jax.random.key(0))
  variables = jax.tree.map(lambda x: x + 0.1, variables)
  clip = jax.random.normal(jax.random.key(1), (4, 4, 16, 16, 3))
  ev1 = model.apply(variables, clip, train=False)
  ev2 = model.apply(variables, clip, train=False, rngs={'dropout': jax.random.key(9)})
  np.testing.assert_array_equal(ev1, ev2)
  tr = [model.apply(variables, clip, train=True, rngs={'dropout': jax.random.key(s)}) for s in (1, 2)]
  assert not np.allclose(tr[0], tr[1]) and not np.allclose(tr[0], ev1)
  np.testing.assert_array_equal(tr[0], model.apply(variables, clip, train=True,
                                                   rngs={'dropout': jax.random.key(1)}))
  plain = Motionformer(ModelConfig(**TINY, drop_path=0.0))
  np.testing.assert_allclose(plain.apply(variables, clip, train=True), plain.apply(variables, clip),
                             atol=1e-6)


@pytest.mark.slow
def test_bfloat16_compute_float32_params():
  cfg32 = ModelConfig(**TINY)
  model16 = Motionformer(ModelConfig(**TINY, dtype='bfloat16'))
  variables = init_variables(model16, jax.random.key(0))
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype('float32')}
  variables = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(3), x.shape), variables)
  clip = jax.random.uniform(jax.random.key(1), (2, 4, 16, 16, 3), minval=-1, maxval=1)
  out16 = model16.apply(variables, clip)
  out32 = Motionformer(cfg32).apply(variables, clip)
  assert out16.dtype == jnp.float32
  np.testing.assert_allclose(out16, out32, atol=0.1 * float(jnp.abs(out32).max()) + 1e-2)


@pytest.mark.slow
def test_space_only_model_keeps_frames_apart():
  """'space' attention: a patch token's block output ignores the other frames' patches."""
  cfg = ModelConfig(**{**TINY, 'depth': 1}, attention='space')
  model = Motionformer(cfg)
  variables = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(4), x.shape),
                           init_variables(model, jax.random.key(0)))
  clip = jax.random.normal(jax.random.key(1), (1, 4, 16, 16, 3))
  changed = clip.at[:, 2:].set(0.0)    # second temporal slot only
  get = lambda c: model.apply(variables, c, mutable=['intermediates'])[1]['intermediates']['block0_out'][0]
  a, b = get(clip), get(changed)
  p = (16 // 8) ** 2
  np.testing.assert_allclose(a[:, 1:1 + p], b[:, 1:1 + p], atol=1e-6)   # slot 0 untouched
  assert not np.allclose(a[:, 1 + p:], b[:, 1 + p:])
  traj = Motionformer(ModelConfig(**{**TINY, 'depth': 1}))
  tvars = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(4), x.shape),
                       init_variables(traj, jax.random.key(0)))
  get_t = lambda c: traj.apply(tvars, c, mutable=['intermediates'])[1]['intermediates']['block0_out'][0]
  assert not np.allclose(get_t(clip)[:, 1:1 + p], get_t(changed)[:, 1:1 + p])  # trajectory mixes


def test_config_validation():
  with pytest.raises(ConfigError, match='attention'):
    ModelConfig(attention='axial')
  with pytest.raises(ConfigError, match="unknown model config keys: \\['depht'\\]"):
    ModelConfig.from_config({'depht': 3})
  with pytest.raises(ValueError, match='built for 4 frames, got 6'):  # at trace time
    jax.eval_shape(Motionformer(ModelConfig(**TINY)).init, jax.random.key(0),
                   jnp.zeros((1, 6, 16, 16, 3)))


# ----------------------------------------------------------------------------------------------
# Approximations against exact trajectory attention (spatial step)
# ----------------------------------------------------------------------------------------------
def _qkv(bh=3, f=3, p=16, d=8, seed=0, scale=1.0):
  ks = jax.random.split(jax.random.key(seed), 3)
  return tuple(scale * jax.random.normal(kk, (bh, f * p, d)) for kk in ks)


def _exact(q, k, v, f):
  bh, n, d = q.shape
  to4 = lambda t: t.reshape(bh, n, 1, d)
  x = attention.trajectory_spatial(to4(q) * d ** -0.5, to4(k), to4(v), f)   # (BH, N, F, 1, d)
  return x[:, :, :, 0]


def test_eval_landmarks_of_a_clip_do_not_depend_on_its_batch():
  """Without a 'landmarks' RNG stream (evaluation, predict, features) a row's first landmark
  comes from the layer's key and its head alone (over the row's real tokens, with a mask): a
  clip gets the same landmarks wherever it sits in whatever batch."""
  key = approx.layer_key('attn')
  first = np.asarray(approx.eval_first_index(key, 3, 4, 64)).reshape(3, 4)
  assert (first == first[:1]).all() and len(set(first[0])) > 1  # per head, not per row
  np.testing.assert_array_equal(approx.eval_first_index(key, 1, 4, 64), first[0])
  real = np.array([4, 4, 9, 9])[:, None] > np.arange(12)  # 2 clips x 2 heads, 4 and 9 tokens
  masked = np.asarray(approx.eval_first_index(key, 2, 2, 12, real))
  assert (masked < [4, 4, 9, 9]).all()
  np.testing.assert_array_equal(approx.eval_first_index(key, 1, 2, 12, real[2:]), masked[2:])
  # (The model's outputs in evaluation, predict and features: tests/test_eval.py.)


@pytest.mark.slow
def test_nystrom_exact_when_landmarks_equal_tokens():
  with jax.enable_x64(True):  # the 16x16 softmax kernel is ill-conditioned; check the maths in f64
    q, k, v = (x.astype(jnp.float64) for x in _qkv())
    exact = _exact(q, k, v, 3)
    # L = P: key landmarks are the keys themselves; with a converged pinv the result is exact.
    x = approx.nystrom(q, k, v, num_landmarks=16, num_frames=3, pinv_iters=60)
    np.testing.assert_allclose(x, exact, atol=1e-8)
    coarse = approx.nystrom(q, k, v, num_landmarks=4, num_frames=3, pinv_iters=6)
    err = float(jnp.abs(coarse - exact).mean())
    assert 1e-4 < err < float(jnp.abs(exact).mean())


@pytest.mark.slow
def test_performer_converges_to_exact():
  q, k, v = _qkv(scale=0.5)
  exact = _exact(q, k, v, 3)
  errs = [float(jnp.abs(approx.performer(q, k, v, num_frames=3, features=approx.orthogonal_gaussian(
      jax.random.key(m), m, 8)) - exact).mean()) for m in (16, 256, 8192)]
  assert errs[2] < errs[1] < errs[0] and errs[2] < 0.02


@pytest.mark.slow
def test_orthoformer_close_to_exact_with_many_landmarks():
  """More landmarks, smaller error; and at half the tokens as landmarks the error is well below
  that of uniform attention (the per-frame mean of the values), the no-information baseline."""
  q, k, v = _qkv(scale=1.0)
  exact = _exact(q, k, v, 3)
  bh, n, d = v.shape
  uniform = jnp.broadcast_to(v.reshape(bh, 3, n // 3, d).mean(2)[:, None], exact.shape)
  baseline = float(jnp.abs(uniform - exact).mean())
  err = [float(jnp.abs(approx.orthoformer(q, k, v, num_landmarks=l, num_frames=3,
                                           first_index=jnp.zeros(3, int)) - exact).mean())
         for l in (2, 24, 48)]
  assert err[2] < err[1] < err[0]
  assert err[1] < 0.75 * baseline, (err, baseline)   # measured 0.66


@pytest.mark.slow
@pytest.mark.parametrize('approx_type', ['orthoformer', 'nystrom', 'performer'])
def test_approximate_models_run_and_train(approx_type):
  """Finite gradients, deterministic eval, and 30 Adam steps fit a 4-clip batch (loss from ln 5
  to below 0.5, every clip right)."""
  cfg = ModelConfig(**TINY, approx=approx_type, num_landmarks=3, performer_features=16,
                    drop_path=0.0)
  model = Motionformer(cfg)
  params = init_variables(model, jax.random.key(0), random_tubelet=True)['params']
  clip = jax.random.normal(jax.random.key(1), (4, 4, 16, 16, 3))
  labels = jnp.arange(4)
  tx = optax.adam(1e-2)

  @jax.jit
  def step(params, opt_state, i):
    rngs = {'dropout': jax.random.key(2), 'landmarks': jax.random.fold_in(jax.random.key(3), i)}
    loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model.apply({'params': p}, clip, train=True, rngs=rngs), labels).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    assert_finite = jax.tree.reduce(jnp.logical_and, jax.tree.map(
        lambda g: jnp.all(jnp.isfinite(g)), grads))
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, assert_finite

  opt_state, losses = tx.init(params), []
  for i in range(30):
    params, opt_state, loss, finite = step(params, opt_state, i)
    assert bool(finite)
    losses.append(float(loss))
  assert losses[0] == pytest.approx(np.log(5), abs=0.1) and losses[-1] < 0.5, losses
  out = model.apply({'params': params}, clip)
  np.testing.assert_array_equal(out, model.apply({'params': params}, clip))  # deterministic eval
  np.testing.assert_array_equal(np.argmax(out, -1), labels)


def test_trajectory_attention_dropout_acts_on_spatial_probabilities():
  """As official: dropout on the per-frame attention weights (rows no longer sum to 1)."""
  q, k, v = (x[:, :, None] for x in _qkv(bh=1, f=2, p=8, d=4))
  v_ones = jnp.ones_like(v)
  keep = 0.5
  drop = lambda a: jnp.where(jax.random.bernoulli(jax.random.key(0), keep, a.shape), a / keep, 0)
  x = attention.trajectory_spatial(q, k, v_ones, 2, drop)
  # With all-ones values each output is the (dropped, rescaled) probability mass of its row.
  sums = np.asarray(x[..., 0, 0])
  assert not np.allclose(sums, 1.0) and np.isclose(sums.mean(), 1.0, atol=0.25)
  np.testing.assert_allclose(attention.trajectory_spatial(q, k, v_ones, 2)[..., 0, 0], 1.0, atol=1e-6)

"""The LRA encoder: approximations against exact attention, padding, MACs, training and resuming."""
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mformer_jax import errors
from mformer_jax.lra import listops, model, train

_spec = importlib.util.spec_from_file_location(
    'lra_listops', os.path.join(os.path.dirname(__file__), '..', 'configs', 'lra_listops.py'))
lra_listops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lra_listops)

SMALL = dict(max_length=64, num_layers=1, dim=32, num_heads=2, mlp_dim=64, dropout=0.0)


@pytest.fixture(scope='module')
def tokens():
  rows = listops.generate(4, seed=0, min_length=30, max_length=63)
  return jnp.asarray(listops.encode([s for s, _ in rows], 64))


def _features(tokens, qk_scale, **kw):
  """Encoder outputs (after the final LayerNorm) at init, float64, with the query/key
  projections scaled by qk_scale (sharper or flatter attention), for each kw in kw['runs']."""
  base = model.Encoder(**SMALL)
  v = jax.tree.map(lambda x: x.astype(jnp.float64), base.init(jax.random.key(0), tokens))
  v = jax.tree_util.tree_map_with_path(
      lambda p, x: x.at[:, :64].multiply(qk_scale) if 'qkv' in jax.tree_util.keystr(p)
      and x.ndim == 2 else x, v)
  run = lambda **a: model.Encoder(**SMALL, **a).apply(v, tokens, features=True)
  exact = run(attention='exact')
  real = tokens > 0
  return [float(jnp.abs(run(**a) - exact)[real].mean()) for a in kw['runs']], exact


@pytest.mark.slow
def test_nystrom_is_exact_with_a_landmark_per_token(tokens):
  with jax.enable_x64(True):
    (err_all, err_few), _ = _features(tokens, 1.0, runs=[
        dict(attention='nystrom', num_landmarks=64, pinv_iters=40),
        dict(attention='nystrom', num_landmarks=4)])
  assert err_all < 1e-7 and err_few > 0.1


@pytest.mark.slow
def test_performer_approaches_exact_with_more_features(tokens):
  with jax.enable_x64(True):  # FAVOR+ is unbiased where logits are moderate: flatter attention
    errs, _ = _features(tokens, 0.5, runs=[dict(attention='performer', performer_features=m)
                                           for m in (16, 256, 4096)])
  assert errs[0] > errs[1] > errs[2] and errs[2] < 0.08


@pytest.mark.slow
def test_orthoformer_approaches_exact_with_more_landmarks(tokens):
  # Softmax(Q L^T) softmax(L K^T) is not exact even with every query a landmark, but with sharp
  # attention it comes close; flat attention (the uniform mixing) is the trivial baseline.
  with jax.enable_x64(True):
    errs, exact = _features(tokens, 2.0, runs=[dict(attention='orthoformer', num_landmarks=n)
                                                for n in (2, 8, 50)])
    _, flat = _features(tokens, 0.0, runs=[])
    uniform = float(jnp.abs(flat - exact)[tokens > 0].mean())
  assert errs[0] > errs[1] > errs[2] and errs[2] < 0.4 and errs[2] < 0.5 * uniform


@pytest.mark.slow
@pytest.mark.parametrize('attention', ['exact', 'orthoformer', 'nystrom', 'performer'])
def test_padding_changes_nothing(tokens, attention):
  # One 50-token expression alone vs padded to 64 (every real token a landmark for Orthoformer,
  # so its choice of first landmark cannot matter).
  row = tokens[1:2]
  n = int((row > 0).sum())
  m = model.Encoder(**SMALL, attention=attention, num_landmarks=n, performer_features=32)
  v = m.init(jax.random.key(1), row)
  np.testing.assert_allclose(m.apply(v, row), m.apply(v, row[:, :n]), atol=2e-5)


def test_macs_match_the_formula():
  n, d, f, c, layers = 64, 32, 64, 10, 1
  per_layer = n * d * 3 * d + n * d * d + 2 * n * d * f + 2 * n * n * d
  assert model.macs(model.Encoder(**SMALL)) == layers * per_layer + d * f + f * c
  approx_macs = [model.macs(model.Encoder(**SMALL, attention=a, num_landmarks=8,
                                          performer_features=16))
                 for a in ('orthoformer', 'nystrom', 'performer')]
  assert all(x < layers * per_layer for x in approx_macs)


def _tiny_config(tmp_path, attention, steps):
  c = lra_listops.get_config(f'{attention},cpu')
  c.data.update(dir=str(tmp_path / 'data'), min_length=10, max_length=31, num_train=96,
                num_val=32, num_test=32)
  c.model.update(max_length=32, dim=16, mlp_dim=32, num_landmarks=4, performer_features=8)
  c.train.update(batch_size=16, num_steps=steps, warmup_steps=2, lr_boundary_steps=(6,))
  c.update(eval_every_steps=4, checkpoint_every_steps=4, log_every_steps=2, eval_batch_size=16)
  return c


@pytest.mark.slow
def test_train_resumes_exactly(tmp_path):
  # Performer: the cheapest approximation to compile; the resume logic is the same for all.
  straight = train.train_and_evaluate(_tiny_config(tmp_path, 'performer', 8), str(tmp_path / 'a'))
  train.train_and_evaluate(_tiny_config(tmp_path, 'performer', 4), str(tmp_path / 'b'))
  resumed = train.train_and_evaluate(_tiny_config(tmp_path, 'performer', 8), str(tmp_path / 'b'))
  assert straight['final_test_accuracy'] == resumed['final_test_accuracy']
  with open(tmp_path / 'a' / 'history.json') as fa, open(tmp_path / 'b' / 'history.json') as fb:
    assert json.load(fa) == json.load(fb)
  assert 0 < straight['test_majority_rate'] < 1 and straight['steps'] == 8


@pytest.mark.slow
def test_a_diverged_run_stops_at_the_trainers_nan_guard_before_saving(tmp_path):
  c = _tiny_config(tmp_path, 'exact', 4)
  c.train.update(base_lr=1e30, warmup_steps=0)  # step 1 is finite, every later loss is not
  with pytest.raises(errors.ConfigError, match='between steps 1 and 2 .*last good '
                     'checkpoint is step None.*Try a lower train.base_lr, train.grad_clip_norm>0'):
    train.train_and_evaluate(c, str(tmp_path / 'w'))
  assert not os.listdir(tmp_path / 'w' / 'checkpoints')


def test_missing_data_is_one_clear_error(tmp_path):
  c = _tiny_config(tmp_path, 'exact', 4)
  c.data.update(dir=str(tmp_path / 'nowhere'), generate=False)
  with pytest.raises(errors.MissingInputError, match='no ListOps file'):
    train.train_and_evaluate(c, str(tmp_path / 'w'))


def test_config_variants():
  for arg in ('exact', 'orthoformer,cpu', 'nystrom,lra', 'performer'):
    c = lra_listops.get_config(arg)
    assert c.model.attention == arg.split(',')[0]
  assert lra_listops.get_config('orthoformer').model.num_landmarks == 64
  assert lra_listops.get_config('exact,lra').model.dim == 512
  with pytest.raises(errors.ConfigError, match='expected one of'):
    lra_listops.get_config('linformer')
  # The full-size schedule (no decay step): warmup, then constant.
  _, schedule = train.make_optimizer(lra_listops.get_config('exact').train)
  assert [float(schedule(s)) for s in (0, 999, 4999)] == pytest.approx([1e-7, 1e-4, 1e-4])

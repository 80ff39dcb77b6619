"""mformer_jax/analysis/twin_search.py trains the motion twins' recipe as vmapped lanes: each lane's
schedule and optimiser must be the trainer's (configs/motion_twins.py through optim)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import motion_twins
from mformer_jax import errors
from mformer_jax.train import optim
from mformer_jax.analysis import twin_search

LANES = [(2.5e-4, 512, 1.0, 0), (1e-3, 768, 2.0, 1)]  # (lr, steps, stride, seed)


@pytest.fixture(scope='module')
def spec(tmp_path_factory):
  path = tmp_path_factory.mktemp('spec') / 'spec.json'
  twin_search.make_spec(str(path), ['trajectory'], '', [512, 768])
  return json.loads(path.read_text())['trajectory']


def _trainer(lr, steps):
  """The trainer's (optimizer, schedule) for the twin config of `steps` steps at `lr`."""
  config = motion_twins.get_config(f'steps={steps}')
  config.train.base_lr = lr
  spe = optim.steps_per_epoch(config.data.synthetic.num_train, config.train.batch_size)
  return optim.make_optimizer(config.train, spe)


def test_lane_schedules_are_the_twin_configs_schedules_then_zero(spec):
  got = np.asarray(twin_search.lane_lrs(spec, LANES, 896))
  for row, (lr, steps, _, _) in zip(got, LANES):
    _, schedule = _trainer(lr, steps)
    np.testing.assert_array_equal(row[:steps], jax.vmap(schedule)(jnp.arange(steps)))
    assert not row[steps:].any()
  with pytest.raises(errors.ConfigError, match=r"schedules for \['512', '768'\] steps, not 1536"):
    twin_search.lane_lrs(spec, [(1e-3, 1536, 1.0, 0)], 1536)


def _apply(tx, params, grads):
  p, state = params, tx.init(params)
  for g in grads:
    updates, state = tx.update(g, state, p)
    p = jax.tree.map(jnp.add, p, updates)
  return p


def test_vmapped_lane_updates_are_the_trainers_updates(spec):
  params = {'kernel': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), 'bias': jnp.ones((4,))}
  grads = [jax.tree.map(lambda p, k=k: jnp.sin(p * (k + 2.0)), params) for k in range(3)]
  got = jax.vmap(lambda lr_row: _apply(twin_search.lane_optimizer(spec, lr_row), params, grads))(
      twin_search.lane_lrs(spec, LANES, 896))
  for i, (lr, steps, _, _) in enumerate(LANES):
    want = _apply(_trainer(lr, steps)[0], params, grads)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[i], b), got, want)


@pytest.mark.slow
def test_search_trains_every_lane_and_a_zero_rate_lane_stays_at_its_start(spec, tmp_path):
  """A whole search on a tiny twin (one chunk of 128 steps, 128 test clips): lanes at lr 0 keep
  their initial parameters, so their test top-1 is the untrained model of their seed's."""
  tiny = json.loads(json.dumps(spec))
  tiny['model'].update(depth=1, embed_dim=16, num_heads=2, num_frames=4, img_size=16,
                       pretrain_img_size=16)
  tiny['data'].update(num_frames=4, size=16, num_train=16, num_test=128)
  tiny['batch_size'] = 4
  tiny['schedules'] = {'128': dict(boundaries=[100, 120], decay=0.1, warmup_steps=8)}
  path = tmp_path / 'spec.json'
  path.write_text(json.dumps({'trajectory': tiny}))
  out = tmp_path / 'search.json'
  precision = jax.config.jax_default_matmul_precision  # search sets 'highest' for the process
  try:
    got = twin_search.search(str(path), str(out), [0.0, 1e-2], [128], [1.0], [0, 1],
                             ['trajectory'])
  finally:
    jax.config.update('jax_default_matmul_precision', precision)
  assert json.loads(out.read_text()) == json.loads(json.dumps(got))
  assert got['lanes'] == [dict(lr=lr, total=128, stride=1.0, seed=k)
                          for lr in (0.0, 1e-2) for k in (0, 1)]
  (point,) = got['runs']['trajectory']
  assert point['step'] == 128 and len(point['test_top1']) == 4
  model = twin_search.Motionformer(twin_search.ModelConfig.from_config(tiny['model']))
  x, y = twin_search.render(tiny['data'], 'test', 1.0)
  for seed in (0, 1):  # the lr-0 lanes: the untrained model of their seed
    params = twin_search.init_variables(model, jax.random.key(seed), random_tubelet=True)
    with jax.default_matmul_precision('highest'):  # as the search ran
      logits = model.apply(params, twin_search.to_model_input(x), train=False)
    assert point['test_top1'][seed] == pytest.approx(float((np.argmax(logits, -1) == y).mean()))
  assert all(0 <= v <= 1 for v in point['test_top1'] + point['train_acc'])

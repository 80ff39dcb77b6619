"""weights.load: every kind of source, the mismatch check, dont_load, shardings; and the rule
for the default trajectory kernel (ModelConfig.trajectory_kernel)."""
import dataclasses
import json
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mformer_jax.model import layout
from mformer_jax import weights, config_lib, convert
from mformer_jax.run import checkpoints
from mformer_jax.errors import ConfigError, InputError, MissingInputError
from mformer_jax.model import ModelConfig, Motionformer, init_variables

ORIG = os.path.join(os.path.dirname(__file__), 'goldens', 'model_trajectory_orig.npz')


def _golden():
  """(ModelConfig, numpy params) of the official golden, read from the file itself."""
  model, variables = weights.read_official(ORIG)
  return model.cfg, variables['params']


def _write_run(workdir, params, cfg, steps=(5,)):
  """Steps as a trainer writes them: the parameters with a training state beside them. The last
  step holds `params`, step s params + (s - last), so that each is told apart by its values."""
  keep = types.SimpleNamespace(keep=len(steps), keep_best=0)
  with checkpoints.manager(str(workdir), keep) as mngr:
    for s in steps:
      p = jax.tree.map(lambda x, s=s: x + np.float32(s - steps[-1]), params)
      state = {'params': p, 'step': np.int32(s), 'opt': jax.tree.map(np.zeros_like, params)}
      checkpoints.save(mngr, state, {'step': s, 'model': dict(cfg.__dict__)})
    checkpoints.finish(mngr)
  return str(workdir)


def _assert_same(got, want):
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b, strict=True), got, want)


def test_every_kind_of_source_gives_the_same_parameters(tmp_path):
  cfg, want = _golden()
  with np.load(ORIG) as z:
    state_dict = {k: z[k] for k in z.files if '__' not in k}
  run = _write_run(tmp_path / 'run', want, cfg)
  converted = str(tmp_path / 'converted')
  assert convert.main(['--input', ORIG, '--output', converted]) == 0
  for source in (ORIG, run, converted):
    got_cfg, got = weights.load(source)
    assert got_cfg == cfg, source
    _assert_same(got, want)
  # A bare state dict has no cfg of its own: the config is given.
  got_cfg, got = weights.load(state_dict, cfg)
  assert got_cfg is cfg
  _assert_same(got, want)
  # The documented entry points: the same parameters, on the device.
  for source in (ORIG, run, converted):
    for model, variables in (weights.load_official(source), weights.load_model(source)):
      assert model.cfg == cfg and isinstance(variables['params']['cls_token'], jax.Array)
      _assert_same(jax.device_get(variables['params']), want)


def test_step_and_layout_of_a_workdir(tmp_path):
  cfg, want = _golden()
  run = _write_run(tmp_path / 'run', want, cfg, steps=(1, 2))
  _assert_same(weights.load(run)[1], want)
  _assert_same(weights.load(run, step=1)[1], jax.tree.map(lambda x: x + np.float32(-1), want))
  with checkpoints.manager(str(tmp_path / 'other')) as mngr:  # a run of another model
    checkpoints.save(mngr, {'params': want}, {'step': 1})
    checkpoints.finish(mngr)
  with pytest.raises(InputError) as err:
    weights.load(str(tmp_path / 'other'))
  assert str(err.value) == (f'{tmp_path / "other"} (step 1) records no model config: no '
                            'Motionformer run of this trainer (give cfg=, the ModelConfig it is '
                            'for)')
  _assert_same(weights.load(str(tmp_path / 'other'), cfg)[1], want)
  with pytest.raises(MissingInputError) as err:
    weights.load(run, step=3)
  assert str(err.value) == f'no checkpoint step 3 in {run}/checkpoints (it holds steps [1, 2])'
  scan_cfg, stacked = weights.load(run, {'scan_blocks': True, 'dtype': 'float64'})
  assert scan_cfg == dataclasses.replace(cfg, scan_blocks=True, dtype='float64')
  _assert_same(stacked, jax.tree.map(lambda x: x.astype(np.float64), layout.stack_blocks(want)))


def test_shardings_place_the_parameters_and_return_step_names_the_step(tmp_path):
  """shardings=: the parameters as device arrays in those shardings, the same values, from a
  workdir in the config's block layout (restored straight into them) or in the other one, and
  from a foreign file; return_step: the workdir's step that was read (None for a file)."""
  cfg, want = _golden()
  run = _write_run(tmp_path / 'run', want, cfg, steps=(1, 2))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  for model_cfg, expected, source, step in (
      (cfg, want, run, 2), (dataclasses.replace(cfg, scan_blocks=True),
                            layout.stack_blocks(want), run, 2), (cfg, want, ORIG, None)):
    placed = jax.tree.map(lambda _: device, expected)
    got_cfg, got, read = weights.load(source, model_cfg, shardings=placed, return_step=True)
    assert got_cfg == model_cfg and read == step
    assert all(isinstance(x, jax.Array) and x.sharding == device for x in jax.tree.leaves(got))
    _assert_same(jax.device_get(got), expected)


def test_a_checkpoint_without_checksums_is_one_line(tmp_path):
  """Checkpoints of mformer_jax 0.0.x (no `arrays` in their metadata) are not read."""
  cfg, want = _golden()
  run = _write_run(tmp_path / 'run', want, cfg)
  meta_file = tmp_path / 'run' / 'checkpoints' / '5' / 'meta' / 'metadata'
  meta = json.loads(meta_file.read_text())
  del meta['arrays']
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(InputError) as err:
    weights.load(run)
  assert str(err.value) == (f'checkpoint step 5 in {run}/checkpoints records no checksums of its '
                            'arrays: written by an earlier mformer_jax (0.0.x), whose checkpoints '
                            'are not read')


def test_the_mismatch_check_names_every_key():
  with pytest.raises(weights.CheckpointMismatchError) as err:
    weights.check_fit({'a': (2,), 'b': (3, 4), 'x': (1,), 'y': ()},
                      {'a': (2,), 'b': (4, 3), 'c': (5,), 'd': (1,)}, 'SRC', ' (why)')
  assert str(err.value) == ('SRC does not fit the model (why):\n'
                            '  missing (2): c, d\n'
                            '  unexpected (2): x, y\n'
                            '  mis-shaped (1): b: checkpoint (3, 4) vs model (4, 3)')
  weights.check_fit({'a': [2]}, {'a': (2,)}, 'SRC')  # lists and tuples alike: it fits


@pytest.mark.slow  # trains nothing, but writes and reads two workdirs
def test_a_workdir_that_does_not_fit_the_model_names_the_keys(tmp_path):
  cfg, want = _golden()
  run = _write_run(tmp_path / 'run', want, cfg)
  three = dataclasses.replace(cfg, num_classes=3)
  fresh = jax.device_get(init_variables(Motionformer(three), jax.random.key(1))['params'])
  d = cfg.embed_dim
  for kwargs in ({'like': fresh}, {}):
    with pytest.raises(weights.CheckpointMismatchError) as err:
      weights.load(run, three, **kwargs)
    hint = (' (fine-tuning to a new label set? keep the fresh head: dont_load=HEAD_PATTERNS, '
            '--config.init.reset_head=True)' if kwargs else '')
    where = run if kwargs else f'checkpoint step 5 in {run}/checkpoints (params)'
    assert str(err.value) == (f'{where} does not fit the model{hint}:\n  mis-shaped (2): '
                              f'head/bias: checkpoint (5,) vs model (3,), '
                              f'head/kernel: checkpoint ({d}, 5) vs model ({d}, 3)')


@pytest.mark.parametrize('kind', ['official file', 'workdir'])
def test_dont_load_keeps_the_fresh_values_exactly(tmp_path, kind):
  cfg, want = _golden()
  source = ORIG if kind == 'official file' else _write_run(tmp_path / 'run', want, cfg)
  three = dataclasses.replace(cfg, num_classes=3)
  fresh = jax.device_get(init_variables(Motionformer(three), jax.random.key(1))['params'])
  got_cfg, got = weights.load(source, three, like=fresh,
                                    dont_load=weights.HEAD_PATTERNS)
  assert got_cfg is three
  _assert_same(got['head'], fresh['head'])
  _assert_same({k: v for k, v in got.items() if k != 'head'},
               {k: v for k, v in want.items() if k != 'head'})
  # Any pattern, on the model's own names; one matching nothing is an error (a typo).
  same = jax.device_get(init_variables(Motionformer(cfg), jax.random.key(1))['params'])
  _, got = weights.load(source, cfg, like=same, dont_load=('blocks_1/mlp/.*',))
  _assert_same(got['blocks_1']['mlp'], same['blocks_1']['mlp'])
  _assert_same(got['blocks_1']['attn'], want['blocks_1']['attn'])
  with pytest.raises(ConfigError) as err:
    weights.load(source, cfg, like=same, dont_load=('block_1/.*',))
  assert str(err.value) == "dont_load pattern(s) ['block_1/.*'] match no parameter of the model"


def test_converted_weights_are_read_but_not_resumed(tmp_path):
  cfg, want = _golden()
  checkpoints.save_params(str(tmp_path), want, cfg)
  state = {'params': want, 'step': np.int32(0)}
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with checkpoints.manager(str(tmp_path), read_only=True) as mngr:
    with pytest.raises(InputError) as err:
      checkpoints.restore(mngr, 0, jax.tree.map(lambda x: jax.ShapeDtypeStruct(
          x.shape, x.dtype), state), jax.tree.map(lambda _: one, state))
  assert str(err.value) == (
      f'checkpoint step 0 in {tmp_path}/checkpoints holds weights alone (converted), no '
      'training state to resume; train in a new workdir from them: '
      f'--config.init.checkpoint={tmp_path}')


@pytest.mark.parametrize('fields,kernel', [
    ({}, 'chunked'), ({'approx': 'orthoformer'}, 'chunked'),
    ({'attn_dropout': 0.1}, 'einsum'), ({'attention': 'joint'}, 'einsum'),
    ({'attention': 'divided'}, 'einsum'),
    ({'trajectory_impl': 'einsum'}, 'einsum'), ({'trajectory_impl': 'frames'}, 'frames'),
    ({'trajectory_impl': 'chunked'}, 'chunked'),
    ({'trajectory_impl': 'einsum', 'attn_dropout': 0.1}, 'einsum')])
def test_one_rule_for_the_trajectory_kernel(fields, kernel):
  cfg = ModelConfig(**fields)
  assert (cfg.trajectory_impl, cfg.trajectory_kernel) == (fields.get('trajectory_impl', 'auto'),
                                                          kernel)


def test_the_model_runs_the_resolved_kernel():
  cfg, params = _golden()
  clip = jnp.zeros((1, cfg.num_frames, cfg.img_size, cfg.img_size, 3))
  program = lambda impl: str(jax.make_jaxpr(Motionformer(dataclasses.replace(
      cfg, trajectory_impl=impl)).apply)({'params': params}, clip))
  assert program('auto') == program('chunked') != program('einsum')


def test_configs_keep_auto_so_that_a_later_dropout_override_works(tmp_path):
  m = config_lib.model_config('motionformer')
  assert m.trajectory_impl == 'auto'
  m.attn_dropout = 0.1  # as --config.model.attn_dropout=0.1 does
  assert ModelConfig.from_config(m).trajectory_kernel == 'einsum'
  # A workdir saved with an explicit kernel (the training configs' 'chunked' before) keeps it.
  cfg, want = _golden()
  run = _write_run(tmp_path / 'run', want, dataclasses.replace(cfg, trajectory_impl='chunked'))
  assert weights.load(run)[0].trajectory_impl == 'chunked'

"""mformer_jax.plan: the trainer's own step compiled by libtpu for an abstract TPU slice (no TPU
here), checked against a compile of the same step built in the test."""
import functools
import importlib.metadata
import json
import os
import re
import subprocess
import sys

import pytest

import train_fixtures as tfx
from mformer_jax.errors import ConfigError, UserError
from mformer_jax.plan import hlo, libtpu, slices
from mformer_jax.model import flops
from mformer_jax.model import ModelConfig

LIBTPU = libtpu.libtpu_path()
needs_libtpu = pytest.mark.skipif(
    LIBTPU is None, reason='libtpu not installed: launch/setup_env.sh puts it in .venv/libtpu '
    '(requirements-tpu.txt) when PyPI is reachable')


def _plan(*args, **overrides):
  cmd = [sys.executable, '-m', 'mformer_jax.plan', *tfx.flags(**overrides), *args]
  return subprocess.run(cmd, cwd=tfx.ROOT, env=tfx.env(), capture_output=True, text=True,
                        timeout=300)


def _one_error_line(proc):
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1, proc.stderr[-2000:]
  return errors[0]


@pytest.fixture
def tpu_compiler(monkeypatch):
  """libtpu for this process's compiles, with the environment given back afterwards (the
  other tests' subprocesses must not see it)."""
  import jax  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv('TPU_LIBRARY_PATH', LIBTPU)
  monkeypatch.setenv('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  platforms = jax.config.jax_platforms
  jax.config.update('jax_platforms', 'cpu')  # what libtpu.environment sets before jax starts
  yield
  jax.config.update('jax_platforms', platforms)


def _compile_here(mode, cfg, topology, batch_per_chip):
  """The step built from the trainer's pieces (not probe.compile_step): jit with the trainer's
  shardings over the slice's abstract devices, abstract inputs, libtpu's compile."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh, NamedSharding  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from mformer_jax import train  # pylint: disable=g-import-not-at-top
  from mformer_jax.eval import evaluator  # pylint: disable=g-import-not-at-top
  from mformer_jax.run import sharding  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import make_model  # pylint: disable=g-import-not-at-top

  devices = topologies.get_topology_desc(topology_name=topology, platform='tpu').devices
  mesh = Mesh(np.array(sorted(devices, key=lambda d: d.id)), ('data',))
  model = make_model(cfg.model)
  tx, schedule = train.make_optimizer(cfg, model, steps_per_epoch=1)
  state = train.abstract_train_state(cfg, model, tx)
  state_sh = sharding.state_shardings(state, mesh, fsdp=cfg.mesh.fsdp,
                                      fsdp_min_size=cfg.mesh.fsdp_min_size)
  n, c = batch_per_chip * len(devices), model.cfg
  rows = NamedSharding(mesh, P('data'))
  batch = {'clip': jax.ShapeDtypeStruct((n, c.num_frames, c.img_size, c.img_size, 3),
                                        jnp.float32, sharding=rows),
           'label': jax.ShapeDtypeStruct((n,), jnp.int32, sharding=rows)}
  place = lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s)
  if mode == 'train':
    # The training pipeline's uint8 crops (with colour draws where the real datasets jitter
    # colour), which the step finishes into model input.
    batch['clip'] = place(batch['clip'], rows).update(dtype=jnp.uint8)
    if cfg.data.color_jitter and cfg.data.source == 'prepared':
      batch['colour'] = jax.ShapeDtypeStruct((n, 7), jnp.float32, sharding=rows)
    update = functools.partial(train.train_step, model=model, tx=tx, schedule=schedule,
                               label_smoothing=cfg.train.label_smoothing, bgr=cfg.data.bgr)

    def train_step(state, batch):
      with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):  # as the trainer's step
        return update(state, batch)

    step = jax.jit(train_step, in_shardings=(state_sh, rows),
                   out_shardings=(state_sh, NamedSharding(mesh, P())), donate_argnums=(0,))
    return step.lower(jax.tree.map(place, state, state_sh), batch).compile()
  batch.update(video_index=jax.ShapeDtypeStruct((n,), jnp.int32, sharding=rows),
               mask=jax.ShapeDtypeStruct((n,), jnp.bool_, sharding=rows))
  params = jax.tree.map(place, state['params'], state_sh['params'])
  return evaluator.eval_step(model, mesh).lower(params, batch).compile()


@needs_libtpu
@pytest.mark.slow
@pytest.mark.parametrize('mode,fsdp', [('train', False), ('train', True), ('eval', False)])
def test_cli_plan_is_the_memory_analysis_of_the_trainers_step(mode, fsdp, tmp_path, tpu_compiler):
  overrides = {'mesh.fsdp': fsdp, 'mesh.fsdp_min_size': 256}
  out = tmp_path / 'plan.json'
  proc = _plan('--topology=v5e:2x2', '--batch_per_chip=2', f'--mode={mode}', f'--out={out}',
               **overrides)
  assert proc.returncode == 0, proc.stderr[-3000:]
  got = json.loads(out.read_text())

  compiled = _compile_here(mode, tfx.config(**overrides), 'v5e:2x2', 2)
  m = compiled.memory_analysis()
  assert got['per_chip_bytes'] == {
      'arguments': m.argument_size_in_bytes, 'temporaries': m.temp_size_in_bytes,
      'outputs': m.output_size_in_bytes, 'aliased': m.alias_size_in_bytes,
      'total': (m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes
                - m.alias_size_in_bytes)}
  assert (got['topology'], got['chips'], got['device_kind'], got['global_batch'], got['mode']) == (
      'v5e:2x2', 4, 'TPU v5 lite', 8, mode)
  assert 15 * 2**30 < got['hbm_bytes_per_chip'] <= 16 * 2**30  # v5e: 16 GiB, a little kept back
  assert got['fits'] is True and got['compiler_oom'] is None
  assert got['collectives'] == hlo.collectives(compiled.as_text())
  if mode == 'train':  # FSDP gathers the parameters it sharded; the donated state is aliased
    assert (got['collectives']['all-gather']['count'] > 0) == fsdp
    assert got['per_chip_bytes']['aliased'] > 0
    assert got['collectives']['all-reduce']['count'] > 0  # the gradients' mean
  reference = ModelConfig.from_config({**tfx.config().model.to_dict(), 'trajectory_impl': 'einsum'})
  assert got['model_tflops_per_step'] == (
      flops.model_macs(reference) * 2 * (3 if mode == 'train' else 1) * 8 / 1e12)
  assert got['versions'] == {'jax': importlib.metadata.version('jax'),
                             'jaxlib': importlib.metadata.version('jaxlib'),
                             'libtpu': _pinned_libtpu()}
  assert 'compiled, not run' in got['note'] and got['compile_seconds'] > 0
  assert 'fits' in proc.stdout and 'compiled, not run' in proc.stdout


@needs_libtpu
@pytest.mark.slow
def test_a_plan_that_does_not_fit_says_by_how_much_and_exits_2(tmp_path):
  out = tmp_path / 'plan.json'
  proc = _plan('--topology=v5e:2x2', '--batch_per_chip=60000', f'--out={out}')
  error = _one_error_line(proc)
  m = re.fullmatch(r'error: does not fit: the compiler needs ([\d.]+) GiB per chip, the TPU v5 '
                   r'lite has ([\d.]+) GiB for it: short by ([\d.]+) GiB; try (.*)', error)
  assert m, error
  need, have, short = map(float, m.groups()[:3])
  assert need > have and abs(need - have - short) < 0.011
  assert '--config.model.remat=full' in m.group(4) and '--batch_per_chip=30000' in m.group(4)
  got = json.loads(out.read_text())
  assert got['fits'] is False and got['per_chip_bytes'] is None
  assert round(got['compiler_oom']['required_bytes'] / 2**30, 2) == need
  assert got['hbm_bytes_per_chip'] == got['compiler_oom']['available_bytes']


@pytest.mark.slow
@needs_libtpu
@pytest.mark.parametrize('args,message', [
    (['--topology=v5e:3x3', '--batch_per_chip=1'], "unknown TPU topology 'v5e:3x3'"),
    (['--topology=tpu9:2x2', '--batch_per_chip=1'], "unknown TPU topology 'tpu9:2x2'"),
    (['--topology=v5e:2x2', '--global_batch=6'], 'global batch 6 does not divide over the 4 chips'),
    (['--topology=v5e:2x2', '--batch_per_chip=0'], "--batch_per_chip='0'"),
    (['--topology=v5e:2x2'], 'train.batch_size=8 is not a per-GPU batch'),
    (['--accelerator=v5litepod-12', '--batch_per_chip=1'], "accelerator 'v5litepod-12'"),
    (['--topology=v5e:2x2', '--accelerator=v5litepod-4'], 'give one of --topology'),
])
def test_bad_input_is_one_error_line_and_status_2(args, message):
  assert message in _one_error_line(_plan(*args))


@needs_libtpu
@pytest.mark.slow
def test_fsdp_gathers_parameters_not_the_batch(monkeypatch, tpu_compiler):
  """split_batch keeps activations split like the batch: under FSDP the partitioner
  then gathers parameters instead of moving activations between chips (the plans for
  Mformer-B at 256 chips showed 215 GiB of all-gathers per step without it), and a data
  parallel step compiles to the very same program."""
  from mformer_jax.model import motionformer  # pylint: disable=g-import-not-at-top
  from mformer_jax.plan import probe  # pylint: disable=g-import-not-at-top
  pinned = motionformer.split_batch
  devices = probe.topology_devices('v5e:2x2')
  moved = {}
  for fsdp in (False, True):
    cfg = tfx.config(**{'mesh.fsdp': fsdp, 'mesh.fsdp_min_size': 256, 'model.depth': 2})
    for pin in (False, True):
      monkeypatch.setattr(motionformer, 'split_batch', pinned if pin else lambda x: x)
      compiled, _ = probe.compile_step(cfg, devices, 8, 'train')
      moved[fsdp, pin] = (hlo.per_chip_bytes(compiled), hlo.collectives(compiled.as_text()))
  assert moved[False, True] == moved[False, False]
  (mem, free), (mem_pinned, pin) = moved[True, False], moved[True, True]
  assert pin['all-to-all']['bytes'] < free['all-to-all']['bytes'] / 10
  assert pin['all-gather']['bytes'] < free['all-gather']['bytes'] / 2
  assert mem_pinned['total'] < mem['total']


def test_split_batch_is_a_no_op_outside_a_step_on_a_mesh():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import split_batch  # pylint: disable=g-import-not-at-top
  from mformer_jax.run import sharding  # pylint: disable=g-import-not-at-top
  x = jnp.ones((2, 3))
  assert split_batch(x) is x
  mesh = sharding.make_mesh(jax.devices()[:1])
  def traced(v):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return split_batch(v)
  eqns = jax.make_jaxpr(traced)(x).eqns
  assert [e.primitive.name for e in eqns] == ['sharding_constraint']
  assert eqns[0].params['sharding'].spec == sharding.batch_sharded(mesh).spec
  assert not jax.make_jaxpr(split_batch)(x).eqns  # the context ended


def test_without_libtpu_the_message_says_how_to_install_it(monkeypatch, tmp_path):
  monkeypatch.delenv('TPU_LIBRARY_PATH', raising=False)
  monkeypatch.setattr(sys, 'prefix', str(tmp_path))
  monkeypatch.setattr(libtpu.importlib.util, 'find_spec', lambda name: None)
  assert libtpu.libtpu_path() is None
  with pytest.raises(UserError, match=r'libtpu is not installed.*requirements-tpu\.txt'):
    libtpu.require(libtpu.libtpu_path())


def _pinned_libtpu():
  with open(os.path.join(tfx.ROOT, 'requirements-tpu.txt')) as f:
    return re.search(r'^libtpu==(\S+)', f.read(), re.M).group(1)


def test_libtpu_pin_is_the_one_jax_tpu_asks_for():
  """requirements-tpu.txt follows requirements.txt's jax: jax[tpu]'s own libtpu requirement."""
  with open(os.path.join(tfx.ROOT, 'requirements.txt')) as f:
    pinned_jax = re.search(r'^jax==(\S+)', f.read(), re.M).group(1)
  if importlib.metadata.version('jax') != pinned_jax:  # launch/test_compat.sh's older jax
    pytest.skip(f'the libtpu pin is for jax {pinned_jax}, the one requirements.txt pins')
  wanted = next(r for r in importlib.metadata.requires('jax')
                if r.startswith('libtpu') and 'extra == "tpu"' in r)
  spec = re.match(r'libtpu==([\d.*]+)', wanted).group(1)
  assert re.fullmatch(spec.replace('.', r'\.').replace('*', r'\d+'), _pinned_libtpu()), wanted


@pytest.mark.parametrize('accelerator,topology', [
    ('v5litepod-1', 'v5e:1x1'), ('v5litepod-4', 'v5e:2x2'), ('v5litepod-16', 'v5e:4x4'),
    ('v5litepod-256', 'v5e:16x16'), ('v6e-16', 'v6e:4x4'), ('v6e-64', 'v6e:8x8'),
    ('v4-8', 'v4:2x2x1'), ('v4-32', 'v4:2x2x4'), ('v4-128', 'v4:4x4x4'), ('v4-512', 'v4:4x8x8'),
    ('v5p-8', 'v5p:2x2x1'), ('v5p-64', 'v5p:2x4x4'), ('v5p-256', 'v5p:4x4x8')])
def test_gcloud_accelerator_names_map_to_topologies(accelerator, topology):
  assert slices.accelerator_topology(accelerator) == topology


@pytest.mark.parametrize('name', ['v5e:4x4', 'v5e:16x16', 'v4:2x2x4', 'v5p:2x4x4', 'v6e:1x1',
                                  'v5e:3x3', 'tpu9:2x2', 'v4:4x4x4_twisted'])
def test_well_formed_topologies_pass_to_libtpu(name):
  assert slices.check_topology(name) == name


@pytest.mark.parametrize('name', ['v5e:0x0', 'v5e:2x0', 'v4:2x2x0', 'v5e:-1x2', 'v5e:2', 'v5e:',
                                  'v5e:2xx2', 'v5e:2x2x2x2', 'v5e', ':2x2', 'v5e:axb'])
def test_malformed_topologies_are_refused_before_libtpu(name):
  """A zero side kills the process in libtpu (SIGFPE, exit 136, nothing said): checked first."""
  with pytest.raises(ConfigError, match=rf"TPU topology '{re.escape(name)}': expected "
                     r'PREFIX:AxB or PREFIX:AxBxC, every side a whole number >= 1'):
    slices.check_topology(name)


@pytest.mark.slow
def test_a_zero_sided_topology_is_one_error_line_not_a_crash():
  """Refused before libtpu is looked for: the same on a machine without it."""
  error = _one_error_line(_plan('--topology=v5e:0x0', '--batch_per_chip=1'))
  assert error.startswith("error: TPU topology 'v5e:0x0': expected PREFIX:AxB")


_CRASH = r"""
import os, signal
from mformer_jax.plan import libtpu
with libtpu.filtered_stderr():
  os.write(2, b'WARNING: Logging before InitGoogle() is written to STDERR\n'
              b'E0000 common_lib.cc:860] could not determine TPU worker hostnames\n'
              b'=== Source Location Trace: === \nlearning/x/libtpu_init_utils.cc:370\n'
              b'*** SIGFPE received by PID 1; stack trace: ***\n'
              b'learning/y/z.cc:12\n')
  os.kill(os.getpid(), signal.SIGFPE)
"""


@pytest.mark.slow
def test_what_a_crash_inside_libtpu_writes_reaches_stderr():
  """filtered_stderr drops libtpu's metadata warnings with their source trace, and everything
  else written before the process dies of a signal still arrives (through the filter child)."""
  proc = subprocess.run([sys.executable, '-c', _CRASH], cwd=tfx.ROOT, env=tfx.env(),
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == -8
  assert proc.stderr == '*** SIGFPE received by PID 1; stack trace: ***\nlearning/y/z.cc:12\n'


@pytest.mark.parametrize('accelerator', ['v5litepod-12', 'v4-6', 'h100-8', 'v5e'])
def test_unknown_accelerator_names_are_refused(accelerator):
  with pytest.raises(ConfigError, match='accelerator'):
    slices.accelerator_topology(accelerator)


# A compiled TPU module in miniature, in XLA:TPU's own text syntax: a 12-step scan whose body
# gathers a weight and reduce-scatters a gradient (as XLA:TPU writes it: an all-reduce fused
# with its slice, and a plain reduce-scatter), a combined all-reduce, an all-to-all, an async
# all-gather, and a loop of unknown length around one more all-reduce.
_HLO = """HloModule jit_train_step, entry_computation_layout={(f32[8]{0})->f32[8]{0}}

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %s = f32[] add(%a, %b)
}

%cond.1 (p.1: (s32[], bf16[4,768])) -> pred[] {
  %p.1 = (s32[]{:T(128)}, bf16[4,768]{1,0}) parameter(0)
  %constant.9 = s32[]{:T(128)} constant(12)
  %gte.1 = s32[]{:T(128)} get-tuple-element(%p.1), index=0
  ROOT %lt.1 = pred[]{:T(512)} compare(%gte.1, %constant.9), direction=LT
}

%all-reduce-scatter.3 (param_0: bf16[768,768]) -> bf16[192,768] {
  %param_0 = bf16[768,768]{1,0:T(8,128)(2,1)} parameter(0)
  %all-reduce.9 = bf16[768,768]{1,0:T(8,128)(2,1)} all-reduce(%param_0), channel_id=3, replica_groups={{0,1,2,3}}, use_global_device_ids=true, to_apply=%add
  ROOT %slice.1 = bf16[192,768]{1,0} slice(%all-reduce.9), slice={[0:192], [0:768]}
}

%body.1 (p.2: (s32[], bf16[4,768])) -> (s32[], bf16[4,768]) {
  %p.2 = (s32[]{:T(128)}, bf16[4,768]{1,0}) parameter(0)
  %all-gather.58 = bf16[768,768]{1,0:T(8,128)(2,1)} all-gather(%x.1), channel_id=2, replica_groups=mesh['data'=4] {'data'}, dimensions={0}, use_global_device_ids=true
  %fusion.1 = bf16[192,768]{1,0} fusion(%y.1), kind=kCustom, calls=%all-reduce-scatter.3
  %reduce-scatter.1 = f32[192]{0} reduce-scatter(%z.1), channel_id=4, replica_groups=[1,4]<=[4], dimensions={0}, to_apply=%add
  ROOT %t.1 = (s32[]{:T(128)}, bf16[4,768]{1,0}) tuple(%i.1, %v.1)
}

%cond.2 (p.3: (s32[], f32[8])) -> pred[] {
  %p.3 = (s32[], f32[8]{0}) parameter(0)
  %gte.3 = s32[] get-tuple-element(%p.3), index=0
  %gte.4 = s32[] get-tuple-element(%p.3), index=2
  ROOT %lt.3 = pred[] compare(%gte.3, %gte.4), direction=LT
}

%body.2 (p.4: (s32[], f32[8])) -> (s32[], f32[8]) {
  %p.4 = (s32[], f32[8]{0}) parameter(0)
  %all-reduce.7 = f32[8]{0} all-reduce(%w.1), replica_groups={{0,1,2,3}}, to_apply=%add
  ROOT %t.2 = (s32[], f32[8]{0}) tuple(%i.2, %all-reduce.7)
}

ENTRY %main.1_spmd (param.1: f32[8]) -> f32[8] {
  %param.1 = f32[8]{0} parameter(0)
  %while.1 = (s32[]{:T(128)}, bf16[4,768]{1,0}) while(%tuple.1), condition=%cond.1, body=%body.1
  %while.2 = (s32[], f32[8]{0}) while(%tuple.2), condition=%cond.2, body=%body.2
  %all-reduce.2 = (f32[768]{0:T(1024)}, f32[12,3072]{1,0:T(8,128)}) all-reduce(%a.1, %b.1), channel_id=5, replica_groups={{0,1,2,3}}, to_apply=%add
  %all-to-all.1 = bf16[4,4,64]{2,1,0} all-to-all(%c.1), channel_id=6, replica_groups=mesh['data'=4] {'data'}, dimensions={0}
  %all-gather-start.1 = (f32[8]{0}, f32[32]{0}) all-gather-start(%param.1), channel_id=7, replica_groups={{0,1,2,3}}, dimensions={0}
  ROOT %all-gather-done.1 = f32[32]{0} all-gather-done(%all-gather-start.1)
}
"""


def test_collectives_are_counted_per_step_with_their_loops_trip_counts():
  got = hlo.collectives(_HLO)
  assert got == {
      'all-gather': {'count': 12 + 1, 'bytes': 12 * 768 * 768 * 2 + 32 * 4},
      'reduce-scatter': {'count': 12 + 12, 'bytes': 12 * 768 * 768 * 2 + 12 * 192 * 4 * 4},
      'all-reduce': {'count': 1 + 1, 'bytes': 768 * 4 + 12 * 3072 * 4 + 8 * 4},
      'all-to-all': {'count': 1, 'bytes': 4 * 4 * 64 * 2},
      'unknown_loops': 1}


def test_compile_time_oom_messages_are_read():
  msg = ('RESOURCE_EXHAUSTED: E1000: CompileTimeHbmOom: Ran out of memory on HBM, the total '
         'memory required for HLO temporaries (26.23G) exceeds available HBM (15.75G). HLO '
         'module: jit_train_step.\nSee https://openxla.org/xla/errors/error_1000')
  oom = hlo.compile_time_oom(msg)
  assert (oom['required_bytes'], oom['available_bytes']) == (round(26.23 * 2**30),
                                                             round(15.75 * 2**30))
  assert hlo.compile_time_oom('INVALID_ARGUMENT: something else') is None


@pytest.mark.parametrize('fixed,per_clip,hbm,curve', [
    (1.3, 0.2, 15.75, 0), (1.3, 0.2, 95.7, 0), (10, 3, 15.75, 0), (16, 1, 15.75, 0),
    (1, 0.001, 15.75, 0), (1.3, 0.2, 15.75, 0.01), (1.3, 0.25, 30.75, 0.002)])
def test_max_batch_search_finds_the_largest_that_fits(monkeypatch, fixed, per_clip, hbm, curve):
  """Against a memory model (GiB = fixed + per_clip b + curve b^2) in place of the compiler."""
  calls = []

  def fake_plan(config, topology, b, mode, devices):
    calls.append(b)
    need = (fixed + per_clip * b + curve * b * b) * 2**30
    fits = need <= hbm * 2**30
    return {'batch_per_chip': b, 'fits': fits, 'hbm_bytes_per_chip': hbm * 2**30,
            'compile_seconds': 0.0, 'per_chip_bytes': {'total': need} if fits else None,
            'compiler_oom': None if fits else {'required_bytes': need}}

  from mformer_jax.plan import probe  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(probe, 'plan', fake_plan)
  fitting = [b for b in range(1, probe.SEARCH_CAP + 1)
             if fixed + per_clip * b + curve * b * b <= hbm]
  result = probe.search_max(None, 'v5e:2x2', devices=['d'])
  assert result['batch_per_chip'] == (max(fitting) if fitting else 1)
  assert result['fits'] == bool(fitting)
  assert [p['batch_per_chip'] for p in result['search']] == calls and len(set(calls)) == len(calls)
  if curve == 0:  # memory linear in the batch: the line finds it in four compiles at most
    assert len(calls) <= 4


@pytest.mark.slow
def test_model_tflops_per_step_is_the_papers_count():
  """369.4 GMACs per Mformer-B view (the README, flops.py), x 2 x 3 x the global batch."""
  from configs import released  # pylint: disable=g-import-not-at-top
  from mformer_jax.plan import probe  # pylint: disable=g-import-not-at-top
  config = released.get_config('k400_motionformer_224_16x4')  # auto, bfloat16: counted as einsum
  macs = flops.model_macs(ModelConfig(trajectory_impl='einsum'))  # the reference Mformer-B, one view
  assert round(macs / 1e9, 1) == 369.4
  assert probe.model_tflops_per_step(config, 64, 'train') == macs * 2 * 3 * 64 / 1e12
  assert probe.model_tflops_per_step(config, 64, 'eval') == macs * 2 * 64 / 1e12

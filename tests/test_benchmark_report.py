"""The benchmarks' results and their documents: benchmarks.report renders results/README.md and
tpu-compile/plan.md from the recorded JSON (report_tables: every table), files are named by
machine class, stack and a suffix of common.SUFFIXES, figures live apart from the JSON; and the
pieces of the scripts the tables read (profile_cpu's op paths, matmul's rate arithmetic). No
test pins a measured number."""
import glob
import json
import os

import jax
import jax.numpy as jnp
import pytest

from benchmarks import common, matmul, profile_cpu, report, report_tables
from mformer_jax.model import ModelConfig, Motionformer
from mformer_jax.plan.report import needed_bytes


def test_every_dot_of_a_compiled_model_gets_its_op_path():
  cfg = ModelConfig(num_frames=4, img_size=32, patch_size=16, depth=1, embed_dim=32,
                    num_heads=2, num_classes=3, trajectory_impl='chunked')
  model = Motionformer(cfg)
  x = jnp.ones((1, 4, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.key(0), x)
  hlo = jax.jit(lambda v, x: model.apply(v, x)).lower(variables, x).compile().as_text()
  names = profile_cpu.op_names(hlo)
  paths = set(names.values())
  # The dense layers of the block, named after the module path (block index removed).
  for layer in ('attn/qkv', 'mlp/fc1', 'mlp/fc2'):
    assert any(f'blocks/{layer}/dot_general' in p for p in paths), (layer, sorted(paths)[:20])
  # A library fusion has no metadata of its own: it is named through the computation it calls.
  # (Where XLA:CPU leaves dots to Eigen there are no library fusions, and the dots carry their
  # own metadata.)
  fusions = [n for n in names if profile_cpu.kind_of(n) == 'matmul' and 'fusion' in n]
  if fusions:
    assert any('mlp/fc1/dot_general' in names[n] for n in fusions), fusions


def test_kinds_and_rates():
  assert profile_cpu.kind_of('ynn_fusion.12') == 'matmul'
  assert profile_cpu.kind_of('copy_bitcast_fusion.3') == 'layout'
  assert profile_cpu.kind_of('transpose_copy_fusion') == 'layout'
  assert profile_cpu.kind_of('add_add_fusion.1') == 'elementwise'
  assert profile_cpu.kind_of('wrapped_copy') == 'other'
  assert profile_cpu.kind_of('fusion.4') == 'elementwise'
  # 2 x b x m x k x n FLOPs in the given seconds.
  assert matmul.gflops((12, 1568, 64, 1568), 1.0) == 2 * 12 * 1568 * 64 * 1568 / 1e9


def test_the_results_document_is_the_render_of_the_recorded_files():
  """benchmarks/results/README.md is generated: a re-render of the committed JSON equals it (this
  checks the document, not the numbers: re-measuring changes both alike)."""
  with open(report.DOCUMENT) as f:
    assert f.read() == report.render()


def test_every_results_file_is_filed_by_its_machine_class_and_named_by_its_stack():
  """<class>/<benchmark>_<jax>[_<suffix>].json, the suffix a word of common.SUFFIXES."""
  paths = glob.glob(os.path.join(common.RESULTS_DIR, '*-*core', '*.json'))
  assert paths
  for path in paths:
    with open(path) as f:
      m = json.load(f)['machine']
    benchmark, _, tag = os.path.basename(path)[:-len('.json')].partition('_jax')
    suffix = tag[len('012'):].lstrip('_')  # after the stack's three digits
    assert path == common.results_path(benchmark, m, suffix), path


def test_result_suffixes_are_a_fixed_vocabulary():
  m = {'cpu': 'AMD EPYC', 'cores': 2, 'jax': '0.12.0.1'}
  assert common.results_path('train_step', m, 'bfloat16').endswith(
      '/amd-epyc-2core/train_step_jax012_bfloat16.json')
  with pytest.raises(ValueError, match="suffix 'bf16'; expected one of"):
    common.results_path('train_step', m, 'bf16')


def test_figures_live_apart_from_the_results_json():
  """No image beside the JSON; every figure belongs to a results file and the document shows it."""
  assert not glob.glob(os.path.join(common.RESULTS_DIR, '*', '*.png'))
  figures = glob.glob(os.path.join(report.FIGURES, '*', '*.png'))
  assert figures
  with open(report.DOCUMENT) as f:
    document = f.read()
  for png in figures:
    rel = os.path.relpath(png, report.FIGURES)
    assert os.path.isfile(os.path.join(common.RESULTS_DIR, rel[:-len('.png')] + '.json')), rel
    assert f'](figures/{rel})' in document, rel


def test_commands_are_recorded_and_rendered_as_modules():
  """A script records how it ran as `-m benchmarks.<name> ARGS`; files recorded when the scripts
  ran as files render as the module command too."""
  argv = [os.path.join(common.ROOT, 'benchmarks', 'train_step.py'), '--ours=chunked:none',
          '--out=a b.json']
  assert common.command_line(argv) == ("-m benchmarks.train_step --ours=chunked:none "
                                      "'--out=a b.json'")
  assert common.invocation('benchmarks/matmul.py --repeats=10') == (
      '-m benchmarks.matmul --repeats=10')
  assert common.invocation('-m benchmarks.matmul --repeats=10') == (
      '-m benchmarks.matmul --repeats=10')
  assert common.invocation('benchmarks/input_pipeline.py') == '-m benchmarks.input_pipeline'


def test_a_synthetic_training_file_renders_its_ratios_to_official():
  machine = {'cpu': 'AMD EPYC', 'cores': 2, 'python': '3.12.1', 'jax': '0.12.0.1'}
  official = dict(impl='torch', round=0, median_s=20.0, median_cpu_s=36.0, clips_per_s=0.05,
                  peak_rss_mb=6000.0)
  ours = dict(impl='jax', impl_='chunked', remat='tied', scan=True, fused=False, round=0,
              xla_flags=common.MEMORY_SCHEDULER, median_s=8.0, median_cpu_s=12.0, clips_per_s=0.125,
              xla_temp_mb=640.0, compile_s=3.25, peak_rss_mb=2000.0)
  data = {'machine': machine, 'command': 'benchmarks/train_step.py --ours=chunked:tied:scan',
          'runs': [official, ours], 'model_gflop_fwd_official': 800.0}
  assert report_tables.kind(data) == 'train_step'
  assert report_tables.train_table(data) == '\n'.join([
      '| round | run | dtype | XLA flags | step wall s (median) | step CPU s | clips/s | '
      'clips/s vs official | CPU time vs official | official-equivalent GFLOP/s | XLA temp MB | '
      'compile s | peak RSS MB | peak RSS vs official |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
      '| 0 | official PyTorch | float32 | - | 20.00 | 36.00 | 0.0500 | 1.00x | 1.00x | 120 | - | '
      '- | 6000 | 1.00x |',
      '| 0 | ours chunked, remat=tied, scan | float32 | memory-optimised scheduler | 8.00 | 12.00 | '
      '0.1250 | 2.50x | 3.00x | 300 | 640 | 3.2 | 2000 | 0.33x |'])
  assert report_tables.summary({'amd-epyc-2core/train_step_jax012.json': data},
                               report.class_order).splitlines()[2] == (
      '| amd-epyc-2core | jax 0.12.0.1 | training step, float32, chunked, remat=tied, scan | '
      '20.00 s, 6000 MB | 8.00 s, 2000 MB | 2.50x | 3.00x | 0.33x | `train_step_jax012.json` |')


def test_a_synthetic_attention_file_renders_speed_up_and_error_cells():
  run = lambda impl, mode, **kw: dict(scope='layer', size='B', variant='divided', mode=mode,
                                      impl=impl, **kw)
  data = {'machine': {'cpu': 'x', 'cores': 2}, 'command': '-m benchmarks.attention', 'runs': [
      run('jax', 'fwd', median_s=0.5, median_cpu_s=0.8, xla_temp_mb=65.54, peak_rss_mb=531.6,
          base_rss_mb=400.0),
      run('torch', 'fwd', median_s=1.0, median_cpu_s=1.0, peak_rss_mb=461.5),
      run('jax', 'fwdbwd', median_s=1.5, median_cpu_s=2.0, xla_temp_mb=183.6, peak_rss_mb=672.6,
          base_rss_mb=400.0),
      run('torch', 'fwdbwd', error='rc=1: RuntimeError')]}
  assert report_tables.kind(data) == 'layer'
  assert report_tables.attention_table(data).splitlines()[2:] == [
      '| B | divided | fwd | 0.5 | 0.8 | 65.54 | 531.6 | 1 | 1 | 461.5 | 2.00x | 1.25x | 1.15x |',
      '| B | divided | fwdbwd | 1.5 | 2 | 183.6 | 672.6 | error | error | error | - | - | - |']


def test_machine_class_and_default_path():
  isa = ['avx2', 'avx512f', 'amx_tile']
  assert common.machine_class({'cpu': 'Intel(R) Xeon(R) Processor', 'isa': isa, 'cores': 2}) == (
      'intel-spr-2core')
  assert common.machine_class({'cpu': 'Intel(R) Xeon(R) Processor', 'isa': isa[:2],
                               'cores': 8}) == 'intel-avx512-8core'
  assert common.machine_class({'cpu': 'AMD EPYC 7B13', 'cores': 2}) == 'amd-epyc-2core'
  assert common.machine_class({'cpu': '', 'cores': 2}) == 'cpu-unrecorded-2core'
  path = common.results_path('train_step', {'cpu': 'AMD EPYC', 'cores': 4, 'jax': '0.12.0.1'})
  assert path == f'{common.RESULTS_DIR}/amd-epyc-4core/train_step_jax012.json'


def test_the_recorded_table_is_rendered_from_the_recorded_plans():
  """benchmarks/results/tpu-compile/plan.md is plan.json rendered, every run a plan the tool
  wrote (the keys the issue asks for), every row's figure its JSON's."""
  with open(report.TPU_PLAN) as f:
    data = json.load(f)
  rendered = report.plan_document(data)
  with open(report.TPU_PLAN_DOCUMENT) as f:
    assert f.read() == rendered
  keys = {'topology', 'chips', 'device_kind', 'hbm_bytes_per_chip', 'per_chip_bytes', 'fits',
          'global_batch', 'model_tflops_per_step', 'collectives', 'compile_seconds', 'versions'}
  for run in data['runs']:
    p = run['plan']
    assert keys <= set(p) and (run['exit_status'] == 0) == p['fits']
    assert p['global_batch'] == p['batch_per_chip'] * p['chips']
    if p['per_chip_bytes']:
      m = p['per_chip_bytes']
      assert m['total'] == m['arguments'] + m['temporaries'] + m['outputs'] - m['aliased']
      assert p['fits'] == (m['total'] <= p['hbm_bytes_per_chip'])
    # pinned FSDP runs are rows of the FSDP table, so each row is looked for in the whole render
    assert f"{p['batch_per_chip']} | {needed_bytes(p) / 2**30:.2f} |" in rendered

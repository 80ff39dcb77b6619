"""benchmarks/profile_cpu.py attributes XLA:CPU trace time to the model's op paths (dots that
XLA created without metadata stay unnamed); the matmul benchmark's rate arithmetic; results
filed by machine class and rendered by benchmarks/report.py (no test pins a measured number)."""
import glob
import json
import os

import jax
import jax.numpy as jnp

from benchmarks import common, matmul, profile_cpu
from mformer_jax.model import ModelConfig, Motionformer


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
  from benchmarks import report
  with open(report.DOCUMENT) as f:
    assert f.read() == report.render()


def test_every_results_file_is_filed_by_its_machine_class_and_named_by_its_stack():
  paths = glob.glob(os.path.join(common.RESULTS_DIR, '*-*core', '*.json'))
  assert paths
  for path in paths:
    with open(path) as f:
      m = json.load(f)['machine']
    folder, name = os.path.split(common.results_path('', m))  # '_jax0NN.json' or '.json'
    assert os.path.dirname(path) == folder, path
    assert name[:-5] in os.path.basename(path), path


def test_a_synthetic_training_file_renders_its_ratios_to_official():
  from benchmarks import report
  machine = {'cpu': 'AMD EPYC', 'cores': 2, 'python': '3.12.1', 'jax': '0.12.0.1'}
  official = dict(impl='torch', round=0, median_s=20.0, median_cpu_s=36.0, clips_per_s=0.05,
                  peak_rss_mb=6000.0)
  ours = dict(impl='jax', impl_='chunked', remat='tied', scan=True, fused=False, round=0,
              xla_flags=common.MEMORY_SCHEDULER, median_s=8.0, median_cpu_s=12.0, clips_per_s=0.125,
              xla_temp_mb=640.0, compile_s=3.25, peak_rss_mb=2000.0)
  data = {'machine': machine, 'command': 'benchmarks/train_step.py --ours=chunked:tied:scan',
          'runs': [official, ours], 'model_gflop_fwd_official': 800.0}
  assert report.kind(data) == 'train_step'
  assert report.train_table(data) == '\n'.join([
      '| round | run | dtype | XLA flags | step wall s (median) | step CPU s | clips/s | '
      'clips/s vs official | CPU time vs official | official-equivalent GFLOP/s | XLA temp MB | '
      'compile s | peak RSS MB | peak RSS vs official |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
      '| 0 | official PyTorch | float32 | - | 20.00 | 36.00 | 0.0500 | 1.00x | 1.00x | 120 | - | '
      '- | 6000 | 1.00x |',
      '| 0 | ours chunked, remat=tied, scan | float32 | memory-optimised scheduler | 8.00 | 12.00 | '
      '0.1250 | 2.50x | 3.00x | 300 | 640 | 3.2 | 2000 | 0.33x |'])
  assert report.summary({'amd-epyc-2core/train_step_jax012.json': data}).splitlines()[2] == (
      '| amd-epyc-2core | jax 0.12.0.1 | training step, float32, chunked, remat=tied, scan | '
      '20.00 s, 6000 MB | 8.00 s, 2000 MB | 2.50x | 3.00x | 0.33x | `train_step_jax012.json` |')


def test_a_synthetic_attention_file_renders_speed_up_and_error_cells():
  from benchmarks import report
  run = lambda impl, mode, **kw: dict(scope='layer', size='B', variant='divided', mode=mode,
                                      impl=impl, **kw)
  data = {'machine': {'cpu': 'x', 'cores': 2}, 'command': 'c', 'runs': [
      run('jax', 'fwd', median_s=0.5, median_cpu_s=0.8, xla_temp_mb=65.54, peak_rss_mb=531.6,
          base_rss_mb=400.0),
      run('torch', 'fwd', median_s=1.0, median_cpu_s=1.0, peak_rss_mb=461.5),
      run('jax', 'fwdbwd', median_s=1.5, median_cpu_s=2.0, xla_temp_mb=183.6, peak_rss_mb=672.6,
          base_rss_mb=400.0),
      run('torch', 'fwdbwd', error='rc=1: RuntimeError')]}
  assert report.kind(data) == 'layer'
  assert report.attention_table(data).splitlines()[2:] == [
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

"""benchmarks/profile_cpu.py attributes XLA:CPU trace time to the model's op paths (dots that
XLA created without metadata stay unnamed); the matmul benchmark's rate arithmetic."""
import jax
import jax.numpy as jnp

from benchmarks import matmul, profile_cpu
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


def test_report_renders_every_recorded_results_file(capsys):
  import glob
  import os
  from benchmarks import report
  paths = sorted(glob.glob(os.path.join(os.path.dirname(report.__file__), 'results', '*-2core', '*.json')))
  assert len(paths) >= 10
  report.main(paths)
  out = capsys.readouterr().out
  assert '| square2048/float32 | 226 | 202 | 237 |' in out  # matmul.py, Intel, 2026-11-26
  assert '| B | load_official | fwd | 5.09 |' in out       # eval forward via load_official

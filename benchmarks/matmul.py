"""Matmul rates of both frameworks on this machine: what each can reach, float32 and bfloat16.

    python -m benchmarks.matmul [--official_python=/tmp/venv_official/bin/python] \
        [--xla_variants='default;--xla_cpu_use_onednn=true'] [--out=PATH]

Three shapes that dominate Mformer-B: a 2048^2 square product, the attention's batched product
(12 heads x 1568x64 @ 64x1568, the spatial scores) and a dense layer (1569x768 @ 768x3072, the
MLP). Each framework runs in its own process with its default threads (jax: XLA's pool; torch:
`torch.get_num_threads()`); jax once per XLA flag variant (';'-separated, 'default' = none).
GFLOP/s = 2 x multiply-adds / median seconds over `--repeats` calls after a warm-up.
"""
import argparse
import os
import sys

from benchmarks import common, report_tables

# name -> (batch, m, k, n)
SHAPES = {'square2048': (1, 2048, 2048, 2048), 'attention_scores': (12, 1568, 64, 1568),
          'mlp_dense': (1, 1569, 768, 3072)}
DTYPES = ('float32', 'bfloat16')


def gflops(shape, seconds):
  b, m, k, n = shape
  return 2 * b * m * k * n / seconds / 1e9


def _shapes(spec):
  return [(k, v) for k, v in SHAPES.items() if k in spec.get('shapes', SHAPES)]


def jax_worker(spec):
  import jax
  import jax.numpy as jnp

  rates = {}
  for name, shape in _shapes(spec):
    b, m, k, n = shape
    for dtype in DTYPES:
      x = jax.random.normal(jax.random.key(0), (b, m, k)).astype(dtype)
      y = jax.random.normal(jax.random.key(1), (b, k, n)).astype(dtype)
      # Full precision for float32 (the default on CPU too, said explicitly).
      fn = jax.jit(lambda x, y: jnp.matmul(x, y, precision='highest'))
      times, _ = common.timed(lambda: fn(x, y).block_until_ready(), spec['repeats'], warmup=2)
      rates[f'{name}/{dtype}'] = gflops(shape, common.median(times))
  common.emit({**spec, 'gflops': rates, 'jax': jax.__version__,
               'xla_flags_env': os.environ.get('XLA_FLAGS', '')})


def torch_worker(spec):
  import torch

  rates = {}
  for name, shape in _shapes(spec):
    b, m, k, n = shape
    for dtype in DTYPES:
      x = torch.randn(b, m, k).to(getattr(torch, dtype))
      y = torch.randn(b, k, n).to(getattr(torch, dtype))
      with torch.no_grad():
        times, _ = common.timed(lambda: torch.matmul(x, y), spec['repeats'], warmup=2)
      rates[f'{name}/{dtype}'] = gflops(shape, common.median(times))
  common.emit({**spec, 'gflops': rates, 'torch': torch.__version__,
               'torch_threads': torch.get_num_threads(),
               'mkldnn_bf16': bool(getattr(torch.backends.mkldnn, 'is_available', bool)())})


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--repeats', type=int, default=10)
  ap.add_argument('--xla_variants', default='default',
                  help="';'-separated XLA flag strings, one jax run each ('default' = none)")
  ap.add_argument('--official_python', default='',
                  help='a Python with torch (the official venv); empty = jax only')
  common.out_arg(ap, 'matmul')
  args = ap.parse_args()
  script = os.path.abspath(__file__)
  results, out = common.new_results(args.out, 'matmul', args.variant)
  if args.official_python:
    common.run_and_record(args.official_python, script, dict(impl='torch', repeats=args.repeats),
                          results, out)
  for flags in args.xla_variants.split(';'):
    flags = '' if flags.strip() == 'default' else flags.strip()
    common.run_and_record(sys.executable, script,
                          dict(impl='jax', repeats=args.repeats, xla_flags=flags), results,
                          out)
  print(report_tables.matmul_table(results))


if __name__ == '__main__':
  common.entry(main, jax_worker, torch_worker)

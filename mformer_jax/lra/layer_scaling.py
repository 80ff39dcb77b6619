r"""One LRA encoder layer, forward + backward, vs sequence length, for every attention type.

  python -m mformer_jax.lra.layer_scaling --out=paper/lra_layer.json --plot=paper/lra_layer.png

The Nystromformer-repository layer (dim 64, 2 heads, FFN 128) at batch 1, with the paper's
approximation sizes (Orthoformer-64, Nystrom-128, Performer-256). Time: median of `--reps` runs
of the compiled value-and-grad (all types interleaved per length, so load drifts hit all alike).
Peak memory: XLA's buffer assignment for the compiled step (arguments + outputs + temporaries),
which on CPU is exact and noise-free. Sizes whose estimate exceeds --max_gb are skipped. Also
writes GFLOPs per example of the whole ListOps model (length 2000 and 2048) from the MAC counter.
"""
import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
from matplotlib import figure

from mformer_jax.lra import model

TYPES = {'exact': {}, 'orthoformer': {'num_landmarks': 64}, 'nystrom': {'num_landmarks': 128},
         'performer': {'performer_features': 256}}
LAYER = dict(num_heads=2, mlp_dim=128, dropout=0.0)


def layer_step(attention: str, n: int):
  """(compiled fwd+bwd of one Block on (1, n, 64), its inputs, peak bytes)."""
  block = model.Block(**LAYER, attention_kw=dict(attention=attention, **TYPES[attention]))
  x = jax.random.normal(jax.random.key(0), (1, n, 64))
  mask = jnp.ones((1, n), bool)
  params = block.init(jax.random.key(1), x, mask)

  def loss(p, x):
    return jnp.sum(block.apply(p, x, mask) ** 2)

  compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(params, x).compile()
  mem = compiled.memory_analysis()
  peak = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
  return compiled, (params, x), peak


def model_gflops(length: int) -> dict:
  """GFLOPs (as the paper counts them: multiply-accumulates / 1e9) per ListOps example."""
  return {a: model.macs(model.Encoder(attention=a, max_length=length, **kw)) / 1e9
          for a, kw in TYPES.items()}


def plot(results, path):
  fig = figure.Figure(figsize=(8, 3.2))  # no pyplot: no process-wide backend or state
  axes = fig.subplots(1, 2)
  for a in TYPES:
    pts = [r for r in results if r['attention'] == a and 'time_ms' in r]
    n = [r['tokens'] for r in pts]
    axes[0].plot(n, [r['time_ms'] for r in pts], 'o-', label=a)
    axes[1].plot(n, [r['peak_mb'] for r in pts], 'o-', label=a)
  for ax, label in zip(axes, ('fwd+bwd time (ms)', 'peak memory (MB)')):
    ax.set(xscale='log', yscale='log', xlabel='tokens', ylabel=label)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle('one LRA encoder layer (dim 64, 2 heads), batch 1, CPU', fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=80)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--out', default='paper/lra_layer.json', help='Results JSON.')
  p.add_argument('--plot', default='', help='Optional PNG of time and memory vs length.')
  p.add_argument('--lengths', default='1024,2048,4096,8192,16384', help='Tokens (comma list).')
  p.add_argument('--reps', type=int, default=3, help='Timed runs per point (median).')
  p.add_argument('--max_gb', type=float, default=8.0,
                 help='Skip points whose peak memory would exceed this.')
  p.add_argument('--gflops_only', action='store_true', help='Only (re)compute the GFLOPs in --out.')
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  # 2000 tokens as LRA; 2048 as the Nystromformer code, which pads ListOps with 48 zeros.
  gflops = {f'gflops_per_example_len{n}': model_gflops(n) for n in (2000, 2048)}
  if args.gflops_only:
    with open(args.out) as f:
      out = json.load(f)
    with open(args.out, 'w') as f:
      json.dump({**out, **gflops}, f, indent=1)
    print(json.dumps(gflops))
    return
  results = []
  for n in map(int, args.lengths.split(',')):
    for a in TYPES:
      compiled, inputs, peak = layer_step(a, n)
      row = {'attention': a, 'tokens': n, 'peak_mb': peak / 2**20}
      if peak > args.max_gb * 2**30:
        row['skipped'] = f'peak {peak / 2**30:.1f} GB > {args.max_gb} GB'
      else:
        jax.block_until_ready(compiled(*inputs))  # warm-up
        times = []
        for _ in range(args.reps):
          t0 = time.perf_counter()
          jax.block_until_ready(compiled(*inputs))
          times.append(time.perf_counter() - t0)
        row['time_ms'] = 1e3 * statistics.median(times)
      print(json.dumps(row), flush=True)
      results.append(row)
  out = {'layer': results, **gflops,
         'machine': {'cpu': platform.processor() or platform.machine(),
                     'cores': os.cpu_count(), 'load_avg_at_end': os.getloadavg(),
                     'jax': jax.__version__, 'backend': jax.default_backend()}}
  with open(args.out, 'w') as f:
    json.dump(out, f, indent=1)
  if args.plot:
    plot(results, args.plot)
  print(json.dumps(gflops))


if __name__ == '__main__':
  main()

r"""Collects the LRA runs and the layer benchmark into paper/lra_accuracy.json + markdown tables.

  python -m mformer_jax.lra.report --runs='workdirs/lra/cpu_*' --layer=paper/lra_layer.json
"""
import argparse
import glob
import json
import math
import os
import statistics

TYPES = ('exact', 'orthoformer', 'nystrom', 'performer')
# Paper Table 5 (ListOps accuracy %, GFLOPs, memory MB), Nystromformer-repository model.
PAPER = {'exact': (36.69, 1.21, 4579), 'performer': (36.69, 0.49, 885),
         'nystrom': (36.90, 0.62, 745), 'orthoformer': (33.87, 0.24, 344)}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--runs', default='workdirs/lra/cpu_*', help='Glob of run workdirs.')
  p.add_argument('--layer', default='paper/lra_layer.json',
                 help='mformer_jax.lra.layer_scaling output.')
  p.add_argument('--out', default='paper/lra_accuracy.json', help='Collected run results.')
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  runs = []
  for d in sorted(glob.glob(args.runs)):
    if os.path.exists(os.path.join(d, 'results.json')):
      with open(os.path.join(d, 'results.json')) as f:
        runs.append({'workdir': d, **json.load(f)})
  with open(args.out, 'w') as f:
    json.dump(runs, f, indent=1)
  with open(args.layer) as f:
    layer = json.load(f)
  gflops = layer['gflops_per_example_len2048']
  print('| attention | test acc. % (final) | test acc. % at best val | seeds | majority % | '
        'GFLOPs (ours, 2048 tok) | paper: ListOps % | paper: GFLOPs | paper: Mem MB |')
  print('|---|---|---|---|---|---|---|---|---|')
  for a in TYPES:
    rs = [r for r in runs if r['attention'] == a]
    if not rs:
      continue
    acc = [100 * r['final_test_accuracy'] for r in rs]
    best = [100 * r['test_accuracy_at_best_val'] for r in rs]
    n_test = 2000
    # one run: the binomial standard error of a 2000-example test set; more: the seed spread
    spread = (f' ± {statistics.stdev(acc):.1f} (sd)' if len(acc) > 1 else
              f' ± {100 * math.sqrt(acc[0] / 100 * (1 - acc[0] / 100) / n_test):.1f} (s.e.)')
    print(f'| {a} | {statistics.mean(acc):.1f}{spread} | {statistics.mean(best):.1f} | {len(rs)} | '
          f'{100 * rs[0]["test_majority_rate"]:.1f} | {gflops[a]:.3f} | {PAPER[a][0]} | '
          f'{PAPER[a][1]} | {PAPER[a][2]} |')
  print()
  lengths = sorted({r['tokens'] for r in layer['layer']})
  print('| attention | ' + ' | '.join(f'{n} tok: ms / MB' for n in lengths) + ' |')
  print('|---|' + '---|' * len(lengths))
  for a in TYPES:
    cells = []
    for n in lengths:
      r = next(r for r in layer['layer'] if r['attention'] == a and r['tokens'] == n)
      cells.append(f'{r["time_ms"]:.0f} / {r["peak_mb"]:.0f}' if 'time_ms' in r
                   else f'skipped ({r["peak_mb"]:.0f} MB)')
    print(f'| {a} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  main()

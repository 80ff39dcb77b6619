"""Markdown tables from the JSON files the benchmark scripts write; a plot of the training step.

    python benchmarks/report.py benchmarks/results_layer.json [more.json ...]
    python benchmarks/report.py benchmarks/results_train_step.json --plot=benchmarks/train_step.png
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import matmul, profile_cpu  # noqa: E402


def _fmt(x, digits=3):
  return '-' if x is None else f'{x:.{digits}g}'


def attention_table(data):
  """One row per (size, variant): ours and official, fwd and fwd+bwd."""
  runs = {}
  for r in data['runs']:
    runs[(r['size'], r['variant'], r['mode'], r['impl'])] = r
  order = ['joint', 'divided', 'traj_einsum', 'traj_frames', 'traj_chunked', 'ortho16', 'ortho64',
           'ortho128', 'load_official']
  keys = sorted({(s, v) for s, v, _, _ in runs},
                key=lambda k: (('B', 'L', 'HR').index(k[0]), order.index(k[1])))
  lines = ['| size | variant | mode | ours wall s | ours CPU s | ours XLA temp MB | ours peak RSS MB '
           '| official wall s | official CPU s | official peak RSS MB |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for size, variant in keys:
    for mode in ('fwd', 'fwdbwd'):
      ours, off = runs.get((size, variant, mode, 'jax')), runs.get((size, variant, mode, 'torch'))
      if ours is None and off is None:
        continue
      cell = lambda r, k, d=3: ('-' if not r else 'error' if 'error' in r
                                else 'skipped' if 'skipped' in r else _fmt(r.get(k), d))
      lines.append(f'| {size} | {variant} | {mode} | {cell(ours, "median_s")} | '
                   f'{cell(ours, "median_cpu_s")} | {cell(ours, "xla_temp_mb", 4)} | '
                   f'{cell(ours, "peak_rss_mb", 4)} | {cell(off, "median_s")} | '
                   f'{cell(off, "median_cpu_s")} | {cell(off, "peak_rss_mb", 4)} |')
  return '\n'.join(lines)


def lean_vs_einsum(data, lean='traj_chunked', ref='traj_einsum'):
  """Ratios lean / reference per size and mode (XLA temp, peak RSS above the baseline, times)."""
  runs = {(r['size'], r['variant'], r['mode']): r for r in data['runs']
          if r['impl'] == 'jax' and 'median_s' in r}
  lines = [f'| size | mode | XLA temp ratio | peak-RSS-above-baseline ratio | wall time ratio | '
           f'CPU time ratio |', '|---|---|---|---|---|---|']
  for size in ('B', 'L', 'HR'):
    for mode in ('fwd', 'fwdbwd'):
      a, b = runs.get((size, lean, mode)), runs.get((size, ref, mode))
      if not a or not b:
        continue
      delta = lambda r: r['peak_rss_mb'] - r['base_rss_mb']
      lines.append(f'| {size} | {mode} | {a["xla_temp_mb"] / b["xla_temp_mb"]:.3f} | '
                   f'{delta(a) / delta(b):.3f} | {a["median_s"] / b["median_s"]:.2f} | '
                   f'{a["median_cpu_s"] / b["median_cpu_s"]:.2f} |')
  return '\n'.join(lines)


def _train_label(r):
  if r['impl'] == 'torch':
    return 'official PyTorch'
  extra = ''.join(f', {k}' for k in ('scan', 'fused') if r.get(k))
  return f'ours {r["impl_"]}, remat={r["remat"]}{extra}'


def train_table(data):
  lines = ['| run | config | step wall s (median) | step CPU s | clips/s | XLA temp MB | '
           'peak RSS MB | steps (wall s) |', '|---|---|---|---|---|---|---|---|']
  for r in data['runs']:
    conf = _train_label(r)
    if 'error' in r:
      lines.append(f'| {r.get("round", 0)} | {conf} | error: {r["error"][:60]} | | | | | |')
      continue
    lines.append(f'| {r.get("round", 0)} | {conf} | {r["median_s"]:.2f} | {r["median_cpu_s"]:.2f} | '
                 f'{r["clips_per_s"]:.4f} | {_fmt(r.get("xla_temp_mb"), 4)} | '
                 f'{r["peak_rss_mb"]:.0f} | {", ".join(f"{t:.1f}" for t in r["times_s"])} |')
  return '\n'.join(lines)


def plot_train(data, out: str) -> None:
  """Clips/s and peak memory per configuration, with the issue's targets relative to official."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = [r for r in data['runs'] if 'median_s' in r]
  official = next(r for r in runs if r['impl'] == 'torch')
  labels = [_train_label(r) for r in runs]
  colors = ['tab:gray' if r['impl'] == 'torch' else 'tab:blue' for r in runs]
  fig, axes = plt.subplots(1, 2, figsize=(12, 0.6 * len(runs) + 1.5), sharey=True)
  panels = ((axes[0], 'clips_per_s', 'clips/s (higher is better)', 2 * official['clips_per_s'],
             '2x official', 'upper right'),
            (axes[1], 'peak_rss_mb', 'peak RSS MB (lower is better)',
             official['peak_rss_mb'] / 3, '1/3 of official', 'lower right'))
  for ax, key, title, target, target_label, where in panels:
    values = [r[key] for r in runs]
    ax.barh(range(len(runs)), values, color=colors)
    ax.axvline(target, color='tab:red', ls='--', label=target_label)
    for i, v in enumerate(values):
      ax.text(v, i, f' {v / official[key]:.2f}x', va='center')
    ax.set_title(title)
    ax.legend(loc=where)
  axes[0].set_yticks(range(len(runs)), labels)
  axes[0].invert_yaxis()
  fig.suptitle('Mformer-B training step, float32, batch 1, 16x224, CPU '
               f'({data["machine"]["cores"]} cores, {data["machine"]["date"][:10]})')
  fig.tight_layout()
  fig.savefig(out, dpi=100)


def main(paths):
  plot = [p.split('=', 1)[1] for p in paths if p.startswith('--plot=')]
  paths = [p for p in paths if not p.startswith('--plot=')]
  for path in paths:
    with open(path) as fh:
      data = json.load(fh)
    print(f'### {path}\n\nmachine: {json.dumps(data["machine"])}\n\ncommand: `{data["command"]}`\n')
    if 'matmul_gflops' in data:
      print(f'matmul GFLOP/s at the start of the run: {json.dumps(data["matmul_gflops"])}\n')
    first = data['runs'][0] if data['runs'] else {}
    if 'gflops' in first:  # benchmarks/matmul.py
      print(matmul.table(data) + '\n')
      continue
    if 'what' in first:  # benchmarks/profile_cpu.py
      print(profile_cpu.table(data) + '\n')
      continue
    print(attention_table(data) if 'variant' in first else train_table(data))
    if first.get('scope') == 'layer':
      print('\n' + lean_vs_einsum(data))
    if plot and 'variant' not in first:
      plot_train(data, plot[0])
      print(f'\nplot: {plot[0]}')
    print()


if __name__ == '__main__':
  main(sys.argv[1:])

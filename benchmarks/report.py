"""Markdown tables from the JSON files the benchmark scripts write.

    python benchmarks/report.py benchmarks/results_layer.json [more.json ...]
"""
import json
import sys


def _fmt(x, digits=3):
  return '-' if x is None else f'{x:.{digits}g}'


def attention_table(data):
  """One row per (size, variant): ours and official, fwd and fwd+bwd."""
  runs = {}
  for r in data['runs']:
    runs[(r['size'], r['variant'], r['mode'], r['impl'])] = r
  keys = sorted({(s, v) for s, v, _, _ in runs}, key=lambda k: ('B', 'L', 'HR').index(k[0]))
  lines = ['| size | variant | mode | ours wall s | ours CPU s | ours XLA temp MB | ours peak RSS MB '
           '| official wall s | official CPU s | official peak RSS MB |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for size, variant in keys:
    for mode in ('fwd', 'fwdbwd'):
      ours, off = runs.get((size, variant, mode, 'jax')), runs.get((size, variant, mode, 'torch'))
      if ours is None and off is None:
        continue
      cell = lambda r, k, d=3: (r.get('error', r.get('skipped', ''))[:40] or _fmt(r.get(k), d)
                                if r and (k in r or 'error' in r or 'skipped' in r) else '-')
      lines.append(f'| {size} | {variant} | {mode} | {cell(ours, "median_s")} | '
                   f'{cell(ours, "median_cpu_s")} | {cell(ours, "xla_temp_mb", 4)} | '
                   f'{cell(ours, "peak_rss_mb", 4)} | {cell(off, "median_s")} | '
                   f'{cell(off, "median_cpu_s")} | {cell(off, "peak_rss_mb", 4)} |')
  return '\n'.join(lines)


def train_table(data):
  lines = ['| run | config | step wall s (median) | step CPU s | clips/s | XLA temp MB | '
           'peak RSS MB | steps (wall s) |', '|---|---|---|---|---|---|---|---|']
  for r in data['runs']:
    conf = ('official PyTorch' if r['impl'] == 'torch'
            else f'ours {r["impl_"]}, remat={r["remat"]}')
    if 'error' in r:
      lines.append(f'| {r.get("round", 0)} | {conf} | error: {r["error"][:60]} | | | | | |')
      continue
    lines.append(f'| {r.get("round", 0)} | {conf} | {r["median_s"]:.2f} | {r["median_cpu_s"]:.2f} | '
                 f'{r["clips_per_s"]:.4f} | {_fmt(r.get("xla_temp_mb"), 4)} | '
                 f'{r["peak_rss_mb"]:.0f} | {", ".join(f"{t:.1f}" for t in r["times_s"])} |')
  return '\n'.join(lines)


def main(paths):
  for path in paths:
    with open(path) as fh:
      data = json.load(fh)
    print(f'### {path}\n\nmachine: {json.dumps(data["machine"])}\n\ncommand: `{data["command"]}`\n')
    first = data['runs'][0] if data['runs'] else {}
    print(attention_table(data) if 'variant' in first else train_table(data))
    print()


if __name__ == '__main__':
  main(sys.argv[1:])

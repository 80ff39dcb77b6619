r"""Per-class accuracy differences between two evaluated runs (appendix .1.3).

  python -m mformer_jax.analysis.class_deltas RUN_A RUN_B [--min_videos N] [--top K] \
      [--head label] [--out DIR]

RUN_A / RUN_B: a workdir (its latest `eval/step_N/metrics.json`), an eval report folder or a
metrics.json path. The delta of a class is accuracy(B) - accuracy(A), so for the paper's table
A = divided (or joint), B = trajectory: positive rows are the classes trajectory attention gains.
Classes with fewer than N test videos (in either run) are left out: their accuracy moves in big
steps. Prints the top K gains and losses, writes DIR/class_deltas.csv (every kept class, largest
gain first) and DIR/class_deltas.png (bar chart of the gains and losses printed).
Results and commands: paper/motion_cues.md.
"""
import argparse
import csv
import json
import pathlib
import re

from mformer_jax import errors
from mformer_jax.errors import ConfigError, InputError, MissingInputError, UserError


def find_report(run) -> pathlib.Path:
  """metrics.json of a workdir (latest eval step), a report folder or the file itself."""
  path = pathlib.Path(run)
  if path.is_file():
    return path
  if (path / 'metrics.json').is_file():
    return path / 'metrics.json'
  steps = [(int(m.group(1)), d) for d in (path / 'eval').glob('step_*')
           if (m := re.fullmatch(r'step_(\d+)', d.name)) and (d / 'metrics.json').is_file()]
  if not steps:
    raise MissingInputError(f'{run}: no metrics.json here nor under {path / "eval"}/step_N '
                            '(evaluate the run first)')
  return max(steps)[1] / 'metrics.json'


def read_report(run) -> tuple[pathlib.Path, dict]:
  """(path, the parsed metrics.json) of a run (as find_report finds it)."""
  path = find_report(run)
  try:
    report = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise InputError(f'{path}: cannot be read as an evaluation report ({e})') from e
  if not isinstance(report, dict):
    raise InputError(f'{path}: not an evaluation report (a JSON {type(report).__name__})')
  return path, report


def per_class(run, head=None) -> dict:
  """{class: (accuracy or None, videos)} of one head of one report."""
  path, report = read_report(run)
  try:
    heads = report['per_class']
  except KeyError as e:
    raise InputError(f'{path}: not an evaluation report with per_class ({e!r})') from e
  if head is None:
    if len(heads) != 1:
      raise InputError(f'{path} has heads {sorted(heads)}; choose one with --head')
    head = next(iter(heads))
  if head not in heads:
    raise InputError(f'{path} has no head {head!r} (heads: {sorted(heads)})')
  return {name: (c['accuracy'], int(c['videos'])) for name, c in heads[head].items()}


def deltas(a: dict, b: dict, min_videos: int = 1) -> list[dict]:
  """Rows {class, videos_a, videos_b, accuracy_a, accuracy_b, delta}, largest gain first (ties
  by name); only classes in both runs with >= min_videos videos in each."""
  if set(a) != set(b):
    raise InputError(f'the runs have different classes (only in A: {sorted(set(a) - set(b))[:5]}'
                     f', only in B: {sorted(set(b) - set(a))[:5]})')
  rows = []
  for name, (acc_a, n_a) in a.items():
    acc_b, n_b = b[name]
    if min(n_a, n_b) < max(min_videos, 1) or acc_a is None or acc_b is None:
      continue
    rows.append(dict(cls=name, videos_a=n_a, videos_b=n_b, accuracy_a=acc_a, accuracy_b=acc_b,
                     delta=acc_b - acc_a))
  return sorted(rows, key=lambda r: (-r['delta'], r['cls']))


def extremes(rows, top: int):
  """(top gains, largest first; top losses, largest first), a class in at most one list."""
  gains = [r for r in rows if r['delta'] > 0][:top]
  losses = [r for r in reversed(rows) if r['delta'] < 0][:top]
  return gains, losses


def table(rows, name_a='A', name_b='B') -> str:
  width = max([len(r['cls']) for r in rows] + [5])
  lines = [f"{'class':{width}s}  videos  {name_a[:10]:>10s}  {name_b[:10]:>10s}   delta"]
  lines += [f"{r['cls']:{width}s}  {r['videos_a']:6d}  {100 * r['accuracy_a']:9.1f}%  "
            f"{100 * r['accuracy_b']:9.1f}%  {100 * r['delta']:+6.1f}" for r in rows]
  return '\n'.join(lines)


def write_csv(path, rows):
  with open(path, 'w', newline='') as f:
    w = csv.DictWriter(f, ['class', 'videos_a', 'videos_b', 'accuracy_a', 'accuracy_b', 'delta'])
    w.writeheader()
    for r in rows:
      w.writerow({'class': r['cls'], **{k: v for k, v in r.items() if k != 'cls'}})


def plot(path, gains, losses, name_a='A', name_b='B'):
  # matplotlib only where a figure is drawn (its import takes seconds).
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = gains + losses[::-1]  # top to bottom: largest gain ... largest loss
  fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
  y = range(len(rows))[::-1]
  ax.barh(list(y), [100 * r['delta'] for r in rows],
          color=['tab:green' if r['delta'] > 0 else 'tab:red' for r in rows])
  ax.set_yticks(list(y), [f"{r['cls']} ({r['videos_a']})" for r in rows], fontsize=7)
  ax.axvline(0, color='k', lw=0.8)
  ax.set_xlabel(f'top-1 of {name_b} - top-1 of {name_a} (points)')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m mformer_jax.analysis.class_deltas',
                              description=__doc__.split('\n')[0])
  p.add_argument('run_a', help='baseline: workdir, report folder or metrics.json')
  p.add_argument('run_b', help='compared run (delta = B - A)')
  p.add_argument('--min_videos', type=int, default=1, help='ignore classes with fewer videos')
  p.add_argument('--top', type=int, default=3, help='gains and losses to print and plot')
  p.add_argument('--head', default=None, help='which head (Epic-Kitchens: verb or noun)')
  p.add_argument('--names', default='A,B', help='labels of the two runs in the table and plot')
  p.add_argument('--out', default='', help='folder for class_deltas.csv/.png ('' = none)')
  args = p.parse_args(argv)
  names = args.names.split(',')
  try:
    if args.top < 1 or args.min_videos < 0 or len(names) != 2:
      raise ConfigError('--top must be >= 1, --min_videos >= 0, --names two comma-separated names')
    rows = deltas(per_class(args.run_a, args.head), per_class(args.run_b, args.head),
                  args.min_videos)
    if not rows:
      raise InputError(f'no class has >= {args.min_videos} videos and an accuracy in both runs')
  except UserError as e:
    errors.exit_with(e)
  gains, losses = extremes(rows, args.top)
  print(f'{len(rows)} classes compared (>= {args.min_videos} videos); delta = {names[1]} - '
        f'{names[0]}\nlargest gains:\n{table(gains, *names) if gains else "  none"}\n'
        f'largest losses:\n{table(losses, *names) if losses else "  none"}')
  if args.out:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / 'class_deltas.csv', rows)
    plot(out / 'class_deltas.png', gains, losses, *names)
    print(f'wrote {out / "class_deltas.csv"} and {out / "class_deltas.png"}')
  return rows


if __name__ == '__main__':
  main()

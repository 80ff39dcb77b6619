r"""Temporal-stride sweep (appendix .1.1, Figure 1): joint, divided and trajectory attention trained
and evaluated at several temporal strides; top-1 per cell, the margin to trajectory attention.

  python -m mformer_jax.analysis.stride_sweep --config=configs/released.py:k400_motionformer_224_16x4 \
      --config.data.data_dir=/data/k400_prepared --config.init.imagenet=vit_b16.pth \
      --strides=1,2,4,8,16 --attentions=joint,divided,trajectory --root=/ckpt/fig1_k400
  python -m mformer_jax.analysis.stride_sweep --config=configs/released.py:ssv2_motionformer_224_16x4 \
      --config.data.data_dir=/data/ssv2_prepared --strides=S/8,S/4,S/2,S --root=/ckpt/fig1_ssv2
  python -m mformer_jax.analysis.stride_sweep ... --cell=divided:4      # one cell (one host)
  python -m mformer_jax.analysis.stride_sweep ... --collect   # only gather the finished cells
  python -m mformer_jax.analysis.stride_sweep ... --eval_only \
      --checkpoints=joint=/ckpt/fig1_k400/joint_4_seed0,...  # trained models at other strides

Strides as the paper writes them: Kinetics (data.sampler 'linspace') frame strides =
data.sampling_rate; SSv2 (sampler 'segment') multiples of S, the stride whose num_frames segments
span the whole video, written S, S/2, 0.5S (data.segment_span = the fraction); the synthetic
twin: data.synthetic.speed (every velocity x stride, i.e. a stride on constant-velocity motion).
Every frame count stays the config's, so a larger stride covers more of the video.

Each cell (attention, stride, seed) is ROOT/{attention}_{stride}_seed{seed}, trained by the
project's trainer (resuming a checkpoint if there is one); ROOT/<cell>/result.json marks it done
and it is skipped from then on. At the end (also with --cell) every finished cell is collected
into ROOT/stride_sweep.csv and ROOT/stride_sweep.png (top: top-1 minus trajectory's; bottom:
top-1; mean over seeds with their min-max as bars). Results and commands: paper/motion_cues.md.
"""

import csv
import json
import pathlib
import re
import time

from absl import app, flags, logging
from ml_collections import config_flags

from mformer_jax import config_lib, errors
from mformer_jax.errors import ConfigError, UserError

ATTENTIONS = ('joint', 'divided', 'trajectory')
FLAGS = flags.FLAGS


def define_flags():
  """The command's flags; defined when run as a script, so that importing this module next to
  another absl command (tests import several) defines nothing."""
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
  flags.DEFINE_list('strides', None, 'Temporal strides (Kinetics/synthetic: numbers; '
                    'SSv2: multiples of S such as S/4, 0.5S, S).')
  flags.DEFINE_list('attentions', list(ATTENTIONS), 'Attention types.')
  flags.DEFINE_list('seeds', None, "Model seeds (default: the config's).")
  flags.DEFINE_string('root', None, 'One workdir per cell under this folder.')
  flags.DEFINE_string('cell', '', 'ATTENTION:STRIDE[:SEED]: run only this cell.')
  flags.DEFINE_bool('eval_only', False, 'Evaluate --checkpoints at every stride.')
  flags.DEFINE_list('checkpoints', [], 'ATTENTION=WORKDIR_OR_CHECKPOINT, ...')
  flags.DEFINE_bool('collect', False, 'Run nothing: collect the finished cells.')


def stride_field(config) -> str:
  """The config field a stride sets, by data source and sampler."""
  if config.data.source != 'prepared':
    return 'synthetic.speed'
  return 'segment_span' if config.data.sampler == 'segment' else 'sampling_rate'


def stride_value(config, stride: str):
  """'4' -> 4 (frame stride or synthetic speed); 'S/2' or '0.5S' -> 0.5 (segment span)."""
  field = stride_field(config)
  if field == 'segment_span':
    m = re.fullmatch(r'(?:(\d*\.?\d+)\s*\*?\s*)?S(?:/(\d+))?', stride.strip())
    if not m or stride.strip() in ('',):
      raise ConfigError(f'SSv2 strides are multiples of S (S, S/2, 0.5S), got {stride!r}')
    value = float(m.group(1) or 1) / float(m.group(2) or 1)
    if not 0 < value <= 1:
      raise ConfigError(f'stride {stride!r}: segments span at most the whole video (<= S)')
    return value
  try:
    value = float(stride) if field == 'synthetic.speed' else int(stride)
  except ValueError:
    raise ConfigError(f'{field} strides are numbers, got {stride!r}') from None
  if value <= 0:
    raise ConfigError(f'stride {stride!r} must be positive')
  return value


def cell_config(config, attention: str, stride: str, seed: int):
  """A copy of `config` with the cell's attention, stride and seed."""
  if attention not in ATTENTIONS:
    raise ConfigError(f'attention {attention!r}; expected one of {ATTENTIONS}')
  c = config.copy_and_resolve_references()
  c.model.attention = attention
  if attention != 'trajectory':
    c.model.approx = 'none'  # approximations apply to trajectory attention only
  *parents, leaf = ('data.' + stride_field(config)).split('.')
  node = c
  for p in parents:
    node = node[p]
  node[leaf] = stride_value(config, stride)
  c.seed = seed
  c.experiment = f'{config.experiment}_{attention}_{stride}_seed{seed}'
  return c


def cell_name(attention, stride, seed) -> str:
  return f"{attention}_{stride.replace('/', 'over')}_seed{seed}"


def run_cell(config, workdir: pathlib.Path, checkpoint: str = '') -> dict:
  """Trains+evaluates (or evaluates `checkpoint`) into workdir unless result.json says done."""
  done = workdir / 'result.json'
  if done.exists():
    logging.info('%s: done, skipped', workdir)
    return json.loads(done.read_text())
  # Here, not at the top: they bring TensorFlow's input pipeline, which --collect and the
  # grid's checks do not need.
  from mformer_jax import train  # pylint: disable=g-import-not-at-top
  from mformer_jax.eval import evaluator  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  if checkpoint:
    config.init.checkpoint, config.mode = checkpoint, 'eval'
    results = evaluator.evaluate_checkpoint(config, str(workdir))
  else:
    results = train.train_and_evaluate(config, str(workdir))
  keep = {k: v for k, v in results.items() if isinstance(v, (int, float, str))}
  keep['wall_s'] = time.perf_counter() - start
  workdir.mkdir(parents=True, exist_ok=True)
  done.write_text(json.dumps(keep, indent=1))
  return keep


def sweep(config, *, strides, attentions, root, seeds=None, cell='', checkpoints=None,
          collect_only=False):
  """Runs the grid's unfinished cells (or only `cell`; none if collect_only), then collects;
  returns the CSV rows."""
  root = pathlib.Path(root)
  seeds = [int(s) for s in seeds] if seeds else [config.seed]
  checkpoints = dict(checkpoints or {})
  grid = [(a, s, seed) for a in attentions for s in strides for seed in seeds]
  for a, s, seed in grid:  # every argument checked before anything runs
    cell_config(config, a, s, seed)
  if checkpoints:
    unknown = set(checkpoints) - set(attentions)
    if unknown:
      raise ConfigError(f'--checkpoints for {sorted(unknown)}, not in --attentions')
    grid = [g for g in grid if g[0] in checkpoints]
  if cell:
    a, s, *sd = cell.split(':')
    todo = [g for g in grid if g[:2] == (a, s) and (not sd or str(g[2]) == sd[0])]
    if not todo:
      raise ConfigError(f'--cell={cell} is not in the grid {attentions} x {strides} x {seeds}')
  else:
    todo = [] if collect_only else grid
  prefix = 'eval_' if checkpoints else ''
  for i, (a, s, seed) in enumerate(todo):
    logging.info('cell %d/%d: %s stride %s seed %d', i + 1, len(todo), a, s, seed)
    run_cell(cell_config(config, a, s, seed), root / (prefix + cell_name(a, s, seed)),
             checkpoints.get(a, ''))
  return collect(root, grid, prefix, config.checkpoint.best_metric)


def collect(root: pathlib.Path, grid, prefix='', metric='top1'):
  """Finished cells -> ROOT/stride_sweep.csv (one row per cell) and the figure."""
  rows = []
  for a, s, seed in grid:
    done = root / (prefix + cell_name(a, s, seed)) / 'result.json'
    if done.exists():
      rows.append(dict(attention=a, stride=s, seed=seed,
                       top1=json.loads(done.read_text())[metric]))
  if rows:
    with open(root / 'stride_sweep.csv', 'w', newline='') as f:
      w = csv.DictWriter(f, list(rows[0]))
      w.writeheader()
      w.writerows(rows)
    plot(root / 'stride_sweep.png', rows)
  logging.info('%d of %d cells finished; %s', len(rows), len(grid), root / 'stride_sweep.csv')
  return rows


def summary(rows):
  """{attention: {stride: (mean, min, max) top-1 over seeds}}, strides in first-seen order."""
  out = {}
  for r in rows:
    out.setdefault(r['attention'], {}).setdefault(r['stride'], []).append(r['top1'])
  return {a: {s: (sum(v) / len(v), min(v), max(v)) for s, v in d.items()} for a, d in out.items()}


def plot(path, rows, title=''):
  # matplotlib only where a figure is drawn (its import takes seconds).
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  stats = summary(rows)
  strides = list(dict.fromkeys(r['stride'] for r in rows))
  x = range(len(strides))
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True)
  traj = stats.get('trajectory', {})
  for a, d in stats.items():
    have = [i for i, s in enumerate(strides) if s in d]
    mean = [100 * d[strides[i]][0] for i in have]
    err = [[100 * (d[strides[i]][0] - d[strides[i]][1]) for i in have],
           [100 * (d[strides[i]][2] - d[strides[i]][0]) for i in have]]
    bottom.errorbar(have, mean, yerr=err, marker='o', capsize=3, label=a)
    both = [i for i in have if strides[i] in traj]
    if a != 'trajectory' and both:
      top.plot(both, [100 * (d[strides[i]][0] - traj[strides[i]][0]) for i in both], marker='o',
               label=f'{a} - trajectory')
  top.axhline(0, color='k', lw=0.8)
  top.set_ylabel('top-1 margin (points)')
  if top.get_lines()[1:]:  # the margins (the first line is the zero line)
    top.legend(fontsize=7)
  top.set_title(title, fontsize=9)
  bottom.set_ylabel('top-1 (%)')
  bottom.set_xlabel('temporal stride')
  bottom.set_xticks(list(x), strides)
  bottom.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}', exitcode=2)
  f = FLAGS
  try:
    if f.config is None or not f.root or not f.strides:
      raise ConfigError('--config, --root and --strides are required')
    checkpoints = {}
    for item in f.checkpoints:
      a, sep, path = item.partition('=')
      if not sep or not path:
        raise ConfigError(f'--checkpoints wants ATTENTION=PATH items, got {item!r}')
      checkpoints[a] = path
    if f.eval_only != bool(checkpoints):
      raise ConfigError('--eval_only and --checkpoints go together')
    config_lib.finalize(f.config)
    rows = sweep(f.config, strides=f.strides, attentions=f.attentions, root=f.root,
                 seeds=f.seeds, cell=f.cell, checkpoints=checkpoints, collect_only=f.collect)
  except UserError as e:
    errors.exit_with(e)
  for a, d in summary(rows).items():
    print(a, ' '.join(f'{s}: {100 * m:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]'
                      for s, (m, lo, hi) in d.items()))


if __name__ == '__main__':
  define_flags()
  app.run(main)

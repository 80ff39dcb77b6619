"""The device check: Mformer-B's training step and eval forward on one accelerator, ours (the
trainer's own step) against the official PyTorch code in the same run, within a time budget
(8 minutes on one H100/H200); docs/device_check.md says how to run it on a lent GPU.

    python -m benchmarks.device_check --out=DIR [--smoke | --one_step] [--official_repo=PATH]

Writes DIR/<machine class>/device_check_<jax>.json and the rendered .md beside it (DIR defaults
to benchmarks/results; --smoke and --one_step add their name). Measured, in this order (what the
budget does not reach is listed as skipped):
  1. trajectory attention, remat none: 'frames' + cuDNN attention and 'chunked', at --batch
     clips and at the largest batch that fits (doubling, compiled first, --search_s per setting)
  2. the official model (bf16 autocast, AdamW) at --batch and at our best batch; its eval
     forward; our eval forward (--eval_batch views of one video as one batch) and a bf16 matmul
  3. the same trajectory settings with remat 'tied'
  4. joint and divided attention at the best trajectory setting's batch and remat
Each row: step time, clips/s, peak device memory, model TFLOP/s and MFU two ways (the reference
FLOPs, flops.reference_macs x 2 x 3; and the matmul FLOPs our program runs) over the device's
nominal bf16 peak (train.throughput) and over the measured matmul rate; the best trajectory
setting's profile (benchmarks/trace_summary.py).

--smoke: a tiny model, every setting and code path on a CPU in well under a minute (the search
in the first setting only; JAX inline, the official model in a subprocess where torch and the
official code are there, else a note). --one_step: Mformer-B shapes, one timed step per setting
(no warm-up), to catch the shape, dtype and memory errors a tiny model hides, on a CPU.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import common, device_report

WORKERS = 'benchmarks.device_workers'   # run as a module from the repository root
OFFICIAL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'out', 'device_check',
                            'official')
TRAJECTORY_NONE = (('frames', 'cudnn', 'none'), ('chunked', 'xla', 'none'))
TRAJECTORY_TIED = (('frames', 'cudnn', 'tied'), ('chunked', 'xla', 'tied'))
SMOKE_MODEL = dict(num_frames=4, img_size=32, embed_dim=64, depth=1, num_heads=2, num_classes=10)
MODES = {
    'full': dict(model={}, official=dict(frames=16, crop=224, depth=12, dim=768, heads=12,
                                         classes=400),
                 timing=dict(warmup=2, groups=5, min_s=2.0, max_groups=20), matmul=8192,
                 max_batch=256, profile_steps=3),
    'one_step': dict(timing=dict(warmup=0, groups=1, min_s=0.0, max_groups=1), max_batch=8,
                     profile_steps=1),
    'smoke': dict(model=SMOKE_MODEL, official=dict(frames=4, crop=32, depth=1, dim=64, heads=2,
                                                   classes=10),
                  timing=dict(warmup=1, groups=2, min_s=0.0, max_groups=2), matmul=256,
                  max_batch=8, profile_steps=1),
}


def mode_settings(mode: str) -> dict:
  return {**MODES['full'], **MODES[mode]}


def parse_args(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--out', default=common.RESULTS_DIR,
                  help='results root: files go to OUT/<machine class>/ (default %(default)s)')
  ap.add_argument('--smoke', action='store_true', help='tiny model, every code path, CPU')
  ap.add_argument('--one_step', action='store_true', help='Mformer-B, one timed step each')
  ap.add_argument('--official_repo', default=OFFICIAL_DIR if os.path.isdir(OFFICIAL_DIR) else '',
                  help='a Motionformer checkout (slowfast/models; never committed)')
  ap.add_argument('--official_python', default=sys.executable,
                  help='a Python with torch, timm and einops')
  ap.add_argument('--budget_s', type=float, default=450.0,
                  help='stop starting measurements after this many seconds (0: no limit)')
  ap.add_argument('--search_s', type=float, default=60.0,
                  help='compile seconds per setting for the largest-batch search')
  ap.add_argument('--max_batch', type=int, default=0, help='search cap (0: the mode default)')
  ap.add_argument('--batch', type=int, default=4, help='clips per step (the paper: 4 per GPU)')
  ap.add_argument('--eval_batch', type=int, default=30, help='views of one video: 10 x 3')
  ap.add_argument('--only', default='',
                  help='comma list of measurements to run (a rerun of what the budget skipped): '
                       'trajectory-IMPL-BACKEND-REMAT, official, eval, joint, divided')
  args = ap.parse_args(argv)
  if args.smoke and args.one_step:
    ap.error('--smoke and --one_step exclude each other')
  return args


# ----------------------------------------------------------------------------------------------
# Running the workers
# ----------------------------------------------------------------------------------------------
def spawn(python: str, tasks: list, impl: str, timeout: float) -> list:
  """Rows of `tasks` run by one worker process (python -m benchmarks.device_workers
  --worker=JSON). PYTHONPATH keeps what it held (a carried wheel) after the repository."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  root = common.ROOT
  env['PYTHONPATH'] = os.pathsep.join(filter(None, [root, os.environ.get('PYTHONPATH')]))
  env.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.92')   # the largest batch wants it all
  spec = json.dumps({'impl': impl, 'tasks': tasks})
  try:
    proc = subprocess.run([python, '-m', WORKERS, '--worker=' + spec], capture_output=True,
                          text=True,
                          timeout=max(timeout, 1) if timeout < float('inf') else None, env=env,
                          cwd=root)
  except subprocess.TimeoutExpired:
    return [{'name': t['name'], 'error': f'timeout after {timeout:.0f} s'} for t in tasks]
  rows = [r for line in proc.stdout.splitlines() if line.startswith(common.RESULT)
          for r in json.loads(line[len(common.RESULT):])['rows']]
  if proc.returncode and len({r['name'] for r in rows}) < len(tasks):
    tail = ' | '.join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[-600:]
    done = {r['name'] for r in rows}
    rows += [{'name': t['name'], 'error': f'rc={proc.returncode}: {tail}'}
             for t in tasks if t['name'] not in done]
  return rows


class Check:
  """The run: its settings, deadline and results (rewritten after every measurement)."""

  def __init__(self, args):
    self.args = args
    self.mode = 'smoke' if args.smoke else 'one_step' if args.one_step else 'full'
    self.settings = s = mode_settings(self.mode)
    self.start = time.time()
    self.deadline = self.start + args.budget_s if args.budget_s > 0 else float('inf')
    self.trace_dir = tempfile.mkdtemp(prefix='device_check_trace_')
    m = common.machine()
    # A partial rerun (--only) is written beside the full run, not over it.
    name = ('device_check' + ('' if self.mode == 'full' else '_' + self.mode)
            + ('_part' if args.only else ''))
    self.path = os.path.join(args.out, os.path.relpath(common.results_path(name, m),
                                                       common.RESULTS_DIR))
    self.results = {'machine': m, 'command': common.command_line(), 'mode': self.mode,
                    'budget_s': args.budget_s, 'model': s['model'] or 'Mformer-B 16x224',
                    'dtype': 'bfloat16 compute, float32 parameters',
                    'train': [], 'official': [], 'eval': [], 'matmul': None, 'profile': None,
                    'skipped': [], 'notes': []}

  def remaining(self) -> float:
    return self.deadline - time.time()

  def task(self, task: str, name: str, **kw) -> dict:
    s = self.settings
    return {'task': task, 'name': name, 'timing': s['timing'], 'batch': self.args.batch,
            'max_batch': self.args.max_batch or s['max_batch'], 'search_s': self.args.search_s,
            'profile_steps': s['profile_steps'], 'trace_dir': self.trace_dir, **kw}

  def wanted(self, name: str) -> bool:
    only = [o for o in self.args.only.split(',') if o]
    return not only or any(name.startswith(o) for o in only)

  def run_jax(self, tasks: list) -> list:
    rows = []
    for t in tasks:
      if not self.wanted(t['name']):
        continue
      if self.remaining() < 15:
        self.results['skipped'].append(f"{t['name']}: time budget ({self.args.budget_s:.0f} s)")
        continue
      t0 = time.time()
      if self.mode == 'smoke':   # inline: a CPU, nothing to isolate
        from benchmarks import device_workers
        new = device_workers.run_jax_task(t)
      else:
        new = spawn(sys.executable, [t], 'jax', self.remaining())
      new = [{**r, 'wall_s': round(time.time() - t0, 1)} for r in new]
      rows += new
      self.record(new)
    return rows

  def record(self, rows: list) -> None:
    for r in rows:
      if r['name'] == 'matmul':
        self.results['matmul'] = r
      elif r['name'] in ('eval', 'official'):
        self.results[r['name']].append(r)
      else:
        self.results['train'].append(r)
    self.write()

  def write(self) -> None:
    self.results['elapsed_s'] = round(time.time() - self.start, 1)
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    with open(self.path, 'w') as f:
      json.dump(self.results, f, indent=1)
    with open(os.path.splitext(self.path)[0] + '.md', 'w') as f:
      f.write(device_report.render(self.results))


def model_overrides(check, impl, backend, remat, attention='trajectory') -> dict:
  return {**check.settings['model'], 'dtype': 'bfloat16', 'attention': attention,
          'trajectory_impl': impl, 'attention_backend': backend, 'remat': remat}


def official_skip_reason(args) -> str:
  """Why the official side cannot run here ('' if it can)."""
  if not args.official_repo or not os.path.isfile(
      os.path.join(args.official_repo, 'slowfast', 'models', 'vit_helper.py')):
    return ('no official checkout (--official_repo: slowfast/models of the Motionformer repo, '
            'kept outside git; docs/device_check.md)')
  # timm is found, not imported: official.py imports it behind a torchvision stub.
  probe = subprocess.run([args.official_python, '-c', 'import importlib.util, torch, einops; '
                          'assert importlib.util.find_spec("timm")'], capture_output=True)
  if probe.returncode:
    return f'{args.official_python} has no torch, einops or timm'
  return ''


def official(check, batches: list) -> None:
  """The official model's rows (training at `batches`, eval), or a note why not."""
  args = check.args
  reason = official_skip_reason(args)
  if reason:
    check.results['notes'].append('official model skipped: ' + reason)
  elif check.remaining() < 30:
    check.results['skipped'].append(f'official: time budget ({args.budget_s:.0f} s)')
  else:
    t0 = time.time()
    task = check.task('official', 'official', repo=os.path.abspath(args.official_repo),
                      model=check.settings['official'], eval_batch=args.eval_batch,
                      train_batches=batches)
    rows = spawn(args.official_python, [task], 'torch', check.remaining())
    check.record([{**r, 'wall_s': round(time.time() - t0, 1)} for r in rows])


def run(args) -> dict:
  check = Check(args)
  first_search = [True]

  def trajectory(settings, profile=True):
    tasks = []
    for impl, backend, remat in settings:
      search = check.mode != 'smoke' or first_search[0]   # smoke: the search path once
      first_search[0] = False
      tasks.append(check.task('train', f'trajectory-{impl}-{backend}-{remat}', search=search,
                              profile=profile,
                              model=model_overrides(check, impl, backend, remat)))
    return check.run_jax(tasks)

  trajectory(TRAJECTORY_NONE)
  best = device_report.best(check.results['train'])
  best_batch = best['batch'] if best else args.batch
  # 2. the official model at our batches, then both eval forwards and the matmul.
  if check.wanted('official'):
    official(check, sorted({args.batch, best_batch}))
  impl, backend = (best['impl'], best['backend']) if best else ('chunked', 'xla')
  check.run_jax([check.task('eval', 'eval', eval_batch=args.eval_batch,
                            matmul=check.settings['matmul'],
                            model=model_overrides(check, impl, backend, 'none'))])
  # 3. remat tied; 4. joint and divided at the best setting's batch and remat.
  trajectory(TRAJECTORY_TIED)
  best = device_report.best(check.results['train'])
  batch, remat = (best['batch'], best['remat']) if best else (args.batch, 'none')
  check.run_jax([check.task('train', f'{a}-{remat}', batch=batch, profile=False,
                            model=model_overrides(check, 'auto', 'xla', remat, attention=a))
                 for a in ('joint', 'divided')])
  check.results['profile'] = device_report.best_profile(check.results['train'])
  check.write()
  shutil.rmtree(check.trace_dir, ignore_errors=True)   # summarised in the results
  print(device_report.render(check.results))
  print(f'wrote {check.path} and its .md', flush=True)
  return check.results


if __name__ == '__main__':
  run(parse_args())

"""The recorded TPU plan: `python -m mformer_jax.plan` over the released models and the slices
users rent, one subprocess per case, into benchmarks/results/tpu-compile/plan.json, rendered to
plan.md next to it.

    python -m benchmarks.tpu_plan [--groups=grid,fsdp,fsdp_pinned,scan,max,slices] [--only=S]
    python -m benchmarks.report                 # plan.md (and results/README.md) only

Resumable: a case already in the JSON (same group and command) is skipped; each run records
the commit its package was at ('code'). Every figure is the
compiler's memory analysis of a program that was compiled, not run.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import common, report

ROOT = common.ROOT
JSON = report.TPU_PLAN

MODELS = {'B': 'k400_motionformer_224_16x4', 'L': 'k400_motionformer_224_32x3',
          'HR': 'k400_motionformer_336_16x8'}
# The slices: gcloud's name -> topology (mformer_jax.plan.slices.accelerator_topology maps them).
SLICES = {'v5litepod-16': 'v5e:4x4', 'v5litepod-256': 'v5e:16x16', 'v4-32': 'v4:2x2x4',
          'v5p-64': 'v5p:2x4x4', 'v6e-16': 'v6e:4x4'}
LEAN = {'trajectory_impl': 'chunked', 'remat': 'full'}


def case(group, model, topology, batch=None, scan=True, fsdp=False, mode='train', **model_cfg):
  args = [f'--config=configs/released.py:{MODELS[model]}', f'--topology={topology}',
          f'--config.model.scan_blocks={scan}', f'--config.mesh.fsdp={fsdp}']
  args += [f'--config.model.{k}={v}' for k, v in model_cfg.items()]
  if batch is not None:
    args.append(f'--batch_per_chip={batch}')
  if mode != 'train':
    args.append(f'--mode={mode}')
  return {'group': group, 'model': model, 'args': args}


def cases():
  """In the order they run (most informative first)."""
  out = []
  # Which impl and remat, at the paper's batch, on v5e-16 (data parallel: the per-chip memory
  # does not depend on the slice size; the 'fsdp' group checks that at 256 chips).
  for model in MODELS:
    for impl in ('chunked', 'einsum', 'frames'):
      for remat in ('none', 'full'):
        out.append(case('grid', model, 'v5e:4x4', trajectory_impl=impl, remat=remat))
  # FSDP: what it saves and what its collectives cost, 16 vs 256 chips (v5e-16 without FSDP
  # is in the grid); 256 chips without FSDP also checks that the per-chip memory of data
  # parallelism does not depend on the slice size.
  # 'fsdp' ran before activations were pinned to the batch split (sharding.split_batch, in the
  # commit after d1a725d), 'fsdp_pinned' after: the same commands.
  for group in ('fsdp', 'fsdp_pinned'):
    for model in ('B', 'HR'):
      for topology, fsdp in (('v5e:4x4', True), ('v5e:16x16', False), ('v5e:16x16', True)):
        out.append(case(group, model, topology, fsdp=fsdp, **LEAN))
  # scan_blocks does not change the answer (one case); 'tied' is 'full' under scan, unrolled here.
  out.append(case('scan', 'B', 'v5e:4x4', scan=False, trajectory_impl='chunked', remat='none'))
  out.append(case('scan', 'B', 'v5e:4x4', scan=False, trajectory_impl='chunked', remat='tied'))
  # The largest per-chip batch with the lean setting, per HBM size (16, 32, 96 GiB).
  for topology in ('v5e:4x4', 'v6e:4x4', 'v5p:2x4x4'):
    for model in MODELS:
      out.append(case('max', model, topology, batch='max', **LEAN))
  # The other rented slices at the paper's batch, the lean setting.
  for topology in ('v4:2x2x4',):
    for model in MODELS:
      out.append(case('slices', model, topology, **LEAN))
  return out


def load():
  if os.path.exists(JSON):
    with open(JSON) as f:
      return json.load(f)
  return {'note': "XLA:TPU's memory analysis of programs compiled (not run) on this machine "
                  'for abstract TPU slices (python -m mformer_jax.plan)', 'runs': []}


# What the compiled step is made of (the data pipeline and the analyses are not in it).
_STEP_CODE = ['configs', 'mformer_jax/config_lib.py', 'mformer_jax/data/config.py',
              *(f'mformer_jax/{unit}' for unit in ('model', 'run', 'eval', 'train', 'plan'))]


def _code():
  """The commit the step's code was at, '+dirty' when it had uncommitted changes."""
  git = lambda *a: subprocess.run(['git', *a], cwd=ROOT, capture_output=True, text=True).stdout
  dirty = git('status', '--porcelain', '--', *_STEP_CODE).strip()
  return git('rev-parse', '--short', 'HEAD').strip() + ('+dirty' if dirty else '')


def run_case(c, python):
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'plan.json')
    cmd = [python, '-m', 'mformer_jax.plan', *c['args'], f'--out={out}']
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', TF_ENABLE_ONEDNN_OPTS='0')
    code, load_before, t0 = _code(), os.getloadavg()[0], time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    plan = json.load(open(out)) if os.path.exists(out) else None
  error = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  if plan is None:
    print(proc.stderr[-3000:], file=sys.stderr)
  return {**c, 'command': 'python -m mformer_jax.plan ' + ' '.join(c['args']), 'code': code,
          'exit_status': proc.returncode, 'error': error[0] if error else None,
          'wall_s': round(wall, 1), 'load_avg_1m_before': load_before, 'plan': plan}


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--groups', default='grid,fsdp,fsdp_pinned,scan,max,slices')
  p.add_argument('--only', default='')
  p.add_argument('--python', default=sys.executable)
  a = p.parse_args()
  data = load()
  data.setdefault('machine', common.machine())
  done = {(r['group'], r['command']) for r in data['runs']}
  for c in cases():
    command = 'python -m mformer_jax.plan ' + ' '.join(c['args'])
    if (c['group'] not in a.groups.split(',') or a.only not in command
        or (c['group'], command) in done):
      continue
    print(f'[tpu_plan] {command}', flush=True)
    r = run_case(c, a.python)
    print(f"[tpu_plan]   exit {r['exit_status']} in {r['wall_s']} s {r['error'] or ''}",
          flush=True)
    if r['plan'] is None:
      continue  # a crash, not a plan: shown above, not recorded
    data['runs'].append(r)
    with open(JSON, 'w') as f:
      json.dump(data, f, indent=1)
  with open(report.TPU_PLAN_DOCUMENT, 'w') as f:
    f.write(report.plan_document(data))


if __name__ == '__main__':
  main()

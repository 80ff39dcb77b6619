"""The recorded TPU plan: `python -m mformer_jax.plan` over the released models and the slices
users rent, one subprocess per case, into benchmarks/tpu_plan.json, rendered to tpu_plan.md.

    python benchmarks/tpu_plan.py [--groups=grid,scan,slices,max,fsdp] [--only=SUBSTRING]
    python benchmarks/tpu_plan.py --render      # tpu_plan.md from tpu_plan.json only

Resumable: a case whose command is already in the JSON is skipped. Every figure is the
compiler's memory analysis of a program that was compiled, not run.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks import common  # noqa: E402

JSON = os.path.join(ROOT, 'benchmarks', 'tpu_plan.json')
MD = os.path.join(ROOT, 'benchmarks', 'tpu_plan.md')

MODELS = {'B': 'k400_motionformer_224_16x4', 'L': 'k400_motionformer_224_32x3',
          'HR': 'k400_motionformer_336_16x8'}
# The slices: gcloud's name -> topology (mformer_jax.plan.accelerator_topology maps them).
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
  # does not depend on the slice size; the 'slices' group checks that at 256 chips).
  for model in MODELS:
    for impl in ('chunked', 'einsum', 'frames'):
      for remat in ('none', 'full'):
        out.append(case('grid', model, 'v5e:4x4', trajectory_impl=impl, remat=remat))
  # scan_blocks does not change the answer (one case); 'tied' is 'full' under scan, unrolled here.
  out.append(case('scan', 'B', 'v5e:4x4', scan=False, trajectory_impl='chunked', remat='none'))
  out.append(case('scan', 'B', 'v5e:4x4', scan=False, trajectory_impl='chunked', remat='tied'))
  # The largest per-chip batch with the lean setting, per HBM size (16, 32, 96 GiB).
  for topology in ('v5e:4x4', 'v6e:4x4', 'v5p:2x4x4'):
    for model in MODELS:
      out.append(case('max', model, topology, batch='max', **LEAN))
  # The other rented slices at the paper's batch, the lean setting.
  for topology in ('v4:2x2x4', 'v5e:16x16'):
    for model in MODELS:
      out.append(case('slices', model, topology, **LEAN))
  # FSDP: what it saves and what its collectives cost, 16 vs 256 chips.
  for topology in ('v5e:4x4', 'v5e:16x16'):
    for model in ('B', 'HR'):
      out.append(case('fsdp', model, topology, fsdp=True, **LEAN))
  return out


def load():
  if os.path.exists(JSON):
    with open(JSON) as f:
      return json.load(f)
  return {'note': "XLA:TPU's memory analysis of programs compiled (not run) on this machine "
                  'for abstract TPU slices (python -m mformer_jax.plan)', 'runs': []}


def run_case(c, python):
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'plan.json')
    cmd = [python, '-m', 'mformer_jax.plan', *c['args'], f'--out={out}']
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', TF_ENABLE_ONEDNN_OPTS='0')
    load_before, t0 = os.getloadavg()[0], time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    plan = json.load(open(out)) if os.path.exists(out) else None
  error = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  if plan is None:
    print(proc.stderr[-3000:], file=sys.stderr)
  return {**c, 'command': 'python -m mformer_jax.plan ' + ' '.join(c['args']),
          'exit_status': proc.returncode, 'error': error[0] if error else None,
          'wall_s': round(wall, 1), 'load_avg_1m_before': load_before, 'plan': plan}


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--groups', default='grid,scan,max,slices,fsdp')
  p.add_argument('--only', default='')
  p.add_argument('--render', action='store_true')
  p.add_argument('--python', default=sys.executable)
  a = p.parse_args()
  data = load()
  if not a.render:
    data.setdefault('machine', common.machine())
    done = {r['command'] for r in data['runs']}
    for c in cases():
      command = 'python -m mformer_jax.plan ' + ' '.join(c['args'])
      if c['group'] not in a.groups.split(',') or a.only not in command or command in done:
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
  from benchmarks import tpu_plan_report  # pylint: disable=g-import-not-at-top
  with open(MD, 'w') as f:
    f.write(tpu_plan_report.render(data))


if __name__ == '__main__':
  main()

"""benchmarks/results/tpu-compile/plan.md from plan.json next to it (written by
benchmarks/tpu_plan.py).

    python benchmarks/tpu_plan.py --render
"""
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mformer_jax.plan.report import needed_bytes  # noqa: E402

_BEFORE_CODE = 'd1a725d'  # the runs recorded before tpu_plan.py stored the commit
GROUPS = {
    'grid': 'Which `trajectory_impl` and `remat`: the paper\'s batch per chip on v5e-16',
    'scan': '`scan_blocks` and `remat=tied` (unrolled blocks), same slice and batch',
    'max': 'The largest batch per chip that fits (lean setting: chunked, remat=full)',
    'slices': 'The other slices at the paper\'s batch (lean setting)',
    'fsdp': 'FSDP (`mesh.fsdp=True`): what it saves, what its collectives move (per chip, step)',
    'fsdp_pinned': None,  # in the FSDP table
}


def _gib(n):
  return '' if n is None else f'{n / 2**30:.2f}'


def _setting(p):
  s = p['setting']
  return (f"{s['trajectory_impl']}, remat={s['remat']}"
          + ('' if s['scan_blocks'] else ', unrolled') + (', fsdp' if s['fsdp'] else ''))


def _row(r):
  p = r['plan']
  mem = p['per_chip_bytes']
  fits = 'yes' if p['fits'] else 'no'
  if not mem:
    fits += ' (compiler: out of HBM)'
  return [r['model'], f"{p['topology']} ({p['chips']})", _setting(p), str(p['batch_per_chip']),
          _gib(needed_bytes(p)), _gib(mem and mem['arguments']), _gib(mem and mem['temporaries']),
          _gib(p['hbm_bytes_per_chip']), fits, f"{p['compile_seconds']:.0f}"]


_HEAD = ['model', 'slice (chips)', 'setting', 'clips/chip', 'GiB/chip needed', 'arguments',
         'temporaries', 'HBM GiB', 'fits', 'compile s']


def _pinned(r):
  code = r.get('code', _BEFORE_CODE)
  return f"{'pinned' if r['group'] == 'fsdp_pinned' else 'not pinned'} ({code})" if r['plan'][
      'setting']['fsdp'] else f'data parallel ({code})'


def _table(head, rows):
  out = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
  return out + ['| ' + ' | '.join(r) + ' |' for r in rows]


def _collective_row(r):
  p = r['plan']
  c = p['collectives'] or {}
  cell = lambda k: (f"{c[k]['count']} / {_gib(c[k]['bytes'])}" if k in c else '')
  return [r['model'], f"{p['topology']} ({p['chips']})", _setting(p), str(p['batch_per_chip']),
          _gib(needed_bytes(p)), cell('all-gather'), cell('reduce-scatter'), cell('all-reduce'),
          cell('all-to-all'), f"{p['model_tflops_per_step']:.1f}"]


def render(data: dict) -> str:
  runs = data['runs']
  m = data.get('machine', {})
  versions = next((r['plan']['versions'] for r in runs), {})
  lines = [
      '# TPU plans: the training step compiled for Cloud TPU slices, on a CPU',
      '',
      "Generated from `plan.json` (next to this file) by `python benchmarks/tpu_plan.py --render` "
      '(or `python benchmarks/report.py`); do not edit. Recorded with '
      '`python benchmarks/tpu_plan.py` (each row is one `python -m mformer_jax.plan` command, '
      'listed below). **These are XLA:TPU\'s memory figures for programs that were '
      'compiled, not run**: no TPU was used. "GiB/chip needed" is arguments + temporaries + '
      'outputs - aliased from `memory_analysis()`, or, where the compiler refused the program '
      "for lack of HBM, the total it stated; \"HBM GiB\" is the limit the compiler itself "
      'applies on that chip.',
      '',
      f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores (shared with other jobs: "
      f"compile times are wall-clock under that load), started {m.get('date', '?')}. "
      f"jax {versions.get('jax', '?')}, jaxlib {versions.get('jaxlib', '?')}, libtpu "
      f"{versions.get('libtpu', '?')}. Models: B = `k400_motionformer_224_16x4` (1568 tokens), "
      'L = `k400_motionformer_224_32x3` (3136), HR = `k400_motionformer_336_16x8` (3528); '
      'bfloat16 compute, float32 parameters and AdamW state, `scan_blocks=True` unless marked '
      '"unrolled".',
      '']
  by_group = collections.defaultdict(list)
  for r in runs:
    by_group[r['group']].append(r)
  for group, title in GROUPS.items():
    if not by_group[group] or title is None:
      continue
    lines += [f'## {title}', '']
    if group == 'fsdp':
      models = {x['model'] for x in by_group['fsdp']}
      lean = lambda r: (r['plan']['setting']['trajectory_impl'], r['plan']['setting']['remat']) == (
          'chunked', 'full')
      rows = [[*_collective_row(r), _pinned(r)] for r in runs
              if r['group'] in ('fsdp', 'fsdp_pinned')
              or (r['group'] == 'grid' and r['model'] in models and lean(r))]
      rows.sort(key=lambda x: (x[0], x[1], x[2], x[-1]))
      lines += _table(['model', 'slice (chips)', 'setting', 'clips/chip', 'GiB/chip needed',
                       'all-gather n / GiB', 'reduce-scatter n / GiB', 'all-reduce n / GiB',
                       'all-to-all n / GiB', 'model TFLOP/step', 'activations (code)'], rows)
      lines += ['', 'Collectives per step and chip, from the compiled HLO (loop bodies times '
                'their trip counts; bytes = the whole buffer each collective works on). '
                '"not pinned": compiled before `sharding.split_batch` kept the activations '
                'split like the batch; "pinned": after (data parallelism compiles to the same '
                'program either way).']
    else:
      lines += _table(_HEAD, [_row(r) for r in by_group[group]])
      if group == 'max':
        lines += ['', 'Probes (clips per chip, + fits, - does not): ' + '; '.join(
            f"{r['model']} {r['plan']['topology']}: " + ' '.join(
                f"{p['batch_per_chip']}{'+' if p['fits'] else '-'}" for p in r['plan']['search'])
            for r in by_group[group])]
    lines.append('')
  lines += ['## Commands', '', 'Each prefixed with `.venv/bin/python` (`nice -n 10`), in the '
            'repository root; wall seconds include start-up.', '', '```']
  lines += [f"{r['command']}   # exit {r['exit_status']}, {r['wall_s']:.0f} s" for r in runs]
  lines += ['```', '']
  return '\n'.join(lines)

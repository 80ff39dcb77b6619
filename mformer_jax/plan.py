r"""Compile the real training (or evaluation) step for a Cloud TPU slice on any machine, and say
whether it fits in the chips' memory, before the pod is created.

  python -m mformer_jax.plan --config=configs/released.py:k400_motionformer_336_16x8 \
      --topology=v5e:4x4 [--batch_per_chip=4 | --batch_per_chip=max | --global_batch=64] \
      [--mode=train|eval] [--out=plan.json] [--config.model.remat=full ...]
  python -m mformer_jax.plan --config=... --accelerator=v5litepod-16   (gcloud's name)

libtpu's compiler runs on this machine against the abstract devices of the slice
(`jax.experimental.topologies`), with the trainer's own state, shardings and step
(`train.make_train_step`; eval: `evaluator.eval_step`). The figures are the compiler's memory
analysis of a program that was compiled, not run. Exit status 2 with one `error:` line when
the plan does not fit (by how much, what to try), for a bad topology or batch, or without libtpu.

libtpu lives outside site-packages (.venv/libtpu, requirements-tpu.txt): where `import libtpu`
works, every `import jax` on a machine without a TPU loads it, prints its metadata warnings
and contends for /tmp/libtpu_lockfile. Only this module points jax at it.
"""
import contextlib
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import sys
import time

from absl import app, flags
from ml_collections import config_flags

from mformer_jax import errors
from mformer_jax.errors import UserError


def _define_flags():
  """Defined only when run as a command: importing this module (tests, benchmarks) must not
  claim absl's --config, which mformer_jax.main defines too."""
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
  flags.DEFINE_string('topology', None, 'TPU slice, e.g. v5e:4x4, v4:2x2x4, v5p:2x4x4.')
  flags.DEFINE_string('accelerator', None,
                      "gcloud's accelerator type instead, e.g. v5litepod-16, v4-32.")
  flags.DEFINE_string('batch_per_chip', None,
                      "Clips (eval: views) per chip, or 'max' for the largest that fits; default "
                      "the paper's (train.batch_size / config_lib.PAPER_DEVICES).")
  flags.DEFINE_string('global_batch', None,
                      "Global batch instead (a multiple of the chips), or 'config': the config's "
                      'train.batch_size (eval: eval.batch_size), what a run would use.')
  flags.DEFINE_enum('mode', None, ['train', 'eval'],
                    "The training or evaluation step; default: eval if config.mode is 'eval'.")
  flags.DEFINE_string('out', None, 'Write the plan as JSON here.')
  flags.mark_flags_as_required(['config'])


# gcloud accelerator type -> (topology prefix, slice dims, TensorCores counted per chip).
_FAMILIES = {'v4': ('v4', 3, 2), 'v5p': ('v5p', 3, 2), 'v5litepod': ('v5e', 2, 1),
             'v5e': ('v5e', 2, 1), 'v6e': ('v6e', 2, 1)}
_COLLECTIVES = ('all-gather', 'reduce-scatter', 'all-reduce', 'all-to-all')
_SEARCH_CAP = 1024  # --batch_per_chip=max stops doubling here


class PlanError(UserError, ValueError):
  """Bad input or a plan that does not fit: one line for the user, exit status 2."""


# ----------------------------------------------------------------------------------------------
# libtpu and the slice
# ----------------------------------------------------------------------------------------------
def libtpu_path():
  """libtpu.so: $TPU_LIBRARY_PATH, an importable libtpu (a TPU VM's jax[tpu]), or the copy in
  .venv/libtpu that launch/setup_env.sh installs; None when there is none."""
  if given := os.environ.get('TPU_LIBRARY_PATH'):
    return given if os.path.isfile(given) else None
  spec = importlib.util.find_spec('libtpu')
  candidates = [os.path.join(os.path.dirname(spec.origin), 'libtpu.so')] if spec else []
  candidates.append(os.path.join(sys.prefix, 'libtpu', 'libtpu', 'libtpu.so'))
  return next((c for c in candidates if os.path.isfile(c)), None)


def libtpu_version(path: str) -> str:
  site = os.path.dirname(os.path.dirname(path))
  for dist in importlib.metadata.distributions(path=[site]):
    if dist.metadata['Name'] == 'libtpu':
      return dist.version
  return 'unknown'


def use_libtpu() -> str:
  """Points jax at libtpu for topologies only; this process computes nothing on a TPU. Call
  before jax initialises its backends."""
  path = libtpu_path()
  if path is None:
    raise PlanError('libtpu is not installed, and compiling for TPU needs it: '
                    'bash launch/setup_env.sh installs it (requirements-tpu.txt), or '
                    '.venv/bin/pip install --target .venv/libtpu -r requirements-tpu.txt')
  os.environ['TPU_LIBRARY_PATH'] = path
  # libtpu takes /tmp/libtpu_lockfile for the chips it would drive; a compile-only process
  # drives none, so concurrent plans (and a training job on a TPU VM) need not exclude each other.
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_platforms', 'cpu')  # host work stays on the CPU; never open a TPU
  return path


def accelerator_topology(accelerator: str) -> str:
  """gcloud's accelerator type -> topology string: v5litepod-16 -> v5e:4x4, v4-32 -> v4:2x2x4
  (v4/v5p count TensorCores, two per chip), v5p-64 -> v5p:2x4x4, v6e-256 -> v6e:16x16."""
  m = re.fullmatch(r'(v4|v5p|v5litepod|v5e|v6e)-(\d+)', accelerator)
  if not m:
    raise PlanError(f'unknown accelerator type {accelerator!r}; expected e.g. v5litepod-16, '
                    f'v4-32, v5p-64, v6e-16 (or give --topology)')
  prefix, ndim, cores = _FAMILIES[m.group(1)]
  chips = int(m.group(2)) // cores
  # Slices grow by doubling one side, the last of the shortest: 2x2x1 (one host) -> 2x2x2 ->
  # 2x2x4 -> 2x4x4 -> 4x4x4; 1x1 -> 1x2 -> 2x2 -> 2x4 -> 4x4 -> ... -> 16x16.
  dims = [2, 2, 1] if ndim == 3 else [1, 1]
  while math.prod(dims) < chips:
    i = max(j for j, d in enumerate(dims) if d == min(dims))
    dims[i] *= 2
  if math.prod(dims) != chips or int(m.group(2)) % cores:
    raise PlanError(f'accelerator {accelerator!r}: {chips} chips is not a slice shape this '
                    'tool knows; give --topology=PREFIX:AxB[xC] instead')
  return f"{prefix}:{'x'.join(map(str, dims))}"


@contextlib.contextmanager
def _quiet_fd2():
  """libtpu prints TPU-metadata warnings straight to fd 2 when it loads off a TPU VM; they say
  nothing about an abstract slice (a real failure is an exception, reported on its own)."""
  sys.stderr.flush()
  saved = os.dup(2)
  with open(os.devnull, 'w') as null:
    os.dup2(null.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def topology_devices(name: str):
  """The abstract devices of a slice, ordered by id as jax.devices() orders them on the pod."""
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  # v4 defaults to one device per TensorCore; on the pod jax shows megacore chips.
  kwargs = {'chip_config_name': 'megacore'} if name.startswith('v4') else {}
  try:
    with _quiet_fd2():
      topo = topologies.get_topology_desc(topology_name=name, platform='tpu', **kwargs)
  except Exception as e:  # libtpu says why in its own words (bad name, bad shape)
    raise PlanError(f'unknown TPU topology {name!r} ({str(e).splitlines()[0]}); expected e.g. '
                    'v5e:4x4, v5e:16x16, v4:2x2x4, v5p:2x4x4, v6e:4x4') from None
  return sorted(topo.devices, key=lambda d: d.id)


# ----------------------------------------------------------------------------------------------
# What the compiled program says
# ----------------------------------------------------------------------------------------------
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


def collectives(hlo: str) -> dict:
  """{kind: {'count', 'bytes'}} per step from the compiled HLO: every all-gather,
  reduce-scatter, all-reduce and all-to-all (sync or async -start), times the trip counts of the
  loops around it (a scan's body appears once in the text but runs depth times). Bytes: the
  whole per-chip buffer each works on (the gathered result, the reduced or exchanged operand;
  a combined op sums its tuple). 'unknown_loops' counts loops whose trip count was not read
  (their collectives are counted once)."""
  comps, order, entry = _parse_hlo(hlo)
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


def model_tflops_per_step(config, global_batch: int, mode: str) -> float:
  """The paper's count (flops.reference_macs, 2 FLOPs per MAC), x3 for forward + backward;
  not XLA's cost analysis, which counts a while loop's body once."""
  from mformer_jax.model import flops  # pylint: disable=g-import-not-at-top
  passes = 3 if mode == 'train' else 1
  return flops.reference_macs(config.model) * 2 * passes * global_batch / 1e12


# ----------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------
def compile_step(config, devices, global_batch: int, mode: str):
  """(compiled, seconds): the trainer's step (or the evaluator's) lowered with abstract inputs
  on `devices` and compiled by libtpu."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mformer_jax import train  # pylint: disable=g-import-not-at-top
  from mformer_jax.eval import evaluator  # pylint: disable=g-import-not-at-top
  from mformer_jax.run import sharding  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import make_model  # pylint: disable=g-import-not-at-top

  mesh = sharding.make_mesh(devices)
  model = make_model(config.model)
  c = model.cfg
  # The schedule's length only moves its boundaries (constants of the program), not memory.
  step_fn, _, abstract, state_sh = train.make_train_step(config, model, mesh, steps_per_epoch=1)
  rows = sharding.batch_sharded(mesh)
  batch = {'clip': jax.ShapeDtypeStruct((global_batch, c.num_frames, c.img_size, c.img_size, 3),
                                        jnp.float32, sharding=rows)}
  batch.update({h: jax.ShapeDtypeStruct((global_batch,), jnp.int32, sharding=rows)
                for h in c.heads})
  with_sh = lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s)
  t0 = time.perf_counter()
  if mode == 'train':
    lowered = step_fn.lower(jax.tree.map(with_sh, abstract, state_sh), batch)
  else:  # the evaluator's batch: views, labels, video index and padding mask
    batch['video_index'] = jax.ShapeDtypeStruct((global_batch,), jnp.int32, sharding=rows)
    batch['mask'] = jax.ShapeDtypeStruct((global_batch,), jnp.bool_, sharding=rows)
    params = jax.tree.map(with_sh, abstract['params'], state_sh['params'])
    lowered = evaluator.eval_step(model, mesh).lower(
        params, batch, jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding.replicated(mesh)))
  compiled = lowered.compile()
  return compiled, time.perf_counter() - t0


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


def hbm_bytes(device):
  """The HBM one program may use on `device`, in XLA:TPU's own words: the abstract devices do
  not expose their memory, so a 1 TiB probe is compiled (instantly) and the limit read from
  the compiler's refusal. A little below the nominal size (v5e: 15.75 of 16 GiB); None if the
  probe fits."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  probe = jax.ShapeDtypeStruct((2**38,), jnp.float32,
                               sharding=jax.sharding.SingleDeviceSharding(device))
  try:
    jax.jit(lambda x: x + 1).lower(probe).compile()
  except jax.errors.JaxRuntimeError as e:
    oom = compile_time_oom(str(e))
    return oom and oom['available_bytes']
  return None


def plan(config, topology: str, batch_per_chip: int, mode: str = 'train', devices=None) -> dict:
  """Compile one setting and report it (the JSON the CLI writes). A program the compiler
  refuses for lack of HBM is a plan that does not fit: per_chip_bytes None, compiler_oom set."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = devices or topology_devices(topology)
  chips, kind = len(devices), devices[0].device_kind
  hbm = hbm_bytes(devices[0])
  t0 = time.perf_counter()
  try:
    compiled, seconds = compile_step(config, devices, batch_per_chip * chips, mode)
    mem, oom, coll = per_chip_bytes(compiled), None, collectives(compiled.as_text())
  except jax.errors.JaxRuntimeError as e:
    if (oom := compile_time_oom(str(e))) is None:
      raise
    mem, coll, seconds = None, None, time.perf_counter() - t0
  m = config.model
  return {
      'topology': topology, 'chips': chips, 'device_kind': kind, 'hbm_bytes_per_chip': hbm,
      'mode': mode, 'experiment': config.experiment, 'batch_per_chip': batch_per_chip,
      'global_batch': batch_per_chip * chips,
      'setting': {'trajectory_impl': _trajectory_kernel(m), 'remat': m.remat,
                  'scan_blocks': m.scan_blocks, 'dtype': m.dtype, 'fsdp': config.mesh.fsdp,
                  'fused_update': config.train.fused_update},
      'per_chip_bytes': mem, 'compiler_oom': oom,
      'fits': mem is not None and hbm is not None and mem['total'] <= hbm,
      'model_tflops_per_step': model_tflops_per_step(config, batch_per_chip * chips, mode),
      'collectives': coll, 'compile_seconds': round(seconds, 1),
      'versions': {'jax': jax.__version__, 'jaxlib': importlib.metadata.version('jaxlib'),
                   'libtpu': libtpu_version(os.environ['TPU_LIBRARY_PATH'])},
      'note': "the compiler's memory analysis of a program that was compiled, not run",
  }


def needed_bytes(p: dict):
  """Per-chip bytes of a probe: the memory analysis, or the compiler's figure when it refused."""
  if p['per_chip_bytes']:
    return p['per_chip_bytes']['total']
  return p['compiler_oom']['required_bytes']


def search_max(config, topology: str, mode: str = 'train', devices=None) -> dict:
  """The largest per-chip batch that fits: doubling from 1, then bisection of the bracket; each
  probe a compile. Memory grows about linearly with the batch, so a step goes to where the line
  through two probes meets the HBM instead when that is further (doubling: just past it) or
  inside the bracket (bisection: once, then its neighbour, then halves), which saves most
  probes. Returns the plan at that batch (at 1 when nothing fits), every probe under 'search'."""
  devices = devices or topology_devices(topology)
  done, lo, hi = {}, None, None

  def line_guess(a, b):  # the largest batch the line through probes a and b keeps in HBM
    (ba, na), (bb, nb) = (a, needed_bytes(done[a])), (b, needed_bytes(done[b]))
    hbm = done[b]['hbm_bytes_per_chip']
    if None in (na, nb, hbm) or nb <= na:
      return None
    return int(ba + (hbm - na) * (bb - ba) / (nb - na))

  b, steps = 1, 0
  while b not in done:
    done[b], last = plan(config, topology, b, mode, devices), b
    if done[b]['fits']:
      lo = b
    else:
      hi = b
    probed = sorted(done)
    guess = line_guess(*probed[-2:]) if len(probed) > 1 else None
    if hi is None:   # doubling, or just past where the line says the limit is
      b = guess + 1 if guess is not None and guess + 1 > lo else 2 * lo
      b = min(b, _SEARCH_CAP) if lo < _SEARCH_CAP else lo
    elif lo is None:  # even 1 does not fit
      b = 1
    elif hi - lo > 1:  # bisection; first where the line says, then its neighbour, then halves
      guess, steps = line_guess(lo, hi), steps + 1
      b = (lo + hi) // 2
      if steps == 1 and guess is not None and lo < guess < hi:
        b = guess
      elif steps == 2:
        b = b if last not in (lo, hi) else (last + 1 if last == lo else last - 1)
    else:
      b = lo
  best = done[lo] if lo is not None else done[1]
  probes = [{'batch_per_chip': k, 'bytes': needed_bytes(v), 'fits': v['fits'],
             'compile_seconds': v['compile_seconds']} for k, v in done.items()]
  return {**best, 'search': probes}


def _size(n: int) -> str:
  return f'{n / 2**30:.2f} GiB' if abs(n) >= 2**28 else f'{n / 2**20:.1f} MiB'


def _trajectory_kernel(model_config) -> str:
  """The kernel that runs ('auto' resolved by ModelConfig.trajectory_kernel, its one rule)."""
  from mformer_jax.model import ModelConfig  # pylint: disable=g-import-not-at-top
  return ModelConfig.from_config(model_config).trajectory_kernel


def advice(result: dict, config) -> str:
  """Why it does not fit and what to try, in one line."""
  mem, oom, gib = result['per_chip_bytes'], result['compiler_oom'], _size
  tries = []
  m = config.model
  if m.remat != 'full':
    tries.append('--config.model.remat=full')
  if m.attention == 'trajectory' and _trajectory_kernel(m) != 'chunked':
    tries.append('--config.model.trajectory_impl=chunked')
  if not config.mesh.fsdp:
    tries.append('--config.mesh.fsdp=True')
  if result['batch_per_chip'] > 1:
    tries.append(f"--batch_per_chip={result['batch_per_chip'] // 2} (or max)")
  tries = ', '.join(tries or ['a chip with more HBM'])
  kind = result['device_kind']
  if mem is None and oom['required_bytes']:
    need, have = oom['required_bytes'], oom['available_bytes']
    return (f'does not fit: the compiler needs {gib(need)} per chip, the {kind} has {gib(have)} '
            f'for it: short by {gib(need - have)}; try {tries}')
  if mem is None:
    return f"does not fit: the compiler ran out of HBM ({oom['message']}); try {tries}"
  hbm = result['hbm_bytes_per_chip']
  return (f"does not fit: {gib(mem['total'])} per chip needed, the {kind} has {gib(hbm)}: "
          f"short by {gib(mem['total'] - hbm)} (arguments {gib(mem['arguments'])}, temporaries "
          f"{gib(mem['temporaries'])}); try {tries}")


def table(result: dict) -> str:
  """The short summary the CLI prints."""
  mem, oom, s, gib = result['per_chip_bytes'], result['compiler_oom'], result['setting'], _size
  hbm = result['hbm_bytes_per_chip']
  rows = [
      ('slice', f"{result['topology']}: {result['chips']} x {result['device_kind']}, "
                f"{gib(hbm) if hbm else 'unknown'} HBM each"),
      ('step', f"{result['mode']}, {result['experiment']}, {result['batch_per_chip']} per chip "
               f"(global {result['global_batch']})"),
      ('setting', ', '.join(f'{k}={v}' for k, v in s.items())),
  ]
  if 'search' in result:
    rows.append(('search', ' '.join(f"{p['batch_per_chip']}{'+' if p['fits'] else '-'}"
                                    for p in result['search']) + '  (+ fits, - does not)'))
  if mem:
    coll = ', '.join(f"{k} {v['count']} x {gib(v['bytes'])}" for k, v in
                     result['collectives'].items() if isinstance(v, dict) and v['count'])
    rows += [
        ('per chip', f"{gib(mem['total'])} = arguments {gib(mem['arguments'])} + temporaries "
                     f"{gib(mem['temporaries'])} + outputs {gib(mem['outputs'])} - aliased "
                     f"{gib(mem['aliased'])}"),
        ('fits', f"{'yes' if result['fits'] else 'NO'} ({100 * mem['total'] / hbm:.0f} % of HBM)"
                 if hbm else 'unknown (no HBM size for this device kind)'),
        ('collectives', coll or 'none')]
  else:
    rows += [('per chip', f"compiler out of HBM: {oom['message']}"), ('fits', 'NO')]
  rows += [('model TFLOP/step', f"{result['model_tflops_per_step']:.4g} (flops.py's count)"),
           ('compile', f"{result['compile_seconds']:.1f} s (compiled, not run)")]
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'  {k:<{width}}  {v}' for k, v in rows)


def batch_per_chip(config, chips: int, mode: str, per_chip=None, global_batch=None):
  """--batch_per_chip / --global_batch -> clips per chip (or 'max'); default the paper's."""
  if global_batch is not None:
    if per_chip is not None:
      raise PlanError('give --batch_per_chip or --global_batch, not both')
    if global_batch == 'config':
      global_batch = (config.train if mode == 'train' else config.eval).batch_size
    elif not re.fullmatch(r'[1-9]\d*', global_batch):
      raise PlanError(f"--global_batch={global_batch!r}: a positive whole number or 'config'")
    if int(global_batch) % chips:
      raise PlanError(f'global batch {global_batch} does not divide over the {chips} chips; '
                      'give a multiple of the chip count')
    return int(global_batch) // chips
  if per_chip == 'max':
    return 'max'
  if per_chip is None:
    from mformer_jax import config_lib  # pylint: disable=g-import-not-at-top
    if config.train.batch_size % config_lib.PAPER_DEVICES:
      raise PlanError(f'train.batch_size={config.train.batch_size} is not a per-GPU batch of '
                      f"the paper's {config_lib.PAPER_DEVICES} GPUs; give --batch_per_chip")
    return config.train.batch_size // config_lib.PAPER_DEVICES
  if not re.fullmatch(r'[1-9]\d*', per_chip):
    raise PlanError(f"--batch_per_chip={per_chip!r}: a positive whole number or 'max'")
  return int(per_chip)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  try:
    if (f.topology is None) == (f.accelerator is None):
      raise PlanError('give one of --topology=v5e:4x4 or --accelerator=v5litepod-16')
    topology = f.topology or accelerator_topology(f.accelerator)
    use_libtpu()
    devices = topology_devices(topology)
    mode = f.mode or ('eval' if f.config.mode == 'eval' else 'train')
    batch = batch_per_chip(f.config, len(devices), mode, f.batch_per_chip, f.global_batch)
    from mformer_jax import config_lib  # pylint: disable=g-import-not-at-top
    config_lib.finalize(f.config)
    if batch == 'max':
      result = search_max(f.config, topology, mode, devices)
    else:
      result = plan(f.config, topology, batch, mode, devices)
    if f.out:
      with open(f.out, 'w') as out:
        json.dump(result, out, indent=1)
    print(table(result), flush=True)
    if not result['fits']:
      raise PlanError(advice(result, f.config) if result['hbm_bytes_per_chip'] else
                      f"the compiler states no HBM limit for {result['device_kind']!r}; cannot "
                      'say it fits')
  except UserError as e:
    errors.exit_with(e)


if __name__ == '__main__':
  _define_flags()
  app.run(main)

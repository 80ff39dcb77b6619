"""Shared helpers of the benchmark scripts: one subprocess per measurement, medians, machine,
and where a result file goes (`benchmarks/results/<machine class>/<benchmark>_<jax>.json`).

A measurement runs in a fresh interpreter (`run_worker`) so that its peak resident memory
(`ru_maxrss`) is its own; the worker prints one JSON line starting with RESULT.
No jax or torch import at module level: the official-PyTorch workers run in their own venv.
"""
import ctypes
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time

RESULT = 'RESULT '
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
RESULTS_DIR = os.path.join(ROOT, 'benchmarks', 'results')

# What a results file's name may add after its benchmark and stack
# (<benchmark>_<jax>[_<suffix>].json, --variant): how its runs differ from the benchmark's
# default file. The only suffixes there are; a new kind of file adds its word here.
SUFFIXES = {
    'float32': 'every run in float32',
    'bfloat16': 'every run in bfloat16 (ours: model.dtype; official: torch.autocast)',
    'impls': "our trajectory kernels against each other, without the official code",
    'chunked': 'the chunked kernel against the einsum reference only',
    'tied': 'remat=tied beside the other remat settings',
    'lhr': 'the L and HR sizes (the default file: B)',
    'concurrency_scheduler': "XLA:CPU's default concurrency-optimised scheduler",
    'eval': 'the eval forward only',
    'train': 'the training step only',
}
MEMORY_SCHEDULER = '--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED'


def apply_xla_flags(spec: dict) -> None:
  """Before importing jax in a worker: append spec['xla_flags'] to XLA_FLAGS."""
  if spec.get('xla_flags'):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + spec['xla_flags']).strip()


def release_compile_memory() -> None:
  """Returns the allocator's free pages to the OS (glibc keeps compilation's heap otherwise).

  Called once after compiling, as a trainer would; the step's own memory is unaffected.
  """
  try:
    ctypes.CDLL('libc.so.6').malloc_trim(0)
  except OSError:
    pass


# The ISA extensions that decide which matmul kernels the frameworks can use.
ISA_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'amx_tile', 'amx_bf16')


def gpus() -> list:
  """The names of this machine's NVIDIA GPUs (nvidia-smi; no framework is imported), or []."""
  try:
    out = subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'],
                         capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return []
  return [l.strip() for l in out.stdout.splitlines() if l.strip()] if not out.returncode else []


def machine() -> dict:
  """What a result was measured on: CPU model and ISA extensions, cores, memory, load, flags,
  and the GPUs where there are any."""
  cpu, flags = platform.processor(), set()
  try:
    with open('/proc/cpuinfo') as f:
      info = f.read().splitlines()
    cpu = next(l.split(':', 1)[1].strip() for l in info if l.startswith('model name'))
    flags = set(next(l.split(':', 1)[1] for l in info if l.startswith('flags')).split())
  except (OSError, StopIteration):
    pass
  with open('/proc/meminfo') as f:
    mem_kb = int(next(l.split()[1] for l in f if l.startswith('MemTotal')))
  stack = {}
  try:  # the installed version, without importing jax (workers import it after XLA_FLAGS)
    stack['jax'] = importlib.metadata.version('jax')
  except importlib.metadata.PackageNotFoundError:
    pass
  return {'cpu': cpu, 'isa': [f for f in ISA_FLAGS if f in flags], 'cores': os.cpu_count(),
          'mem_gib': round(mem_kb / 2**20, 1), 'python': platform.python_version(), **stack,
          'load_avg_1m': os.getloadavg()[0], 'xla_flags': os.environ.get('XLA_FLAGS', ''),
          'date': time.strftime('%Y-%m-%d %H:%M:%S'), **({'gpus': g} if (g := gpus()) else {})}


def machine_class(m: dict) -> str:
  """The results folder of a `machine()` record: CPU family and core count.

  XLA:CPU and PyTorch rank differently by ISA (AMX, AVX-512) and core count, so results are
  grouped, and compared, within a class only. On a GPU machine the GPU and their number decide
  (e.g. nvidia-h100-80gb-hbm3-x1).
  """
  if m.get('gpus'):
    return re.sub(r'[^a-z0-9]+', '-', m['gpus'][0].lower()).strip('-') + f"-x{len(m['gpus'])}"
  cpu, isa = m.get('cpu', ''), m.get('isa', [])
  if 'EPYC' in cpu:
    family = 'amd-epyc'
  elif 'Intel' in cpu:
    family = 'intel-spr' if 'amx_tile' in isa else 'intel-avx512' if 'avx512f' in isa else 'intel'
  else:
    family = re.sub(r'[^a-z0-9]+', '-', cpu.lower()).strip('-') or 'cpu-unrecorded'
  return f"{family}-{m.get('cores', 0)}core"


def results_path(benchmark: str, m: dict, suffix: str = '') -> str:
  """benchmarks/results/<class>/<benchmark>_jax<major><minor>[_<suffix>].json (the stack in the
  name; `suffix` one of SUFFIXES)."""
  if suffix and suffix not in SUFFIXES:
    raise ValueError(f'results suffix {suffix!r}; expected one of {sorted(SUFFIXES)}')
  tag = ''
  if m.get('jax'):
    major, minor = m['jax'].split('.')[:2]
    tag = f'_jax{major}{int(minor):02d}'
  return os.path.join(RESULTS_DIR, machine_class(m),
                      f'{benchmark}{tag}' + (f'_{suffix}' if suffix else '') + '.json')


def out_arg(ap, benchmark: str, flag: str = '--out') -> None:
  """The scripts' results flags: a path, '' for no file, or by default `results_path`; and
  --variant, the suffix of that default name."""
  ap.add_argument(flag, default=None,
                  help=f"results JSON ('' = none; default: benchmarks/results/<machine class>/"
                       f"{benchmark}_<jax>[_<variant>].json)")
  ap.add_argument('--variant', default='', choices=[''] + sorted(SUFFIXES),
                  help='what sets these runs apart, the suffix of the default file name: '
                       + '; '.join(f'{k}: {v}' for k, v in SUFFIXES.items()))


def command_line(argv=None) -> str:
  """How this script was run, as `-m benchmarks.<name> ARGS` (what follows `python`)."""
  argv = sys.argv if argv is None else argv
  name = os.path.splitext(os.path.basename(argv[0]))[0]
  return shlex.join(['-m', f'benchmarks.{name}', *argv[1:]])


def invocation(command: str) -> str:
  """A recorded `command` as it runs now (after `python`): files recorded as
  `benchmarks/<name>.py ARGS` ran as scripts, which is `-m benchmarks.<name> ARGS` today."""
  m = re.match(r'benchmarks/(\w+)\.py(?=\s|$)', command)
  return f'-m benchmarks.{m.group(1)}{command[m.end():]}' if m else command


def new_results(out, benchmark: str, suffix: str = ''):
  """(the results dict a script fills, the path it writes: `out` or its default)."""
  m = machine()
  results = {'machine': m, 'command': command_line(), 'runs': []}
  return results, results_path(benchmark, m, suffix) if out is None else out


def matmul_rates(official_python: str = '', repeats: int = 5) -> dict:
  """Both frameworks' 2048^2 matmul GFLOP/s (float32, bfloat16) on this machine, now: the scale
  a results file's times are read against (benchmarks/matmul.py measures more shapes)."""
  script = os.path.join(ROOT, 'benchmarks', 'matmul.py')
  spec = dict(repeats=repeats, shapes=['square2048'])
  todo = [('xla', sys.executable, dict(spec, impl='jax'))]
  if official_python:
    todo.append(('pytorch', official_python, dict(spec, impl='torch')))
  rates = {}
  for name, python, s in todo:
    r = run_worker(python, script, s, timeout=600)
    rates[name] = r.get('gflops', r.get('error'))
  return rates


def trainer_step(model, fused: bool = False):
  """(step, init, abstract state, batch sharding) of the trainer's own training step
  (`train.step.make_train_step`) for `model` on one device, at the K400 recipe (AdamW, label
  smoothing, metrics): `step(state, batch)` jitted with the trainer's shardings and donation,
  `init(key)` the jitted state. In a worker (jax is imported here, not by the drivers)."""
  import jax  # pylint: disable=g-import-not-at-top
  from mformer_jax import config_lib  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import init_variables  # pylint: disable=g-import-not-at-top
  from mformer_jax.run import sharding  # pylint: disable=g-import-not-at-top
  from mformer_jax.train.step import create_train_state, make_train_step  # pylint: disable=g-import-not-at-top
  config = config_lib.make_config('kinetics400')
  config.train.fused_update = fused
  mesh = sharding.make_mesh(jax.devices()[:1])
  step, tx, abstract, state_sh = make_train_step(config, model, mesh, steps_per_epoch=1000)
  init = jax.jit(lambda key: create_train_state(init_variables(model, key)['params'], tx, 0),
                 out_shardings=state_sh)
  return step, init, abstract, sharding.batch_sharded(mesh)


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def timed(fn, repeats: int, warmup: int = 1):
  """(wall seconds, process CPU seconds) per call of `fn` (which must block until done).

  CPU seconds (all threads of this process) are less sensitive than wall time to other users
  of a shared machine; both are recorded.
  """
  for _ in range(warmup):
    fn()
  wall, cpu = [], []
  for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
  return wall, cpu


def median(xs):
  return statistics.median(xs) if xs else float('nan')


def emit(result: dict) -> None:
  result.setdefault('peak_rss_mb', peak_rss_mb())
  print(RESULT + json.dumps(result), flush=True)


def run_worker(python: str, script: str, spec: dict, timeout: float = 1800) -> dict:
  """Runs `python -m benchmarks.<script's name> --worker=<spec json>` from the repository root
  and returns its RESULT dict (or the error)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT)
  module = 'benchmarks.' + os.path.splitext(os.path.basename(script))[0]
  t0 = time.time()
  try:
    proc = subprocess.run([python, '-m', module, '--worker=' + json.dumps(spec)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)
  except subprocess.TimeoutExpired:
    return {**spec, 'error': f'timeout after {timeout:.0f} s'}
  lines = [l for l in proc.stdout.splitlines() if l.startswith(RESULT)]
  if proc.returncode or not lines:
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**spec, 'error': f'rc={proc.returncode}: ' + ' | '.join(tail)}
  res = json.loads(lines[-1][len(RESULT):])
  res['wall_s'] = round(time.time() - t0, 1)
  return res


def run_and_record(python: str, script: str, spec: dict, results: dict, out: str) -> dict:
  """run_worker, append to results['runs'], print a summary line, rewrite `out` (if any)."""
  r = run_worker(python, script, spec)
  results['runs'].append(r)
  print(json.dumps({k: v for k, v in r.items() if k not in ('times_s', 'cpu_s')}), flush=True)
  write(results, out)
  return r


def write(results: dict, out: str) -> None:
  """Rewrites `out` (creating its machine-class folder); '' writes nothing."""
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w') as fh:
      json.dump(results, fh, indent=1)


def entry(main, jax_worker, torch_worker) -> None:
  """Script entry point: the driver, or one worker selected by --worker=JSON."""
  spec = parse_worker_arg()
  if spec is None:
    main()
  elif spec['impl'] == 'jax':
    apply_xla_flags(spec)
    jax_worker(spec)
  else:
    torch_worker(spec)


def parse_worker_arg(argv=None):
  """The spec dict if this process is a worker (--worker=JSON), else None."""
  for a in (sys.argv[1:] if argv is None else argv):
    if a.startswith('--worker='):
      return json.loads(a[len('--worker='):])
  return None

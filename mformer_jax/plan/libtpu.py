"""Finding libtpu and pointing a compile-only process at it.

libtpu lives outside site-packages (.venv/libtpu, requirements-tpu.txt): where `import libtpu`
works, every `import jax` on a machine without a TPU loads it, prints its metadata warnings
and contends for /tmp/libtpu_lockfile. Only `python -m mformer_jax.plan` points jax at it
(`environment`, before jax is imported).
"""
import contextlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys

from mformer_jax.errors import UserError

INSTALL = ('bash launch/setup_env.sh installs it (requirements-tpu.txt), or '
           '.venv/bin/pip install --target .venv/libtpu -r requirements-tpu.txt')


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


def environment():
  """Sets what a process that compiles for TPU but computes nothing there needs, and returns
  libtpu's path (None when there is none). Call before jax is imported: jax reads JAX_PLATFORMS
  then (host work stays on the CPU; no TPU is ever opened), and libtpu's path when it loads it."""
  os.environ['JAX_PLATFORMS'] = 'cpu'
  path = libtpu_path()
  if path is not None:
    os.environ['TPU_LIBRARY_PATH'] = path
    # libtpu takes /tmp/libtpu_lockfile for the chips it would drive; a compile-only process
    # drives none, so concurrent plans (and a training job on a TPU VM) need not exclude
    # each other.
    os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  return path


def require(path):
  """`path` (what `environment` returned), or the UserError saying how to install libtpu."""
  if path is None:
    raise UserError(f'libtpu is not installed, and compiling for TPU needs it: {INSTALL}')
  return path


# The child that filters fd 2: drops libtpu's complaints about the TPU VM metadata it cannot
# find off a TPU VM (they say nothing about an abstract slice) with the source trace under
# each, and passes every other line on at once.
_FILTER = r'''
import re, sys
noise = re.compile(rb'could not determine TPU|^WARNING: Logging before InitGoogle')
trace = re.compile(rb'^=== Source Location Trace: ===|^\S+:\d+\s*$')
skipping = False
for line in sys.stdin.buffer:
  skipping = bool(noise.search(line)) or (skipping and bool(trace.match(line)))
  if not skipping:
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
'''


@contextlib.contextmanager
def filtered_stderr():
  """fd 2 goes through a child process that drops libtpu's metadata warnings (`_FILTER`). A
  child, not /dev/null or a thread: a call into libtpu can kill this process with a signal,
  and what it writes on the way out (its stack trace) must still reach the terminal; the child
  outlives it and passes on everything up to the end of the pipe."""
  sys.stderr.flush()
  saved = os.dup(2)
  read, write = os.pipe()
  try:
    child = subprocess.Popen([sys.executable, '-S', '-c', _FILTER], stdin=read, stdout=saved)
  except BaseException:
    os.close(write)
    os.close(saved)
    raise
  finally:
    os.close(read)
  os.dup2(write, 2)
  os.close(write)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)  # the pipe's last writer is gone: the child reads to its end and exits
    os.close(saved)
    child.wait()

"""A run's own checkpoints: the orbax CheckpointManager, verified saves and restores, fallback
and quarantine. (Loading weights from anywhere, workdirs included, is `mformer_jax.weights`.)

Layout: WORKDIR/checkpoints/<step>/{params, train, meta}. `train` holds the optimizer state, the
step and the base RNG key; the data position is the step itself (the input pipeline restarts at
`start_step`). Converted weights (`save_params`) are step 0 with `params` and `meta` alone
({'params_only': True}; a trainer refuses to resume them). Orbax writes each step into a
temporary folder and renames it when complete, so a kill -9 at any moment leaves the previous
checkpoints intact; the half-written folder is removed when the next run opens the manager.

Verification: `meta` records every saved array's shape, dtype and a checksum (computed on the
devices, so it costs one pass over the state and works for sharded arrays alike). Every restore
recomputes them and refuses parameters that are not finite; a step that cannot be read or fails
either check raises `CorruptCheckpointError`, and `restore_newest` then falls back to the newest
step that passes (or, strict, stops naming the readable ones). A trainer moves a broken step to
WORKDIR/broken_checkpoints/ (kept for inspection, never deleted; outside the manager, so it is
neither resumed from, nor re-saved over, nor counted as best).
"""
import contextlib
import gc
import logging as std_logging
import os
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from mformer_jax.errors import CorruptCheckpointError, InputError
from mformer_jax.model import layout
from mformer_jax.run import workdir as workdir_lib

BROKEN = 'broken_checkpoints'  # WORKDIR/broken_checkpoints/<step>: steps that failed to restore


def manager(workdir: str, ck=None, *, read_only: bool = False) -> ocp.CheckpointManager:
  """Keeps the latest `ck.keep` checkpoints plus the `ck.keep_best` best by `ck.best_metric`."""
  keep = [policies.LatestN(n=ck.keep if ck else 1)]
  if ck and ck.keep_best > 0:
    keep.append(policies.BestN(get_metric_fn=lambda m: m[ck.best_metric], n=ck.keep_best,
                               keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policies.AnyPreservationPolicy(keep), read_only=read_only,
      cleanup_tmp_directories=not read_only, create=not read_only)
  # Handlers named up front, so that reading only some items (params) is a normal restore.
  handlers = {'params': ocp.StandardCheckpointHandler(), 'train': ocp.StandardCheckpointHandler(),
              'meta': ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(workdir_lib.path(workdir) / 'checkpoints', options=options,
                               item_handlers=handlers)


# ----------------------------------------------------------------------------------------------
# Checksums: computed under jit from the arrays' bits, so sharded arrays (FSDP, several hosts)
# give the same number as one host copy, and nothing is gathered.
# ----------------------------------------------------------------------------------------------
def _name(key_path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
                  for k in key_path)


def _words(x):
  """The bits of an array as flat uint32 words, whatever its dtype."""
  if x.dtype == jnp.bool_:
    return x.reshape(-1).astype(jnp.uint32)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
  return jax.lax.bitcast_convert_type(x, unsigned).reshape(-1).astype(jnp.uint32)


def _checksum(x):
  # Each word goes through a bijection that depends on its position (odd multipliers, an
  # xorshift), and the results add up modulo 2**32: exact and order-free, so any one changed
  # word always changes the sum, and the sharding or reduction order never does.
  w = _words(x)
  h = w * jnp.uint32(0x9E3779B1)
  h = h ^ (h >> 15)
  return jnp.sum(h * (2 * jnp.arange(w.size, dtype=jnp.uint32) + 1), dtype=jnp.uint32)


@jax.jit
def _inspect(tree):
  """(checksums, all-finite flags), one per leaf."""
  finite = lambda x: (jnp.isfinite(x).all() if jnp.issubdtype(x.dtype, jnp.inexact)
                      else jnp.bool_(True))
  return jax.tree.map(_checksum, tree), jax.tree.map(finite, tree)


def _flat(tree):
  return [(_name(kp), x) for kp, x in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _record(tree) -> dict:
  """{name: [shape, dtype, checksum]} of every array in `tree` (what `meta` stores)."""
  sums = jax.tree.leaves(jax.device_get(_inspect(tree)[0]))
  return {n: [list(x.shape), str(x.dtype), int(s)] for (n, x), s in zip(_flat(tree), sums)}


def where(mngr, step) -> str:
  """How messages name a step: 'checkpoint step 8 in WORKDIR/checkpoints'."""
  return f'checkpoint step {step} in {mngr.directory}'


def _first_line(e: BaseException, limit: int = 300) -> str:
  text = str(e).strip().splitlines()
  line = f'{type(e).__name__}: {text[0] if text else ""}'
  return line if len(line) <= limit else line[:limit] + ' ...'


def _verify(mngr, step, item: str, tree, recorded) -> None:
  """CorruptCheckpointError unless every restored array matches its checksum and is finite."""
  sums, finite = (jax.tree.leaves(t) for t in jax.device_get(_inspect(tree)))
  names = [n for n, _ in _flat(tree)]
  bad = [n for n, s in zip(names, sums) if int(s) != recorded[n][2]]
  if bad:
    raise CorruptCheckpointError(
        f'{where(mngr, step)} is corrupt: {len(bad)} {item} array(s) fail their checksum '
        f'({", ".join(bad[:3])}{" ..." if len(bad) > 3 else ""})')
  nonfinite = [n for n, f in zip(names, finite) if not f]
  if nonfinite:
    raise CorruptCheckpointError(
        f'{where(mngr, step)} holds non-finite values in {len(nonfinite)} {item} array(s) '
        f'({", ".join(nonfinite[:3])}{" ..." if len(nonfinite) > 3 else ""})')


# ----------------------------------------------------------------------------------------------
# Orbax's noise, muted by the commands (quiet_orbax)
# ----------------------------------------------------------------------------------------------
def _abandoned(unraisable) -> bool:
  """An error of the work orbax abandons when one array of a restore or save fails: the
  coroutines left behind and their callbacks into the closed event loop (hundreds of tracebacks
  otherwise, some at interpreter exit)."""
  code = getattr(unraisable.object, 'cr_code', None)  # an abandoned coroutine's
  return (_loop_closed(unraisable.exc_value)
          or 'orbax' in str(getattr(code, 'co_filename', '')))


def _loop_closed(value) -> bool:
  return isinstance(value, RuntimeError) and str(value) == 'Event loop is closed'


def _orbax_log(record) -> bool:
  """Orbax logs every file it writes at INFO; keep its warnings and our own progress. Its errors
  stay, as one line each: the tracebacks it logs from its threads (a full disk: dozens) are
  those of the exception that reaches us, which is reported or raised once."""
  if f'{os.sep}orbax{os.sep}' not in record.pathname:
    return True
  record.exc_info = record.exc_text = None
  return record.levelno >= logging.converter.STANDARD_WARNING


def quiet_orbax() -> None:
  """What a command calls once, at its start, to keep orbax's noise out of its output: the
  per-file INFO log (`_orbax_log`), and the echoes of a failed restore or save.

  When one array of a restore or save fails, orbax abandons the others, and they report as
  they are collected or call back into its closed event loop, from TensorStore's threads, up to
  interpreter exit: as unraisable errors, through sys.excepthook, and (a full disk) as asyncio's
  'Task exception was never retrieved'. The failure itself is raised once, in the main thread
  (CorruptCheckpointError, InputError, or its own traceback); these echoes are dropped, and
  nothing else. Process-wide hooks, hence not installed by a library call (a manager); calling
  it again changes nothing."""
  absl_log = logging.get_absl_logger()
  if _orbax_log not in absl_log.filters:
    absl_log.addFilter(_orbax_log)
  for name, drop in (('unraisablehook', lambda u: _abandoned(u)),
                     ('excepthook', lambda t, v, tb: _loop_closed(v))):
    previous = getattr(sys, name)
    if not getattr(previous, 'mformer_abandoned', False):
      hook = lambda *a, previous=previous, drop=drop: None if drop(*a) else previous(*a)
      hook.mformer_abandoned = True
      setattr(sys, name, hook)
  asyncio_log = std_logging.getLogger('asyncio')
  if not any(getattr(f, 'mformer_abandoned', False) for f in asyncio_log.filters):
    keep = lambda r: not (r.exc_info and workdir_lib.is_full(r.exc_info[1]))
    keep.mformer_abandoned = True
    asyncio_log.addFilter(keep)


# ----------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _storage_errors(mngr):
  """A full disk while writing is the environment's fault: one line naming the intact steps."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    if not workdir_lib.is_full(e):
      raise
    mngr.reload()  # the steps on disk, not those orbax thinks it has
    intact = ', '.join(map(str, mngr.all_steps())) or 'none'
    raise InputError(
        f'the disk is full: a checkpoint could not be written to {mngr.directory} '
        f'({_first_line(e, 160)}). The checkpoints before it are intact (steps {intact}); '
        'free space and run the same command to continue') from e


def save(mngr, state, meta: dict, metrics=None) -> None:
  """Async save of the train state (all hosts call it; orbax coordinates who writes), with
  every array's checksum in `meta`. A state of params alone writes no `train` item."""
  rest = {k: v for k, v in state.items() if k != 'params'}
  items = {'params': state['params'], **({'train': rest} if rest else {})}
  meta = {**meta, 'arrays': {k: _record(v) for k, v in items.items()}}
  with _storage_errors(mngr):
    mngr.save(int(meta['step']), metrics=metrics, args=ocp.args.Composite(
        **{k: ocp.args.StandardSave(v) for k, v in items.items()}, meta=ocp.args.JsonSave(meta)))


def steps(workdir) -> list[int]:
  """The steps in WORKDIR/checkpoints, oldest first (none without that folder)."""
  if not (workdir_lib.path(workdir) / 'checkpoints').is_dir():
    return []
  with manager(workdir, read_only=True) as mngr:
    return sorted(mngr.all_steps())


def save_params(workdir: str, params, cfg, **meta) -> None:
  """WORKDIR/checkpoints/0: `params` alone, with the metadata a trainer's step has (the model
  config; `meta` adds fields), so that everything reading a workdir reads it. What
  `python -m mformer_jax.convert` writes; WORKDIR must hold no checkpoint yet."""
  with manager(workdir) as mngr:
    if mngr.all_steps():
      raise InputError(f'{workdir_lib.path(workdir)} already holds checkpoints (steps '
                       f'{list(mngr.all_steps())}); write the weights to a new folder')
    save(mngr, {'params': params},
         {'step': 0, 'model': dict(cfg.__dict__), 'params_only': True, **meta})
    finish(mngr)


def finish(mngr) -> None:
  """Waits for the save in flight; its errors surface here (a full disk as one line)."""
  with _storage_errors(mngr):
    mngr.wait_until_finished()


def check(mngr) -> None:
  """Raises now the error of an asynchronous save that already failed, rather than at the next
  save (which may be an hour away)."""
  with _storage_errors(mngr):
    mngr.check_for_errors()


# ----------------------------------------------------------------------------------------------
# Restoring: every array checked, the newest step that passes used
# ----------------------------------------------------------------------------------------------
def _read(mngr, step: int, **items) -> dict:
  """mngr.restore of some items; whatever goes wrong reading the files is the step's fault
  (orbax and TensorStore raise JSONDecodeError, ValueError or bare Exception for those)."""
  try:
    return mngr.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # pylint: disable=broad-except
    reason = _first_line(e)
  # Out of the except clause, nothing refers to the failed reads any more (the exception's
  # traceback did, hence no `from e`): collected now, their echoes meet quiet_orbax's
  # hooks (which a test runner may replace later).
  gc.collect()
  raise CorruptCheckpointError(f'{where(mngr, step)} cannot be read: {reason}')


def read_meta(mngr, step: int) -> dict:
  """The JSON metadata of a checkpoint alone (cheap: no arrays are read)."""
  meta = _read(mngr, step, meta=ocp.args.JsonRestore())['meta']
  if not isinstance(meta, dict) or 'step' not in meta:
    raise CorruptCheckpointError(f'{where(mngr, step)} cannot be read: garbled metadata')
  if 'arrays' not in meta:
    raise InputError(f'{where(mngr, step)} records no checksums of its arrays: written by an '
                     'earlier mformer_jax (0.0.x), whose checkpoints are not read')
  return meta


def _target(mngr, step, item: str, meta: dict, abstract, shardings):
  """What to restore `item` into: the config's shapes at the dtypes written (so the checksums
  apply; cast afterwards). A checkpoint whose arrays differ from the config's is a
  CheckpointMismatchError (the config's doing, not corruption: nothing to fall back to)."""
  recorded = meta['arrays'][item]
  layout.check_fit({n: r[0] for n, r in recorded.items()},
                    {n: x.shape for n, x in _flat(abstract)}, f'{where(mngr, step)} ({item})')
  return jax.tree_util.tree_map_with_path(
      lambda kp, x, s: jax.ShapeDtypeStruct(x.shape, jnp.dtype(recorded[_name(kp)][1]),
                                            sharding=s), abstract, shardings)


def _cast(tree, abstract):
  return jax.tree.map(lambda x, a: x if x.dtype == a.dtype else x.astype(a.dtype), tree, abstract)


def restore(mngr, step: int, abstract_state, shardings):
  """(state, meta) at `step`, verified, placed directly into `shardings` (no host copy)."""
  meta = read_meta(mngr, step)
  if meta.get('params_only'):
    raise InputError(
        f'{where(mngr, step)} holds weights alone (converted), no training state to resume; '
        f'train in a new workdir from them: --config.init.checkpoint={mngr.directory.parent}')
  split = lambda t: {'params': t['params'], 'train': {k: v for k, v in t.items() if k != 'params'}}
  abstract, sh = split(abstract_state), split(shardings)
  targets = {k: _target(mngr, step, k, meta, abstract[k], sh[k]) for k in abstract}
  out = _read(mngr, step, **{k: ocp.args.StandardRestore(t) for k, t in targets.items()})
  for k in abstract:
    _verify(mngr, step, k, out[k], meta['arrays'][k])
  out = {k: _cast(out[k], abstract[k]) for k in abstract}
  return {'params': out['params'], **out['train']}, meta


def restore_params(mngr, step: int, abstract_params, shardings, meta=None):
  """Only the parameters of a checkpoint, verified, placed into `shardings`, cast to the
  dtypes of `abstract_params`."""
  meta = read_meta(mngr, step) if meta is None else meta
  target = _target(mngr, step, 'params', meta, abstract_params, shardings)
  params = _read(mngr, step, params=ocp.args.StandardRestore(target))['params']
  _verify(mngr, step, 'params', params, meta['arrays']['params'])
  return _cast(params, abstract_params)


def _reads(read, step) -> bool:
  try:
    read(step)
    return True
  except CorruptCheckpointError:
    return False


def restore_newest(mngr, read, *, strict: bool = False, quarantine: bool = False):
  """(step, read(step)) for the newest step of `mngr` that `read` gets through, or (None, None)
  when there is no step at all.

  read(step) raises CorruptCheckpointError for a broken step: it is logged (one line: which and
  why) and the next older one is tried, with a warning naming both. strict: stop at the first
  broken step instead, naming the readable ones. quarantine (a trainer, which writes here):
  broken steps move to WORKDIR/broken_checkpoints/. No readable step at all is an error, never
  a silent fresh start.
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  broken = {}
  for i, step in enumerate(steps):
    try:
      value = read(step)
    except CorruptCheckpointError as e:
      logging.error('%s', e)
      if strict:
        readable = ', '.join(str(s) for s in steps[i + 1:] if _reads(read, s)) or 'none'
        raise CorruptCheckpointError(
            f'{e}. Not falling back (checkpoint.strict_restore=True); readable steps: '
            f'{readable}') from e
      broken[step] = e
      continue
    if broken:
      logging.warning('using checkpoint step %d of %s: the newer step(s) %s are broken (above)',
                      step, mngr.directory, ', '.join(map(str, broken)))
      if quarantine:
        _quarantine(mngr, broken)
    return step, value
  if broken:
    raise CorruptCheckpointError(
        f'no readable checkpoint in {mngr.directory}: ' + '; '.join(
            str(e).replace(f' in {mngr.directory}', '') for e in broken.values()))
  return None, None


def _quarantine(mngr, steps) -> None:
  """Moves broken steps out of the manager's sight, keeping them (never deleted silently)."""
  directory = epath.Path(mngr.directory)
  if jax.process_index() == 0:
    (directory.parent / BROKEN).mkdir(exist_ok=True)
    for step in steps:
      dest, k = directory.parent / BROKEN / str(step), 1
      while dest.exists():
        dest, k = directory.parent / BROKEN / f'{step}.{k}', k + 1
      (directory / str(step)).rename(dest)
      logging.warning('moved the broken checkpoint step %d to %s (kept for inspection)', step,
                      dest)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('mformer_jax.run.checkpoints.quarantine')
  mngr.reload()

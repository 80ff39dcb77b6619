"""The workdir as a place to write: checked before anything is compiled, one trainer at a time.

Faults here belong to the environment (a read-only mount, a path through a file, a full disk,
a bucket without credentials, a second trainer): each is one `InputError` line, which the
entry points print as `error: ...` with exit status 2.

The lock: a trainer holds `fcntl.flock` on WORKDIR/train.lock for as long as it runs, and
writes its host, pid and start time into the file for the message a second trainer gets. The
kernel drops the lock when its holder dies (also on SIGKILL), so a dead owner's lock is taken
over without any timeout. (flock, not lockf: a POSIX record lock is dropped when the process
closes *any* descriptor of the file, e.g. by reading it.) Local disks and NFS (where Linux maps
flock onto NFS locks) honour it; a filesystem without locks (Lustre mounted without -o flock)
gets a warning; object stores (gs://) have no locks, so there the file only records the owner
and nothing is refused.
"""
import datetime
import errno
import fcntl
import json
import os
import socket

import jax
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from mformer_jax.errors import InputError, UserError

LOCK_NAME = 'train.lock'
# errno values that mean "no room to write" (a full disk, a quota, a file size limit).
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_FULL_TEXT = ('RESOURCE_EXHAUSTED', 'No space left on device', 'Disk quota exceeded',
              'File too large')


def path(p) -> epath.Path:
  """A local path made absolute, or a URL (gs://...: pods need a workdir every host sees)."""
  p = str(p)
  return epath.Path(p if '://' in p else os.path.abspath(p))


def is_full(e: BaseException) -> bool:
  """Whether an exception (from Python, orbax or TensorStore) says the storage is full."""
  for x in (e, e.__cause__, e.__context__):
    if isinstance(x, OSError) and x.errno in _FULL:
      return True
    if x is not None and any(t in str(x) for t in _FULL_TEXT):
      return True
  return False


def _through_file(p: epath.Path):
  """The existing non-directory that `p` runs through, or None."""
  for parent in [p, *p.parents]:
    if parent.exists():
      return None if parent.is_dir() else parent
  return None


def _file_in_the_way(p, blocker, doing: str) -> str:
  return f'cannot {doing} {p}: {blocker} is a file, not a directory'


def check_folder(p, doing: str) -> None:
  """InputError where the folder `p` cannot be, as a path running through an existing file:
  for commands that check their output folder before any work but create it only after."""
  p = path(p)
  blocker = None if '://' in str(p) else _through_file(p)
  if blocker is not None:
    raise InputError(_file_in_the_way(p, blocker, doing))


def explain(p, e: BaseException, doing: str) -> str:
  """One line saying why `doing` (e.g. 'create the workdir') failed at `p`."""
  p = path(p)
  first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
  if '://' in str(p):
    return (f'cannot {doing} {p}: {first} (for gs://: are credentials set up? `gcloud auth '
            'application-default login`, or a service account with write access)')
  blocker = _through_file(p)
  if blocker is not None:
    return _file_in_the_way(p, blocker, doing)
  if is_full(e):
    return f'cannot {doing} {p}: the disk is full ({first})'
  if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
    return f'cannot {doing} {p}: it is not writable ({os.strerror(e.errno)})'
  return f'cannot {doing} {p}: {first}'


def prepare(workdir) -> epath.Path:
  """Creates WORKDIR (and its parents) and proves it writable with a probe file."""
  p = path(workdir)
  probe = p / f'.probe.{socket.gethostname()}.{os.getpid()}'
  try:
    p.mkdir(parents=True, exist_ok=True)
    probe.write_text('')
    probe.unlink()
  except OSError as e:
    raise InputError(explain(p, e, 'write to the workdir')) from e
  except Exception as e:  # pylint: disable=broad-except
    if '://' not in str(p):  # gfile's error classes differ per filesystem; local ones are OSError
      raise
    raise InputError(explain(p, e, 'write to the workdir')) from e
  return p


def claim(workdir, *, lock: bool = True):
  """`prepare` (and, for a trainer, `Lock`) on host 0; every host learns the outcome, so that a
  refusal ends all of them rather than leaving the others waiting in a collective."""
  held, error = None, ''
  if jax.process_index() == 0:
    try:
      prepare(workdir)
      held = Lock(workdir) if lock else None
    except UserError as e:
      error = str(e)
  if jax.process_count() > 1:
    if multihost_utils.broadcast_one_to_all(int(bool(error))) and not error:
      error = f'host 0 cannot use the workdir {path(workdir)} (its log says why)'
  if error:
    raise InputError(error)
  return held


class Lock:
  """WORKDIR/train.lock held by this process; `release()` (or process exit) frees it."""

  def __init__(self, workdir):
    self.path, self._fd = path(workdir) / LOCK_NAME, None
    if '://' in str(self.path):
      self.path.write_text(json.dumps(_owner()))  # a record only (see module docstring)
      return
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except IsADirectoryError:
      raise InputError(f'{self.path} is a folder, where the trainer keeps its lock file; '
                       'remove it (nothing of a run is kept there)') from None
    except OSError as e:
      raise InputError(explain(self.path, e, 'lock the workdir at')) from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno in (errno.ENOLCK, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        logging.warning('%s: this filesystem has no locks (%s); nothing stops a second trainer '
                        'on this workdir', self.path, os.strerror(e.errno))
        self._fd = fd
        return
      os.close(fd)
      if e.errno not in (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK):
        raise InputError(explain(self.path, e, 'lock the workdir at')) from e
      raise InputError(f'{path(workdir)} is in use by another trainer ({_describe(self.path)}); '
                         'wait for it to end or stop it, or use another --workdir') from None
    previous = _parse(os.pread(fd, 1 << 16, 0))
    if previous:
      logging.warning('took over %s from %s (no longer running)', self.path, _describe_owner(
          previous))
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(_owner()).encode())
    os.fsync(fd)
    self._fd = fd

  def release(self):
    if self._fd is not None:
      os.ftruncate(self._fd, 0)  # an empty file: nobody to take over from
      os.close(self._fd)  # closing drops the lock
      self._fd = None


def _owner() -> dict:
  return {'host': socket.gethostname(), 'pid': os.getpid(),
          'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds')}


def _parse(text) -> dict:
  """The owner a lock file records; {} for anything else (an empty file, other JSON, junk)."""
  try:
    owner = json.loads(text or '{}')
  except ValueError:
    return {}
  return owner if isinstance(owner, dict) else {}


def _read(p) -> dict:
  try:
    return _parse(epath.Path(p).read_text())
  except OSError:
    return {}


def _describe_owner(owner: dict) -> str:
  return (f"host {owner.get('host', '?')}, pid {owner.get('pid', '?')}, started "
          f"{owner.get('started', '?')}")


def _describe(p) -> str:
  owner = _read(p)
  return _describe_owner(owner) if owner else 'owner not yet recorded'

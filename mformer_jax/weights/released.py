"""The released Motionformer checkpoints by name: downloaded once into a cache, then read.

    model, variables = mf.load_official('k400_motionformer_224_16x4')

NAMES are the files the official README links (github.com/facebookresearch/Motionformer), each
`<name>.pyth` under BASE_URL, or under $MFORMER_RELEASES_URL (a mirror, or a test's loopback
server). They are kept in `cache_dir()`: $MFORMER_CACHE, else the platform's user cache folder
(~/.cache/mformer_jax on Linux). A download shows a progress bar, resumes a partial file
(`<name>.pyth.part`, an HTTP Range request) and becomes `<name>.pyth` by an atomic rename once
complete. The first time a cached file passes a strict load its size and sha256 are recorded in
cache_dir()/verified.json; every later load checks them first. A file that fails them, or that
cannot be read at all, is removed. A local path is never looked up here: whatever exists on disk
is read as it is.
"""
import hashlib
import http.client
import json
import os
import pathlib
import re
import sys
import urllib.error
import urllib.request

import tqdm

from mformer_jax.errors import InputError, MissingInputError

BASE_URL = 'https://dl.fbaipublicfiles.com/motionformer'
# The name's prefix -> the dataset (config.data.name) the model was trained on.
DATASETS = {'k400': 'kinetics400', 'k600': 'kinetics600', 'ssv2': 'ssv2', 'ek': 'epic_kitchens'}
NAMES = (
    'k400_joint_224_16x4', 'k400_divided_224_16x4', 'k400_motionformer_224_16x4',
    'k400_motionformer_336_16x8', 'k400_motionformer_224_32x3',
    'k600_motionformer_224_16x4', 'k600_motionformer_336_16x8', 'k600_motionformer_224_32x3',
    'ssv2_joint_224_16x4', 'ssv2_divided_224_16x4', 'ssv2_motionformer_224_16x4',
    'ssv2_motionformer_336_16x4', 'ssv2_motionformer_224_32x3',
    'ek_motionformer_224_16x4', 'ek_motionformer_336_16x4', 'ek_motionformer_224_32x3',
)
TIMEOUT_S = 60  # per network read: a stalled connection fails (and resumes) instead of hanging
RECORDS = 'verified.json'


def dataset(name: str) -> str:
  """The dataset (config.data.name) of a released name."""
  return DATASETS[name.split('_')[0]]


def cache_dir() -> pathlib.Path:
  """$MFORMER_CACHE, else the platform's user cache folder + mformer_jax."""
  if os.environ.get('MFORMER_CACHE'):
    return pathlib.Path(os.environ['MFORMER_CACHE']).expanduser()
  home = pathlib.Path.home()
  if sys.platform == 'darwin':
    base = home / 'Library' / 'Caches'
  elif os.name == 'nt':
    base = pathlib.Path(os.environ.get('LOCALAPPDATA') or home / 'AppData' / 'Local')
  else:
    base = pathlib.Path(os.environ.get('XDG_CACHE_HOME') or home / '.cache')
  return base / 'mformer_jax'


def url(name: str) -> str:
  return f"{(os.environ.get('MFORMER_RELEASES_URL') or BASE_URL).rstrip('/')}/{name}.pyth"


def release_name(source):
  """The released name `source` asks for (NAME or NAME.pyth, no folder, no such local file), or
  None for anything else. A bare word shaped like a released name but not one is an error
  listing the names."""
  if not isinstance(source, (str, os.PathLike)):
    return None
  text = os.fspath(source)
  if os.path.exists(text) or os.sep in text or '/' in text:
    return None
  name = text[:-len('.pyth')] if text.endswith('.pyth') else text
  if name in NAMES:
    return name
  if re.fullmatch(r'(k400|k600|ssv2|ek)_[a-z]+_\d+_\d+x\d+', name):
    raise MissingInputError(f'{text} is neither a file nor a released model; the released '
                            f'names: {", ".join(NAMES)}')
  return None


def read(source, reader, log=print):
  """reader(source), or for a released name reader(path of its cached file), downloaded first
  if need be, checked against its record, removed if unreadable, recorded once read."""
  name = release_name(source)
  if name is None:
    return reader(source)
  path = fetch(name, log)
  try:
    out = reader(str(path))
  except InputError as e:  # not a checkpoint (truncated, garbled): a broken download
    _forget(name, path)
    raise InputError(f'{path} cannot be read ({e}); removed it: run again to '
                     f'download {url(name)} anew') from None
  if name not in _records():
    _record(name, path)
  return out


def fetch(name: str, log=print) -> pathlib.Path:
  """The cached file of a released name: checked against its record, downloaded if absent."""
  path = cache_dir() / f'{name}.pyth'
  if path.exists():
    _check(name, path)
    return path
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise MissingInputError(f'cannot create the cache folder {path.parent} ({e.strerror}); set '
                            '$MFORMER_CACHE to a writable folder') from None
  log(f'Downloading {url(name)} -> {path}')
  _download(name, path)
  return path


# ----------------------------------------------------------------------------------------------
# Download with resume
# ----------------------------------------------------------------------------------------------
def _unreachable(name, path, reason):
  return MissingInputError(f'cannot download {name} ({reason}): fetch {url(name)} yourself '
                           f'and put it at {path} (or pass the path of your copy)')


def _total(response, have):
  """The complete file's size from a 206's Content-Range or a 200's Content-Length (None when
  the server does not say)."""
  if response.status == 206:
    m = re.fullmatch(r'bytes \d+-\d+/(\d+)', response.headers.get('Content-Range', ''))
    return int(m.group(1)) if m else None
  length = response.headers.get('Content-Length')
  return int(length) + have if length and length.isdigit() else None


def _download(name, path, retried=False):
  part = path.with_name(path.name + '.part')
  have = part.stat().st_size if part.exists() else 0
  request = urllib.request.Request(url(name), headers={'Range': f'bytes={have}-'} if have else {})
  total = None
  try:
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
      if have and response.status != 206:
        have = 0  # the server ignored the Range: the whole file comes again
      total = _total(response, have)
      with open(part, 'ab' if have else 'wb') as f, tqdm.tqdm(
          total=total, initial=have, unit='B', unit_scale=True, desc=name) as bar:
        while chunk := response.read(1 << 20):
          f.write(chunk)
          bar.update(len(chunk))
  except urllib.error.HTTPError as e:
    if e.code == 416 and have and not retried:  # the part is whole already, or is no prefix
      m = re.fullmatch(r'bytes \*/(\d+)', e.headers.get('Content-Range', '') or '')
      if not (m and int(m.group(1)) == have):
        part.unlink()
        return _download(name, path, retried=True)
    else:
      raise _unreachable(name, path, f'HTTP {e.code} {e.reason}') from None
  except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
    got = part.stat().st_size if part.exists() else 0
    reason = getattr(e, 'reason', None) or e.__class__.__name__
    stop = f'; stopped at {got} of {total} bytes, run again to resume' if got else ''
    raise _unreachable(name, path, f'{reason}{stop}') from None
  got = part.stat().st_size
  if total is not None and got != total:
    raise _unreachable(name, path, f'the connection closed early; stopped at {got} of {total} '
                       'bytes, run again to resume')
  os.replace(part, path)


# ----------------------------------------------------------------------------------------------
# Size and sha256 of the files that passed a strict load
# ----------------------------------------------------------------------------------------------
def _sha256(path) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    while chunk := f.read(1 << 22):
      h.update(chunk)
  return h.hexdigest()


def _records() -> dict:
  try:
    return json.loads((cache_dir() / RECORDS).read_text())
  except (OSError, ValueError):
    return {}


def _write_records(records) -> None:
  tmp = cache_dir() / f'{RECORDS}.{os.getpid()}.tmp'
  tmp.write_text(json.dumps(records, indent=1, sort_keys=True))
  os.replace(tmp, cache_dir() / RECORDS)  # atomic: a reader never sees half a file


def _record(name, path) -> None:
  _write_records({**_records(), name: {'size': path.stat().st_size, 'sha256': _sha256(path)}})


def _forget(name, path) -> None:
  path.unlink(missing_ok=True)
  records = _records()
  if records.pop(name, None) is not None:
    _write_records(records)


def _check(name, path) -> None:
  """InputError (the file removed) when `path` is not the file recorded for `name`."""
  want = _records().get(name)
  if want is None:
    return
  size = path.stat().st_size
  problem = (f'{size} bytes, not the {want["size"]} verified before' if size != want['size'] else
             'its sha256 differs from the one verified before'
             if _sha256(path) != want['sha256'] else None)
  if problem:
    _forget(name, path)
    raise InputError(f'{path}: {problem}; removed it: run again to download '
                     f'{url(name)} anew')

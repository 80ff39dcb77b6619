"""Writing an artifact: a weights source -> a file (StableHLO, ONNX) or a folder (SavedModel).

The output is checked before the model is loaded, and written under a temporary name beside it,
then renamed: an interrupted export leaves no half-written artifact at PATH.
"""
import dataclasses
import os
import shutil
import tempfile

import jax

from mformer_jax import weights
from mformer_jax.errors import ConfigError, InputError, MissingInputError
from mformer_jax.model import ModelConfig, Motionformer
from mformer_jax.model.layout import blocks_layout
from mformer_jax.serving import forward, onnx_graph

FORMATS = ('stablehlo', 'savedmodel', 'onnx')
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')  # jax.export's lowering platforms


@dataclasses.dataclass(frozen=True)
class Written:
  """What `write` wrote: where, how many bytes, the model config that runs, the outputs."""
  path: str
  format: str
  size_bytes: int
  cfg: ModelConfig
  outputs: tuple[str, ...]


def check_output(path: str, fmt: str) -> None:
  """InputError / MissingInputError (one line) for an output path that cannot be written: its
  folder missing or no folder; a folder where a file goes; for a SavedModel, anything but an
  absent path or an empty folder."""
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise MissingInputError(f'cannot write {path}: its folder {parent} does not exist')
  if not os.access(parent, os.W_OK):
    raise InputError(f'cannot write {path}: its folder {parent} is not writable')
  if fmt == 'savedmodel':
    if os.path.exists(path) and not (os.path.isdir(path) and not os.listdir(path)):
      raise InputError(f'cannot write the SavedModel to {path}: it exists and is not an empty '
                       'folder; give a new path')
  elif os.path.isdir(path):
    raise InputError(f'cannot write {path}: it is a folder; --format={fmt} writes one file')


def check_platforms(platforms) -> tuple[str, ...]:
  platforms = tuple(platforms)
  bad = [p for p in platforms if p not in PLATFORMS]
  if not platforms or bad:
    raise ConfigError(f'--platforms={",".join(platforms)}: expected a comma-separated list of '
                      f'{", ".join(PLATFORMS)}')
  return platforms


def load(source, fmt: str):
  """(model, variables) of `source` (anything `weights.load` reads) as the artifact runs it."""
  cfg, params = weights.load(source)
  cfg = forward.export_config(cfg, graph=fmt == 'onnx')
  return Motionformer(cfg), jax.device_put({'params': blocks_layout(params, cfg)})


def _replace(write_to_temp, path: str, folder: bool) -> None:
  """Calls write_to_temp(temporary path beside `path`), then renames the result to `path`."""
  parent = os.path.dirname(os.path.abspath(path))
  tmp = tempfile.mkdtemp(prefix='.export-', dir=parent)
  try:
    target = tmp if folder else os.path.join(tmp, 'artifact')
    write_to_temp(target)
    if folder:  # mkdtemp's folder is private (0700); the artifact gets a new folder's mode
      umask = os.umask(0)
      os.umask(umask)
      os.chmod(target, 0o777 & ~umask)
    if folder and os.path.isdir(path):
      os.rmdir(path)  # empty (check_output)
    os.replace(target, path)
  except OSError as e:
    raise InputError(f'cannot write {path}: {e.strerror or e}') from e
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp)


def _write_bytes(path: str, data: bytes) -> None:
  with open(path, 'wb') as f:
    f.write(data)


def _size(path: str) -> int:
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def write(source, fmt: str, out: str, platforms=('cpu',), *, log=print) -> Written:
  """Writes the `fmt` artifact of the model at `source` to `out`.

  platforms: jax.export's lowering platforms (stablehlo, savedmodel); the artifact runs on
  those only. ONNX graphs are platform-neutral.
  """
  if fmt not in FORMATS:
    raise ConfigError(f'--format={fmt}: expected one of {", ".join(FORMATS)}')
  platforms = check_platforms(platforms)
  check_output(out, fmt)
  if fmt == 'onnx':
    onnx_graph.require_extra()  # a missing extra is reported before the model loads
  model, variables = load(source, fmt)
  log(f'exporting {source} ({model.cfg.attention} attention, {model.cfg.num_frames} frames of '
      f'{model.cfg.img_size} px) to {fmt}')
  if fmt == 'onnx':
    proto, names = onnx_graph.to_onnx(model, variables)
    _replace(lambda p: _write_bytes(p, proto.SerializeToString()), out, folder=False)
  else:
    exported = forward.export(model, variables, platforms)
    names = forward.output_names(model.cfg)
    if fmt == 'stablehlo':
      _replace(lambda p: _write_bytes(p, exported.serialize()), out, folder=False)
    else:  # Imported here: TensorFlow takes seconds to import, and only this route needs it.
      from mformer_jax.serving import savedmodel  # pylint: disable=g-import-not-at-top
      _replace(lambda p: savedmodel.save(exported, p), out, folder=True)
  return Written(out, fmt, _size(out), model.cfg, names)

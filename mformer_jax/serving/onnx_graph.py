"""An ONNX model of the eval-mode forward, through jax2onnx (an optional extra).

jax2onnx 0.17.1 pins orbax-checkpoint<0.11.37 (this project pins 0.12.8) and needs packages the
core environment does not have, so launch/setup_env.sh installs requirements-export.txt without
their dependencies into .venv/export, outside site-packages (`pip check` of the core environment
stays clean); only this route puts that folder on sys.path, at its end, so that the core
environment's own packages (jax, numpy, protobuf) are the ones imported.
"""
import importlib.util
import os
import sys

from mformer_jax.errors import ConfigError, UserError
from mformer_jax.model import Motionformer
from mformer_jax.serving import forward

EXTRA = os.path.join(sys.prefix, 'export')  # .venv/export, where launch/setup_env.sh puts it
INSTALL = ('bash launch/setup_env.sh installs it (requirements-export.txt; MFORMER_EXPORT=off '
           'skips it), or: .venv/bin/pip install --no-deps --target .venv/export '
           '-r requirements-export.txt')
OPSET = 23  # jax2onnx 0.17.1's default; onnxruntime >= 1.23 runs it


def require_extra():
  """The jax2onnx module, from the environment or from EXTRA."""
  if importlib.util.find_spec('jax2onnx') is None and os.path.isdir(EXTRA):
    sys.path.append(EXTRA)
  # jax2onnx 0.17.1 reads jax._src.core.ClosedJaxpr, a name jax 0.12 moved to jax.extend.core.
  import jax._src.core  # pylint: disable=g-import-not-at-top
  import jax.extend.core  # pylint: disable=g-import-not-at-top
  if not hasattr(jax._src.core, 'ClosedJaxpr'):
    jax._src.core.ClosedJaxpr = jax.extend.core.ClosedJaxpr
  try:
    import jax2onnx  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError(f'--format=onnx needs jax2onnx, onnx and onnxruntime ({e}): '
                    f'{INSTALL}') from e
  return jax2onnx


def check_exportable(model: Motionformer) -> None:
  """ConfigError for a model jax2onnx 0.17.1 does not convert: the attention approximations
  (the Orthoformer's landmark choice, the Performer's random features, the Nystrom
  pseudo-inverse); the other formats take them."""
  if model.cfg.approx != 'none':
    raise ConfigError(f'--format=onnx: the model uses approx={model.cfg.approx!r} attention, '
                      'which jax2onnx does not convert; --format=stablehlo or '
                      '--format=savedmodel exports it')


def to_onnx(model: Motionformer, variables):
  """(the ONNX ModelProto, output names) of `model` (built with forward.export_config(cfg,
  graph=True)): input 'clip' (B, T, S, S, 3) float32 with B symbolic ('B')."""
  check_exportable(model)
  jax2onnx = require_extra()
  fn, names, c = forward.inference_function(model, variables), forward.output_names(model.cfg), model.cfg
  proto = jax2onnx.to_onnx(lambda clip: tuple(fn(clip)[n] for n in names),
                           [('B', c.num_frames, c.img_size, c.img_size, 3)],
                           model_name='motionformer', opset=OPSET,
                           input_names=['clip'], output_names=list(names))
  return proto, names

"""mformer_jax: Motionformer (trajectory attention, Orthoformer) in JAX/Flax.

    import mformer_jax as mf
    model, variables = mf.load_official('k400_motionformer_224_16x4.pyth')
    logits = model.apply(variables, clip, train=False)        # clip (B, T, H, W, 3)

The package is in layers, each importing only those below it (tests/test_layers.py):
errors < model, data < run < config_lib < weights < eval < train < analysis, lra < commands.
The public names below are loaded on first use, so `import mformer_jax` stays cheap.
"""
import importlib
import warnings

__version__ = '0.1.0'

# The JAX releases this code supports, [oldest, first unsupported). CI tests the requirements.txt
# pin; `bash launch/test_compat.sh` tests the oldest one (0.11.2 is what the lent GPU machines
# run). jax 0.10.x, the last release for Python 3.11, is not supported: flax 0.12.12 needs
# jax >= 0.11.1, and the code is not tested there.
JAX_SUPPORTED = ('0.11.2', '0.13')

# name -> the module that defines it
_PUBLIC = {
    'Motionformer': 'mformer_jax.model', 'ModelConfig': 'mformer_jax.model',
    'make_model': 'mformer_jax.model', 'init_variables': 'mformer_jax.model',
    'TrajectoryAttention': 'mformer_jax.model', 'JointAttention': 'mformer_jax.model',
    'DividedAttention': 'mformer_jax.model',
    'load': 'mformer_jax.weights', 'load_model': 'mformer_jax.weights',
    'load_official': 'mformer_jax.weights', 'export_official': 'mformer_jax.weights',
    'init_from_imagenet': 'mformer_jax.weights', 'HEAD_PATTERNS': 'mformer_jax.weights',
    'to_model_input': 'mformer_jax.data', 'to_display_rgb': 'mformer_jax.data',
    'UserError': 'mformer_jax.errors',
}
__all__ = sorted(_PUBLIC) + ['JAX_SUPPORTED', 'check_jax_version']


def __getattr__(name):
  if name in _PUBLIC:
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(set(globals()) | set(__all__))


def check_jax_version(version: str) -> None:
  """Warns when `version` (a jax.__version__) is outside JAX_SUPPORTED."""
  key = lambda v: tuple(int(p) for p in v.split('.')[:3] if p.isdigit())
  lo, hi = JAX_SUPPORTED
  if not key(lo) <= key(version) < key(hi):
    warnings.warn(f'jax {version} is outside the versions mformer_jax supports '
                  f'(>= {lo}, < {hi}; see mformer_jax.JAX_SUPPORTED)', stacklevel=2)

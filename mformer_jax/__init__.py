"""mformer_jax: Motionformer (trajectory attention, Orthoformer) in JAX/Flax."""
__version__ = '0.1.0'

# The JAX releases this code supports, [oldest, first unsupported): the one place that says so.
# CI tests the requirements.txt pin; `bash launch/test_compat.sh` tests the oldest one (0.11.2 is
# what the lent GPU machines run). jax 0.10.x, the last release for Python 3.11, is not supported:
# flax 0.12.12 needs jax >= 0.11.1, and the code is not tested there.
JAX_SUPPORTED = ('0.11.2', '0.13')


def check_jax_version(version: str) -> None:
  """Warns when `version` (a jax.__version__) is outside JAX_SUPPORTED."""
  key = lambda v: tuple(int(p) for p in v.split('.')[:3] if p.isdigit())
  lo, hi = JAX_SUPPORTED
  if not key(lo) <= key(version) < key(hi):
    import warnings  # pylint: disable=g-import-not-at-top
    warnings.warn(f'jax {version} is outside the versions mformer_jax supports '
                  f'(>= {lo}, < {hi}; see mformer_jax.JAX_SUPPORTED)', stacklevel=2)

"""Same as `python -m mformer_jax.data.prepare` (see data/README.md)."""

from mformer_jax.data import prepare

if __name__ == '__main__':
  prepare.main()

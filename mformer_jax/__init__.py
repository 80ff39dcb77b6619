"""mformer_jax: Motionformer (trajectory attention, Orthoformer) in JAX/Flax."""
__version__ = '0.1.0'

"""Multi-host start-up, the device mesh and the shardings the trainer and evaluator use.

One mesh axis, 'data': the batch is split over every device of every host. Parameters and
optimizer state are replicated, or with FSDP (`config.mesh.fsdp`) their large leaves are split
along 'data' too and `jax.jit` inserts the all-gathers. There is no per-device batch dimension
anywhere: arrays are global and `NamedSharding`s say where their pieces live.
"""
import os

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mformer_jax.errors import ConfigError

# Explicit multi-process settings (also what launch/slurm.sh exports); jax itself reads these
# names too where it auto-detects, so one set of variables serves every launcher.
_ENV = {'coordinator_address': 'JAX_COORDINATOR_ADDRESS', 'num_processes': 'JAX_NUM_PROCESSES',
        'process_id': 'JAX_PROCESS_ID'}


def initialize_distributed(force: bool = False) -> None:
  """`jax.distributed.initialize` when this is a multi-process run, before any JAX computation.

  Multi-process when JAX_COORDINATOR_ADDRESS is set (the 2-process test, SLURM via
  launch/slurm.sh) or `force` (--multihost: Cloud TPU pods, where JAX finds its peers from the
  TPU metadata). Never on a plain single host: there initialize() either fails or waits for peers.
  """
  kwargs = {k: os.environ[v] for k, v in _ENV.items() if os.environ.get(v)}
  if not kwargs and not force:
    return
  for key in ('num_processes', 'process_id'):
    if key in kwargs:
      kwargs[key] = int(kwargs[key])
  jax.distributed.initialize(**kwargs)
  logging.info('jax.distributed: process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())


def make_mesh(devices=None) -> Mesh:
  """The mesh over `devices` (default: all of them; mformer_jax.plan passes a TPU topology's)."""
  # jax.devices() is ordered by process, so each host's devices hold a contiguous block of the
  # global batch: exactly the rows its own data iterator produced.
  return Mesh(np.array(jax.devices() if devices is None else devices), ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def state_shardings(abstract_tree, mesh: Mesh, *, fsdp: bool, fsdp_min_size: int):
  """A NamedSharding per leaf: replicated, or (FSDP) split along the largest divisible dim."""
  n = mesh.shape['data']

  def rule(leaf):
    if not fsdp or leaf.size < fsdp_min_size:
      return replicated(mesh)
    dims = sorted(range(leaf.ndim), key=lambda d: -leaf.shape[d])
    for d in dims:
      if leaf.shape[d] % n == 0:
        spec = [None] * leaf.ndim
        spec[d] = 'data'
        return NamedSharding(mesh, P(*spec))
    return replicated(mesh)  # nothing divides: small odd-shaped leaves stay whole

  return jax.tree.map(rule, abstract_tree)


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Per-host numpy batch -> global jax.Arrays split along 'data' (host i's rows = block i)."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def local_batch_size(global_size: int, what: str) -> int:
  """The per-host share of a global batch, with a clear error when it does not divide."""
  if global_size % jax.device_count():
    raise ConfigError(f'{what}={global_size} must be a multiple of the device count '
                      f'({jax.device_count()}); change it with --config.{what}=...')
  return global_size // jax.process_count()


def to_host(tree):
  """Global arrays (replicated or sharded, e.g. FSDP across hosts) -> numpy, on every host."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)

"""Naming a Cloud TPU slice: gcloud's accelerator types -> topology strings, and topology strings
checked before libtpu sees them."""
import math
import re

from mformer_jax.errors import ConfigError


# gcloud accelerator type -> (topology prefix, slice dims, TensorCores counted per chip).
_FAMILIES = {'v4': ('v4', 3, 2), 'v5p': ('v5p', 3, 2), 'v5litepod': ('v5e', 2, 1),
             'v5e': ('v5e', 2, 1), 'v6e': ('v6e', 2, 1)}
_TOPOLOGY = re.compile(r'([A-Za-z0-9]+):(\d+)x(\d+)(?:x(\d+))?(_twisted|_untwisted)?')


def accelerator_topology(accelerator: str) -> str:
  """gcloud's accelerator type -> topology string: v5litepod-16 -> v5e:4x4, v4-32 -> v4:2x2x4
  (v4/v5p count TensorCores, two per chip), v5p-64 -> v5p:2x4x4, v6e-256 -> v6e:16x16."""
  m = re.fullmatch(r'(v4|v5p|v5litepod|v5e|v6e)-(\d+)', accelerator)
  if not m:
    raise ConfigError(f'unknown accelerator type {accelerator!r}; expected e.g. v5litepod-16, '
                      f'v4-32, v5p-64, v6e-16 (or give --topology)')
  prefix, ndim, cores = _FAMILIES[m.group(1)]
  chips = int(m.group(2)) // cores
  # Slices grow by doubling one side, the last of the shortest: 2x2x1 (one host) -> 2x2x2 ->
  # 2x2x4 -> 2x4x4 -> 4x4x4; 1x1 -> 1x2 -> 2x2 -> 2x4 -> 4x4 -> ... -> 16x16.
  dims = [2, 2, 1] if ndim == 3 else [1, 1]
  while math.prod(dims) < chips:
    i = max(j for j, d in enumerate(dims) if d == min(dims))
    dims[i] *= 2
  if math.prod(dims) != chips or int(m.group(2)) % cores:
    raise ConfigError(f'accelerator {accelerator!r}: {chips} chips is not a slice shape this '
                      'tool knows; give --topology=PREFIX:AxB[xC] instead')
  return f"{prefix}:{'x'.join(map(str, dims))}"


def check_topology(name: str) -> str:
  """`name` when it has the form PREFIX:AxB or PREFIX:AxBxC with every side >= 1 (an optional
  _twisted / _untwisted after it), else a ConfigError. libtpu divides by the sides: a zero kills
  the process with SIGFPE (libtpu 0.0.x) instead of an error, so the form is checked here; a
  well-formed name libtpu does not know (v5e:3x3, tpu9:2x2) it refuses in its own words."""
  m = _TOPOLOGY.fullmatch(name)
  if not m or any(side is not None and int(side) < 1 for side in m.groups()[1:4]):
    raise ConfigError(f'TPU topology {name!r}: expected PREFIX:AxB or PREFIX:AxBxC, every side a '
                      'whole number >= 1, e.g. v5e:4x4, v5e:16x16, v4:2x2x4, v5p:2x4x4')
  return name

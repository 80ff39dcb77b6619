"""Run-time resize of the 2D spatial position table, exactly as the official model does it.

The official code keeps `pos_embed` on the 224-px grid (14x14 for p=16) and, for any other crop,
resizes it on every forward with torch's bicubic interpolation (A = -0.75, align_corners=False,
edge taps clamped, the *given* scale factor used in the coordinate map). `jax.image.resize` uses
Keys a = -0.5 and renormalises edge weights, so it does not match; we build the (n_out, n_in)
interpolation matrix per axis instead and apply it as Mh @ grid @ Mw^T.
"""
import math

import numpy as np

_A = -0.75


def _cubic_near(x):  # |x| <= 1
  return ((_A + 2) * x - (_A + 3)) * x * x + 1


def _cubic_far(x):  # 1 < |x| < 2
  return ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A


def bicubic_matrix(n_in: int, scale: float) -> np.ndarray:
  """(floor(n_in*scale), n_in) float64 matrix of torch's bicubic resize along one axis."""
  n_out = int(math.floor(n_in * scale))
  m = np.zeros((n_out, n_in), np.float64)
  for i in range(n_out):
    src = (i + 0.5) / scale - 0.5
    x0 = math.floor(src)
    t = src - x0
    weights = (_cubic_far(t + 1), _cubic_near(t), _cubic_near(1 - t), _cubic_far(2 - t))
    for tap, w in zip(range(x0 - 1, x0 + 3), weights):
      m[i, min(max(tap, 0), n_in - 1)] += w
  return m


def spatial_resize_matrices(grid_in: int, num_patches_out: int) -> tuple[np.ndarray, np.ndarray]:
  """Row/column matrices that map the (grid_in, grid_in) table to the current patch grid.

  Mirrors the official rule: scale factor sqrt(npatch / N0), used for both axes.
  """
  scale = math.sqrt(num_patches_out / (grid_in * grid_in))
  m = bicubic_matrix(grid_in, scale)
  return m, m

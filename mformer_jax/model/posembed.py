"""Run-time resize of the 2D spatial position table, exactly as the official model does it.

The official code keeps `pos_embed` on the 224-px grid (14x14 for p=16) and, for any other crop,
resizes it on every forward with torch's bicubic interpolation (A = -0.75, align_corners=False,
edge taps clamped, the *given* scale factor used in the coordinate map). `jax.image.resize` uses
Keys a = -0.5 and renormalises edge weights, so it does not match; we build the (n_out, n_in)
interpolation matrix per axis instead and apply it as Mh @ grid @ Mw^T.

Rules (`ModelConfig.pos_embed_resize`), i.e. which scale each axis's matrix uses:
  official: the Motionformer's. A square grid takes the official scale sqrt(npatch / N0) for
            both axes (the goldens guard this, bit for bit). The official code cannot run a
            non-square grid (its single scale gives a square table); there each axis takes its
            own scale n_out / n_in, as torch does when given the output size.
  dino:     DINO's `interpolate_pos_encoding`, which ran the image ViTs of appendix Table 2:
            scale (n_out + 0.1) / n_in per axis (its guard against floor() losing a row), also
            for square grids; no resize at the table's own size. DINOv2's ViTs without registers
            resize by the same rule (its interpolate_offset 0.1, antialias off, from a 37x37
            table); its register models (offset 0, antialiased) are not loaded (weights/vit.py).
"""
import math

import numpy as np

from mformer_jax.errors import ConfigError

_A = -0.75
RULES = ('official', 'dino')
_DINO_OFFSET = 0.1


def _cubic_near(x):  # |x| <= 1
  return ((_A + 2) * x - (_A + 3)) * x * x + 1


def _cubic_far(x):  # 1 < |x| < 2
  return ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A


def bicubic_matrix(n_in: int, scale: float, n_out: int = 0) -> np.ndarray:
  """(n_out, n_in) float64 matrix of torch's bicubic resize along one axis with a given scale;
  n_out = 0: floor(n_in * scale), as torch derives it from a scale factor."""
  n_out = n_out or int(math.floor(n_in * scale))
  m = np.zeros((n_out, n_in), np.float64)
  for i in range(n_out):
    src = (i + 0.5) / scale - 0.5
    x0 = math.floor(src)
    t = src - x0
    weights = (_cubic_far(t + 1), _cubic_near(t), _cubic_near(1 - t), _cubic_far(2 - t))
    for tap, w in zip(range(x0 - 1, x0 + 3), weights):
      m[i, min(max(tap, 0), n_in - 1)] += w
  return m


def spatial_resize_matrices(grid_in: int, grid_out: tuple[int, int],
                            rule: str = 'official') -> tuple[np.ndarray, np.ndarray]:
  """Row/column matrices that map the (grid_in, grid_in) table to the (Hp, Wp) patch grid."""
  hp, wp = grid_out
  if rule not in RULES:
    raise ConfigError(f'position-embedding resize rule {rule!r}; expected one of {RULES}')
  if rule == 'official' and hp == wp:
    m = bicubic_matrix(grid_in, math.sqrt(hp * wp / (grid_in * grid_in)))
    return m, m
  offset = _DINO_OFFSET if rule == 'dino' else 0.0
  return tuple(bicubic_matrix(grid_in, (n + offset) / grid_in, n) for n in (hp, wp))

"""Synthetic motion dataset: generated from a seed, no files, no network.

Motion variant: the class is *how* the main object moves (direction, path shape, speed change,
approach/recede, back-and-forth "pretending"). The scene lives on a torus: every object starts at
a uniform random position and wraps around the edges, sizes of approach/recede follow a sawtooth
with a uniform random phase, and appearance (shape, colour, texture, background, distractors) is
drawn independently of the class. So every single frame has the same distribution in every class
and only the relation between frames tells classes apart (Kinetics-vs-SSv2 style, paper Table 1).

Appearance variant (the twin): the class is the object's identity (shape + colour), its motion is
one of the motion classes drawn at random, so one frame is enough.

Every video is a pure function of (seed, split, index): hosts, epochs and resumed runs regenerate
exactly the same clips, and nothing needs to be held in memory.
"""

import dataclasses

import numpy as np

from mformer_jax.errors import ConfigError

MOTION_CLASSES = ('move_right', 'move_left', 'move_down', 'move_up', 'circle_clockwise',
                  'circle_anticlockwise', 'approach', 'recede', 'start_moving', 'stop_moving',
                  'back_and_forth')
SHAPES = ('disk', 'square', 'diamond', 'triangle', 'ring', 'cross', 'bar')
COLOURS = {'red': (0.95, 0.2, 0.15), 'green': (0.2, 0.85, 0.25), 'blue': (0.25, 0.4, 1.0),
           'yellow': (0.95, 0.9, 0.2)}
_SPLITS = {'train': 0, 'test': 1}
# Radii in image sizes. Sizes of every class share one uniform marginal on [lo, hi].
_R_LO, _R_HI = 0.08, 0.26
_CHUNK = 64  # Videos rendered at once (bounds memory at large sizes).


@dataclasses.dataclass
class SyntheticVideos:
  videos: np.ndarray  # (N, T, H, W, 3) uint8.
  labels: np.ndarray  # (N,) int32.
  centers: np.ndarray  # (N, T, 2) float32, main object centre as (row, col) in pixels.
  masks: np.ndarray | None  # (N, T, H, W) bool, main object mask.
  class_names: list[str]


def class_names(variant='motion', classes=''):
  motion = _motion_classes(classes)
  if variant == 'motion':
    return list(motion)
  if variant == 'appearance':
    names = list(COLOURS)
    return [f'{names[i % len(names)]}_{SHAPES[i % len(SHAPES)]}' for i in range(len(motion))]
  raise ConfigError(f'synthetic variant must be motion or appearance, got {variant!r}')


def _motion_classes(classes):
  if not classes:
    return MOTION_CLASSES
  chosen = tuple(c.strip() for c in classes.split(','))
  unknown = set(chosen) - set(MOTION_CLASSES)
  if unknown:
    raise ConfigError(f'Unknown synthetic classes {sorted(unknown)}; known: {MOTION_CLASSES}')
  return chosen


def _displacement(kind, tau, rng, size, speed=1.0):
  """(T, 2) displacement (dx, dy) in pixels of one motion class, tau in [0, 1]; `speed` scales
  distances and sweep angles."""
  dist = rng.uniform(0.3, 0.55) * size * speed
  theta = rng.uniform(0, 2 * np.pi)
  unit = np.array([np.cos(theta), np.sin(theta)])
  axis = {'move_right': (1, 0), 'move_left': (-1, 0), 'move_down': (0, 1), 'move_up': (0, -1)}
  if kind in axis:
    return dist * tau[:, None] * np.array(axis[kind], float)
  if kind.startswith('circle'):
    # Image y points down, so an increasing angle turns clockwise on screen.
    sign = 1.0 if kind == 'circle_clockwise' else -1.0
    angle = theta + sign * rng.uniform(1.0, 1.5) * np.pi * tau * speed
    rho = rng.uniform(0.15, 0.25) * size
    return rho * np.stack([np.cos(angle) - np.cos(theta), np.sin(angle) - np.sin(theta)], -1)
  if kind == 'start_moving':
    return dist * np.clip(2 * tau - 1, 0, 1)[:, None] * unit
  if kind == 'stop_moving':
    return dist * np.clip(2 * tau, 0, 1)[:, None] * unit
  if kind == 'back_and_forth':
    return 0.7 * dist * (1 - np.abs(2 * tau - 1))[:, None] * unit
  return np.zeros((len(tau), 2))  # approach / recede: the size changes, not the position.


def _radius(kind, t, num_frames, rng, size, speed=1.0):
  """(T,) radius in pixels. Approach/recede: sawtooth with uniform phase, so its per-frame
  marginal is U[lo, hi] like the constant radius of every other class."""
  phase = rng.uniform()
  if kind in ('approach', 'recede'):
    sign = 1.0 if kind == 'approach' else -1.0
    frac = np.mod(phase + sign * speed * t / (2 * max(num_frames - 1, 1)), 1.0)
  else:
    frac = np.full(num_frames, phase)
  return (_R_LO + (_R_HI - _R_LO) * frac) * size


def _random_colour(rng):
  hue, sat, val = rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.75, 1.0)
  rgb = np.clip(np.abs(np.mod(hue * 6 + np.array([0, 4, 2]), 6) - 3) - 1, 0, 1)
  return val * (1 - sat + sat * rgb)


def _video_params(index, *, seed, split, num_frames, size, variant, motion, num_distractors,
                  background_speed, speed=1.0):
  """All random choices of one video, from its own generator (order-independent)."""
  rng = np.random.default_rng([seed, _SPLITS[split], index])
  label = int(rng.integers(len(motion)))
  t = np.arange(num_frames, dtype=np.float64)
  tau = t / max(num_frames - 1, 1)
  kind = motion[label] if variant == 'motion' else motion[rng.integers(len(motion))]
  objects = []
  for k in range(1 + num_distractors):
    main = k == 0
    if main and variant == 'appearance':
      shape, colour = label % len(SHAPES), np.array(list(COLOURS.values())[label % len(COLOURS)])
      colour = np.clip(colour + rng.uniform(-0.08, 0.08, 3), 0, 1)
    else:
      shape, colour = int(rng.integers(len(SHAPES))), _random_colour(rng)
    if main:
      disp = _displacement(kind, tau, rng, size, speed)
      radius = _radius(kind, t, num_frames, rng, size, speed)
    else:  # Distractors: smaller, constant velocity in a random direction.
      theta = rng.uniform(0, 2 * np.pi)
      disp = rng.uniform(0, 0.4) * size * speed * tau[:, None] * np.array(
          [np.cos(theta), np.sin(theta)])
      radius = np.full(num_frames, rng.uniform(0.04, 0.07) * size)
    centre = np.mod(rng.uniform(0, size, 2) + disp, size)
    objects.append(dict(  # float32 keeps the per-pixel maths in float32.
        x=centre[:, 0].astype(np.float32), y=centre[:, 1].astype(np.float32),
        r=radius.astype(np.float32), shape=shape, colour=colour,
        angle=rng.uniform(0, 2 * np.pi), texture=int(rng.integers(3)),
        frequency=rng.uniform(1.2, 2.5)))
  bg_theta = rng.uniform(0, 2 * np.pi)
  bg_shift = rng.uniform(0, background_speed) * size * speed * tau[:, None] * np.array(
      [np.cos(bg_theta), np.sin(bg_theta)])
  background = dict(
      base=rng.uniform(0.15, 0.45) + rng.uniform(-0.05, 0.05, 3),
      waves=rng.integers(-2, 3, (3, 2)), phases=rng.uniform(0, 2 * np.pi, 3),
      amps=rng.uniform(0.02, 0.06, (3, 3)), shift=bg_shift)
  return label, objects, background


def _shape_distance(shape, u, v):
  """Normalised distance with the shape's edge at 1 (u, v in units of the radius)."""
  name = SHAPES[shape]
  if name == 'disk':
    return np.sqrt(u * u + v * v)
  if name == 'square':
    return 1.15 * np.maximum(np.abs(u), np.abs(v))
  if name == 'diamond':
    return 0.8 * (np.abs(u) + np.abs(v))
  if name == 'triangle':
    return 1.6 * np.maximum(np.maximum(v, 0.866 * u - 0.5 * v), -0.866 * u - 0.5 * v)
  if name == 'ring':
    return np.abs(np.sqrt(u * u + v * v) - 0.7) / 0.3
  if name == 'cross':
    au, av = np.abs(u), np.abs(v)
    return np.minimum(np.maximum(au / 0.35, av), np.maximum(au, av / 0.35))
  return np.sqrt(u * u + (v / 0.45) ** 2)  # bar


def _render_object(frames, obj, grid):
  """Alpha-composites one object onto (T, H, W, 3) frames in place; returns its alpha."""
  size = grid.shape[0]
  # Torus offsets from the centre, in [-size/2, size/2).
  dx = np.mod(grid[None, None, :] - obj['x'][:, None, None] + size / 2, size) - size / 2
  dy = np.mod(grid[None, :, None] - obj['y'][:, None, None] + size / 2, size) - size / 2
  r = obj['r'][:, None, None]
  cos, sin = np.float32(np.cos(obj['angle'])), np.float32(np.sin(obj['angle']))
  u, v = (dx * cos + dy * sin) / r, (dy * cos - dx * sin) / r
  alpha = np.clip((1 - _shape_distance(obj['shape'], u, v)) * r + 0.5, 0, 1)
  f = obj['frequency'] * np.pi
  pattern = (1.0, 0.5 + 0.5 * np.sign(np.sin(f * u)),
             0.5 + 0.5 * np.sign(np.sin(f * u) * np.sin(f * v)))[obj['texture']]
  shade = (0.65 + 0.35 * np.asarray(pattern, np.float32))[..., None] * obj['colour'].astype(
      np.float32)
  frames *= 1 - alpha[..., None]
  frames += alpha[..., None] * shade
  return alpha


def _render_background(bg, num_frames, grid):
  size = grid.shape[0]
  x = grid[None, None, :] - bg['shift'][:, 0, None, None]
  y = grid[None, :, None] - bg['shift'][:, 1, None, None]
  frames = np.broadcast_to(bg['base'], (num_frames, size, size, 3)).astype(np.float32)
  for (kx, ky), phase, amp in zip(bg['waves'], bg['phases'], bg['amps']):
    wave = np.cos(2 * np.pi * (kx * x + ky * y) / size + phase)  # Periodic on the torus.
    frames = frames + wave[..., None] * amp
  return frames


def render(indices, *, num_frames=8, size=32, variant='motion', seed=0, split='train',
           classes='', num_distractors=1, background_speed=0.15, with_masks=True, speed=1.0):
  """Videos with the given indices (any order, any subset); see module docstring.

  speed: every velocity times `speed` (positions, sweep angles, size rates; the same random
  draws), so a clip shows `speed` x as much motion between frames: for the constant-velocity
  classes exactly a temporal stride of `speed` (the stride sweep's twin, appendix Fig. 1).
  """
  motion = _motion_classes(classes)
  grid = np.arange(size, dtype=np.float32) + 0.5
  n = len(indices)
  videos = np.empty((n, num_frames, size, size, 3), np.uint8)
  labels = np.empty((n,), np.int32)
  centers = np.empty((n, num_frames, 2), np.float32)
  masks = np.empty((n, num_frames, size, size), bool) if with_masks else None
  for i, index in enumerate(indices):
    label, objects, bg = _video_params(
        int(index), seed=seed, split=split, num_frames=num_frames, size=size, variant=variant,
        motion=motion, num_distractors=num_distractors, background_speed=background_speed,
        speed=speed)
    frames = _render_background(bg, num_frames, grid)
    for obj in objects[:0:-1]:  # Distractors first, the main object on top.
      _render_object(frames, obj, grid)
    alpha = _render_object(frames, objects[0], grid)
    videos[i] = np.round(np.clip(frames, 0, 1) * 255)
    labels[i] = label
    centers[i] = np.stack([objects[0]['y'], objects[0]['x']], -1)
    if with_masks:
      masks[i] = alpha > 0.5
  return SyntheticVideos(videos, labels, centers, masks, class_names(variant, classes))


def generate(num, *, start=0, **kwargs):
  """`num` consecutive videos from index `start`; kwargs as `render`."""
  return render(np.arange(start, start + num), **kwargs)


def render_segmentation(index, *, num_frames=16, size=64, num_objects=3, seed=0, split='test',
                        classes='', background_speed=0.0, min_pixels=12):
  """A multi-object video with per-pixel object ids (DAVIS-style semi-supervised segmentation).

  Every object moves by one of the motion classes (drawn at random), with the main object's
  size distribution and appearance; later objects are drawn on top. Returns (video (T, H, W, 3)
  uint8, ids (T, H, W) uint8: 0 background, k for object k where its alpha > 0.5). Scenes in
  which some object shows fewer than `min_pixels` pixels in the first frame are redrawn (from
  the same generator), so every object is annotated in frame 0 as DAVIS requires.
  """
  motion = _motion_classes(classes)
  rng = np.random.default_rng([seed, _SPLITS[split], index, 7])  # 7: apart from render()'s
  grid = np.arange(size, dtype=np.float32) + 0.5
  t = np.arange(num_frames, dtype=np.float64)
  tau = t / max(num_frames - 1, 1)
  for _ in range(100):
    bg_theta = rng.uniform(0, 2 * np.pi)
    bg = dict(base=rng.uniform(0.15, 0.45) + rng.uniform(-0.05, 0.05, 3),
              waves=rng.integers(-2, 3, (3, 2)), phases=rng.uniform(0, 2 * np.pi, 3),
              amps=rng.uniform(0.02, 0.06, (3, 3)),
              shift=rng.uniform(0, background_speed) * size * tau[:, None] * np.array(
                  [np.cos(bg_theta), np.sin(bg_theta)]))
    frames = _render_background(bg, num_frames, grid)
    ids = np.zeros((num_frames, size, size), np.uint8)
    for k in range(1, num_objects + 1):
      kind = motion[rng.integers(len(motion))]
      centre = np.mod(rng.uniform(0, size, 2) + _displacement(kind, tau, rng, size), size)
      obj = dict(x=centre[:, 0].astype(np.float32), y=centre[:, 1].astype(np.float32),
                 r=_radius(kind, t, num_frames, rng, size).astype(np.float32),
                 shape=int(rng.integers(len(SHAPES))), colour=_random_colour(rng),
                 angle=rng.uniform(0, 2 * np.pi), texture=int(rng.integers(3)),
                 frequency=rng.uniform(1.2, 2.5))
      ids[_render_object(frames, obj, grid) > 0.5] = k
    if all((ids[0] == k).sum() >= min_pixels for k in range(1, num_objects + 1)):
      break
  else:
    raise ConfigError(f'no scene with {num_objects} visible objects at size {size}; '
                      'use fewer objects or a larger size')
  return np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8), ids

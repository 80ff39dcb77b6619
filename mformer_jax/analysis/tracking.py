r"""Tracking score (beyond the paper): does a query's per-slot attention peak follow the object?

On the synthetic motion dataset every clip carries its object's per-frame centre and mask. For
every query point on the object in one temporal slot f0 (each patch the object covers by at least
a quarter, or that holds its centre; the point = the object pixels' mean inside the patch) and
every other slot f, the query's attention over slot f's P patches (`attention_maps.frame_maps`:
trajectory 'space'; joint restricted to the slot and renormalised; divided = time then space
composed) gives two predictions of where the point went:
  argmax    the centre of the most attended patch,
  centroid  the attention-weighted mean of the patch centres (a circular mean: the scene is a
            torus, objects wrap around the edges),
scored against target_f = query + (object centre at f - object centre at f0) (torus-wrapped):
mean pixel error, PCK at RADII pixels, and 'on object' (the argmax patch touches the object).
Maps are averaged over heads (per-head numbers are in the JSON). Reference rows: 'static' (the
query never moves: what no tracking scores) and 'oracle patch' (the patch holding the target:
the best an argmax over patches can do).

  python -m mformer_jax.analysis.tracking \
      --models=trajectory_s0=workdirs/track_trajectory_s0,joint_s0=workdirs/track_joint_s0 \
      --untrained=untrained=workdirs/track_trajectory_s0 --untrained_seeds=0,1 \
      --num_clips=128 --output=paper/tracking

Writes OUTPUT.json (everything) and OUTPUT.csv (one row per model and layer) and prints the
tables; models named NAME_sSEED are also summarised per NAME over seeds (mean +- std).
Results and commands: paper/tracking.md.
"""
import argparse
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from mformer_jax import model as model_lib
from mformer_jax import weights
from mformer_jax.data import synthetic, to_model_input
from mformer_jax.model import attention_maps
from mformer_jax.errors import ConfigError, UserError, exit_with

RADII = (4.0, 8.0, 16.0)   # pixels: half a patch, a patch, two patches of the demo's 8 px
MIN_COVER = 0.25           # a query patch is at least this much object


def wrap(d, period=None):
  """Differences wrapped into [-period/2, period/2) (None: plain differences)."""
  return d if period is None else np.mod(d + period / 2, period) - period / 2


def peaks(fmap, centres, period=None):
  """fmap (..., P) weights over patches with pixel centres (P, 2) -> (argmax, centroid), each
  (..., 2) pixels. On a torus (period) the centroid is the circular mean per axis."""
  argmax = centres[np.argmax(fmap, -1)]
  w = fmap / fmap.sum(-1, keepdims=True)
  if period is None:
    return argmax, np.einsum('...p,pc->...c', w, centres)
  angle = 2 * np.pi * centres / period
  mean = np.arctan2(np.einsum('...p,pc->...c', w, np.sin(angle)),
                    np.einsum('...p,pc->...c', w, np.cos(angle)))
  return argmax, np.mod(mean * period / (2 * np.pi), period)


def errors(pred, target, period=None):
  """Euclidean pixel distance (...,) between (..., 2) points (torus-wrapped with period)."""
  return np.linalg.norm(wrap(np.asarray(pred) - np.asarray(target), period), axis=-1)


def pck(err, radii=RADII):
  """{radius: fraction of errors <= radius}."""
  err = np.asarray(err)
  return {r: float(np.mean(err <= r)) for r in radii}


def summary(err_argmax, err_centroid, on_object, radii=RADII):
  """The table's numbers for one set of predictions (flat arrays over query x slot pairs)."""
  out = {'argmax_error': float(np.mean(err_argmax)), 'centroid_error': float(np.mean(err_centroid)),
         'on_object': float(np.mean(on_object)), 'pairs': int(np.size(err_argmax))}
  out.update({f'argmax_pck@{r:g}': v for r, v in pck(err_argmax, radii).items()})
  out.update({f'centroid_pck@{r:g}': v for r, v in pck(err_centroid, radii).items()})
  return out


def slot_geometry(centres, masks, tubelet: int, period=None):
  """Per temporal slot: object centre (F, 2) (circular mean of the tubelet's frames on a
  torus), 'all' mask (F, S, S) (object in every frame of the tubelet) and 'any' mask."""
  t = centres.shape[0]
  c = np.asarray(centres, np.float64).reshape(t // tubelet, tubelet, 2)
  if period is None:
    centre = c.mean(1)
  else:
    angle = 2 * np.pi * c / period
    centre = np.mod(np.arctan2(np.sin(angle).mean(1), np.cos(angle).mean(1)) * period
                    / (2 * np.pi), period)
  m = masks.reshape(t // tubelet, tubelet, *masks.shape[1:])
  return centre, m.all(1), m.any(1)


def queries(mask, centre, patch: int):
  """Query points on the object in one slot: [(patch index, (row, col) point)].

  mask (S, S) bool; a patch qualifies when the object covers >= MIN_COVER of it or holds its
  centre; the point is the mean of the object pixels inside the patch.
  """
  s = mask.shape[0]
  g = s // patch
  tiles = mask.reshape(g, patch, g, patch).transpose(0, 2, 1, 3).reshape(g * g, patch, patch)
  holds_centre = (int(centre[0]) // patch) * g + int(centre[1]) // patch
  out = []
  for i, tile in enumerate(tiles):
    if tile.any() and (tile.mean() >= MIN_COVER or i == holds_centre):
      rows, cols = np.nonzero(tile)
      out.append((i, np.array([(i // g) * patch + rows.mean() + 0.5,
                               (i % g) * patch + cols.mean() + 0.5])))
  return out


def touches(mask, patch_index, patch: int) -> bool:
  """Whether the object (mask (S, S)) covers any pixel of patch `patch_index`."""
  g = mask.shape[0] // patch
  r, c = (patch_index // g) * patch, (patch_index % g) * patch
  return bool(mask[r:r + patch, c:c + patch].any())


def clip_pairs(fmaps, centres, masks, cfg, period=None):
  """Predictions vs targets of every (query on the object, other slot) pair of one clip.

  fmaps (L, heads, N, F, P) frame maps of the clip. Returns {name: array}, Q pairs first:
  target (Q, 2); argmax/centroid (Q, L, 1+heads, 2) (head index 0 = the head mean, then each
  head); hit (Q, L, 1+heads) the argmax patch touches the object; static/static_hit and
  oracle/oracle_hit (Q, 2) / (Q,); motion (Q,) how far the object moved from f0 to f (px).
  """
  s = masks.shape[-1]
  p = cfg.patch_size
  f = cfg.temporal_slots
  grid = attention_maps.patch_centres(cfg, s)
  centre, all_mask, any_mask = slot_geometry(centres, masks, cfg.tubelet_size, period)
  per_head = np.concatenate([fmaps.mean(1, keepdims=True), fmaps], axis=1)  # (L, 1+h, N, F, P)
  rows = {k: [] for k in ('target', 'argmax', 'centroid', 'hit', 'static', 'static_hit',
                          'oracle', 'oracle_hit', 'motion')}
  for f0 in range(f):
    for patch_index, point in queries(all_mask[f0], centre[f0], p):
      n = f0 * grid.shape[0] + patch_index
      for f1 in range(f):
        if f1 == f0:
          continue
        motion = wrap(centre[f1] - centre[f0], period)
        target = point + motion
        target = target if period is None else np.mod(target, period)
        am, cm = peaks(per_head[:, :, n, f1], grid, period)
        best = np.argmax(per_head[:, :, n, f1], -1)
        oracle = (int(target[0]) // p) * (s // p) + int(target[1]) // p
        rows['target'].append(target)
        rows['argmax'].append(am)
        rows['centroid'].append(cm)
        rows['hit'].append(np.vectorize(lambda i: touches(any_mask[f1], i, p))(best))
        rows['static'].append(grid[patch_index])
        rows['static_hit'].append(touches(any_mask[f1], patch_index, p))
        rows['oracle'].append(grid[oracle])
        rows['oracle_hit'].append(touches(any_mask[f1], oracle, p))
        rows['motion'].append(np.linalg.norm(motion))
  return {k: np.asarray(v) for k, v in rows.items()}


def score(model, variables, data, *, batch_size=16, period=None):
  """Tracking numbers of one model on `data` (synthetic.SyntheticVideos).

  {'all': ..., 'moved': ...}: every pair, and the pairs in which the object moved at least a
  patch (where staying put is wrong); each {'layers': [{'mean': head-averaged maps, 'heads':
  [per head]}], 'static': ..., 'oracle': ...}.
  """
  cfg = model.cfg
  pairs = []
  for lo in range(0, len(data.videos), batch_size):
    clip = to_model_input(jnp.asarray(data.videos[lo:lo + batch_size]),
                          attention_maps.input_bgr(cfg))
    fmaps = np.asarray(attention_maps.frame_maps(
        attention_maps.compute(model, variables, clip), cfg), np.float32)  # (L, B, h, N, F, P)
    for b in range(clip.shape[0]):
      pairs.append(clip_pairs(fmaps[:, b], data.centers[lo + b], data.masks[lo + b], cfg, period))
  cat = {k: np.concatenate([p[k] for p in pairs]) for k in pairs[0]}
  out = {}
  for subset, keep in (('all', slice(None)), ('moved', cat['motion'] >= cfg.patch_size)):
    c = {k: v[keep] for k, v in cat.items()}
    err = lambda pred, c=c: errors(pred, c['target'], period)
    layers = []
    for i in range(c['argmax'].shape[1]):
      heads = [summary(err(c['argmax'][:, i, h]), err(c['centroid'][:, i, h]), c['hit'][:, i, h])
               for h in range(c['argmax'].shape[2])]
      layers.append({'mean': heads[0], 'heads': heads[1:]})
    static, oracle = err(c['static']), err(c['oracle'])
    out[subset] = {'layers': layers, 'static': summary(static, static, c['static_hit']),
                   'oracle': summary(oracle, oracle, c['oracle_hit'])}
  return out


def _table(results, subset, radii=RADII):
  """Markdown rows: model, layer, errors, PCK (argmax / centroid), on object."""
  results = {name: r[subset] for name, r in results.items()}
  head = ('| model | layer | argmax err (px) | centroid err (px) | '
          + ' | '.join(f'PCK@{r:g} argmax / centroid' for r in radii) + ' | argmax on object |')
  lines = [head, '|' + ' --- |' * (5 + len(radii))]

  def row(name, layer, s):
    pcks = ' | '.join(f"{s[f'argmax_pck@{r:g}']:.2f} / {s[f'centroid_pck@{r:g}']:.2f}"
                      for r in radii)
    return (f"| {name} | {layer} | {s['argmax_error']:.2f} | {s['centroid_error']:.2f} | "
            f"{pcks} | {s['on_object']:.2f} |")

  first = next(iter(results.values()))
  lines.append(row('static (no motion)', '-', first['static']))
  lines.append(row('oracle patch', '-', first['oracle']))
  for name, r in results.items():
    for i, layer in enumerate(r['layers']):
      lines.append(row(name, i, layer['mean']))
  return '\n'.join(lines)


def seed_table(results, subset, keys=('argmax_error', 'centroid_error', 'argmax_pck@8',
                                       'centroid_pck@8', 'on_object')):
  """Markdown: models named NAME_sSEED grouped by NAME, per layer mean +- std over seeds."""
  groups = {}
  for name, r in results.items():
    groups.setdefault(name.rsplit('_s', 1)[0], []).append(r[subset])
  lines = ['| model | seeds | layer | ' + ' | '.join(keys) + ' |', '|' + ' --- |' * (3 + len(keys))]
  for name, runs in groups.items():
    for i in range(len(runs[0]['layers'])):
      cells = []
      for k in keys:
        v = np.array([r['layers'][i]['mean'][k] for r in runs])
        cells.append(f'{v.mean():.2f} ± {v.std():.2f}' if len(v) > 1 else f'{v[0]:.2f}')
      lines.append(f'| {name} | {len(runs)} | {i} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def _csv(results, radii=RADII):
  keys = (['argmax_error', 'centroid_error', 'on_object', 'pairs']
          + [f'{k}_pck@{r:g}' for k in ('argmax', 'centroid') for r in radii])
  lines = ['subset,model,layer,' + ','.join(keys)]
  for subset in ('all', 'moved'):
    for name, r in results.items():
      for i, layer in enumerate(r[subset]['layers']):
        lines.append(f'{subset},{name},{i},' + ','.join(f"{layer['mean'][k]:.4f}" for k in keys))
    first = next(iter(results.values()))[subset]
    for name in ('static', 'oracle'):
      lines.append(f'{subset},{name},-,' + ','.join(f'{first[name][k]:.4f}' for k in keys))
  return '\n'.join(lines) + '\n'


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m mformer_jax.analysis.tracking',
                              description=__doc__.split('\n')[0])
  p.add_argument('--models', default='',
                 help='NAME=SOURCE,... (anything weights.load_model takes).')
  p.add_argument('--untrained', default='', help="NAME=SOURCE,...: these configs with fresh "
                 "weights (the trainer's init, one model per --untrained_seeds).")
  p.add_argument('--untrained_seeds', default='0', help='Init seeds of the untrained models.')
  p.add_argument('--num_clips', type=int, default=128, help='Synthetic test clips.')
  p.add_argument('--data_seed', type=int, default=0, help='Synthetic dataset seed (test split).')
  p.add_argument('--classes', default='move_right,move_left,move_down,move_up',
                 help="Synthetic motion classes (the demo's by default).")
  p.add_argument('--no_wrap', action='store_true',
                 help='Plain (not torus) distances and centroids.')
  p.add_argument('--output', default='paper/tracking', help='Writes OUTPUT.json and OUTPUT.csv.')
  f = p.parse_args(argv)
  try:
    sources = dict(item.split('=', 1) for item in f.models.split(',') if item) if f.models else {}
    if not sources and not f.untrained:
      raise ConfigError('nothing to score: give --models and/or --untrained (NAME=SOURCE,...)')
    models = {name: weights.load_model(src) for name, src in sources.items()}
    untrained = dict(item.split('=', 1) for item in f.untrained.split(',') if item)
    for name, src in untrained.items():       # the trained model's config, fresh weights
      model = weights.load_model(src)[0]
      for seed in (int(s) for s in f.untrained_seeds.split(',')):
        variables = model_lib.init_variables(model, jax.random.key(seed), random_tubelet=True)
        models[f'{name}_s{seed}'] = (model, jax.device_get(variables))
  except UserError as e:
    exit_with(e, prog='tracking')
  cfg = next(iter(models.values()))[0].cfg
  data = synthetic.generate(f.num_clips, num_frames=cfg.num_frames, size=cfg.img_size,
                            seed=f.data_seed, split='test', classes=f.classes,
                            num_distractors=0, background_speed=0.0)
  period = None if f.no_wrap else cfg.img_size
  results = {}
  for name, (model, variables) in models.items():
    results[name] = score(model, variables, data, period=period)
    print(f'scored {name}', flush=True)
  meta = dict(num_clips=f.num_clips, data_seed=f.data_seed, classes=f.classes, radii=RADII,
              sources=sources, untrained=untrained, untrained_seeds=f.untrained_seeds,
              torus=period is not None,
              model=dataclasses.asdict(cfg))
  os.makedirs(os.path.dirname(os.path.abspath(f.output)), exist_ok=True)
  with open(f.output + '.json', 'w') as fh:
    json.dump({'meta': meta, 'results': results}, fh, indent=1)
  with open(f.output + '.csv', 'w') as fh:
    fh.write(_csv(results))
  print('All pairs:\n' + _table(results, 'all'))
  print(f'Pairs where the object moved >= {cfg.patch_size} px:\n' + _table(results, 'moved'))
  for subset in ('all', 'moved'):
    print(f'Over seeds ({subset} pairs):\n' + seed_table(results, subset))


if __name__ == '__main__':
  main()

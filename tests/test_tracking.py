"""Tracking score: the metric functions on constructed maps with known answers, and one run."""
import os
import types

import numpy as np
import pytest

from mformer_jax import weights
from mformer_jax.analysis import tracking
from mformer_jax.model import attention_maps
from mformer_jax.data import synthetic
from mformer_jax.model import ModelConfig

CFG = ModelConfig(num_frames=8, img_size=32, pretrain_img_size=32, patch_size=8, embed_dim=16,
                  depth=2, num_heads=2, num_classes=4)
GRID = attention_maps.patch_centres(CFG, 32)        # 4 x 4 patches of 8 px


def test_peaks_errors_pck():
  one_hot = np.eye(16)[[5, 6, 7]]                    # patches (1, 1), (1, 2), (1, 3)
  argmax, centroid = tracking.peaks(one_hot, GRID)
  np.testing.assert_array_equal(argmax, [[12, 12], [12, 20], [12, 28]])
  np.testing.assert_allclose(centroid, argmax)
  assert tracking.errors(argmax, centroid).tolist() == [0, 0, 0]
  assert tracking.pck([0, 3, 5, 9, 20]) == {4.0: 0.4, 8.0: 0.6, 16.0: 0.8}
  # Half the weight on column 4, half on column 28 of row 4: plain mean 16, torus mean 0 (= 32).
  split = np.zeros(16)
  split[[0, 3]] = 0.5
  assert tracking.peaks(split, GRID)[1].tolist() == [4, 16]
  assert tracking.errors(tracking.peaks(split, GRID, period=32)[1], [4, 0], period=32) < 1e-9
  assert tracking.errors([1, 1], [31, 1], period=32) == 2
  assert tracking.errors([1, 1], [31, 1]) == 30


def _square_clip(speed=8):
  """An 8 x 8 square on patch row 1 moving right by `speed` px per slot (still within one)."""
  t, s = CFG.num_frames, 32
  masks = np.zeros((t, s, s), bool)
  centres = np.zeros((t, 2), np.float32)
  for i in range(t):
    col = ((i // 2) * speed) % s
    masks[i, 8:16, col:col + 8] = True
    centres[i] = (12, col + 4)
  return centres, masks


def test_one_hot_map_on_the_object_path_scores_perfectly():
  centres, masks = _square_clip()
  f, n = CFG.temporal_slots, 64
  fmaps = np.full((2, 2, n, f, 16), 1 / 16)          # layer 1: uniform
  for query in range(n):
    f0, p0 = divmod(query, 16)
    for f1 in range(f):                               # layer 0: one-hot on the moved patch
      row, col = divmod(p0, 4)
      fmaps[0, :, query, f1] = np.eye(16)[row * 4 + (col + f1 - f0) % 4]
  pairs = tracking.clip_pairs(fmaps, centres, masks, CFG, period=32)
  assert len(pairs['target']) == f * (f - 1)          # one query patch per slot, 3 other slots
  np.testing.assert_allclose(pairs['motion'], np.abs([8 * (b - a) if abs(b - a) < 2 else 32 -
                                                      8 * abs(b - a) for a in range(f)
                                                      for b in range(f) if a != b]),
                             atol=1e-9)
  err = tracking.errors(pairs['argmax'][:, 0, 0], pairs['target'], 32)
  s = tracking.summary(err, tracking.errors(pairs['centroid'][:, 0, 0], pairs['target'], 32),
                       pairs['hit'][:, 0, 0])
  assert s['argmax_error'] < 1e-9 and s['centroid_error'] < 1e-9 and s['on_object'] == 1
  assert all(s[f'argmax_pck@{r:g}'] == 1 for r in tracking.RADII)
  # The uniform layer's argmax is patch 0 and its torus centroid undefined-but-finite; the
  # static prediction is off by exactly the motion, the oracle patch is exact here.
  np.testing.assert_allclose(tracking.errors(pairs['static'], pairs['target'], 32),
                             pairs['motion'])
  np.testing.assert_allclose(tracking.errors(pairs['oracle'], pairs['target'], 32), 0,
                             atol=1e-9)
  assert pairs['static_hit'].mean() == 0 and pairs['hit'][:, 1, 0].mean() < 1


def test_queries_cover_and_point():
  mask = np.zeros((32, 32), bool)
  mask[10:14, 0:2] = True                             # 8 px of patch 4: below MIN_COVER...
  assert tracking.queries(mask, (11, 20), 8) == []
  got = tracking.queries(mask, (11, 1), 8)            # ...unless it holds the centre
  assert [i for i, _ in got] == [4] and got[0][1].tolist() == [12, 1]


def test_frame_maps_joint_and_divided():
  f, p = 4, 16
  n = f * p
  rng = np.random.default_rng(0)
  joint = rng.uniform(size=(1, 1, 2, 1 + n, 1 + n))
  cfg = ModelConfig(**{**CFG.__dict__, 'attention': 'joint'})
  fm = np.asarray(attention_maps.frame_maps({'joint': joint}, cfg))
  assert fm.shape == (1, 1, 2, n, f, p)
  row = joint[0, 0, 1, 1 + 17, 1 + 2 * p:1 + 3 * p]
  np.testing.assert_allclose(fm[0, 0, 1, 17, 2], row / row.sum(), rtol=1e-6)
  # Divided: query (f0=1, p0=3) looks at patch 9 of its slot; token (1, 9) spreads evenly
  # over the slots: every slot's map is one-hot at patch 9.
  space = np.full((1, 1, 1, n, 1 + p), 1.0 / (1 + p))
  time = np.full((1, 1, 1, n, 1 + f), 1.0 / (1 + f))
  space[0, 0, 0, p + 3] = np.eye(1 + p)[1 + 9]
  cfg = ModelConfig(**{**CFG.__dict__, 'attention': 'divided'})
  fm = np.asarray(attention_maps.frame_maps({'space': space, 'time': time}, cfg))
  np.testing.assert_allclose(fm[0, 0, 0, p + 3], np.eye(p)[[9] * f], atol=1e-6)
  np.testing.assert_allclose(fm.sum(-1), 1, rtol=1e-6)
  with pytest.raises(ValueError, match='never looks at another'):
    attention_maps.frame_maps({'space': space}, ModelConfig(**{**CFG.__dict__,
                                                               'attention': 'space'}))


def _known_maps(centres, masks):
  """(L=2, heads=2, N, F, P) maps of one clip: layer 0 one-hot on the patch the query's object
  patch moved to (a perfect tracker), layer 1 one-hot on the query's own patch (static)."""
  f, g = CFG.temporal_slots, 4
  slot_col = centres[::CFG.tubelet_size, 1] // 8    # the object's patch column per slot
  fmaps = np.zeros((2, 2, f * g * g, f, g * g))
  for query in range(f * g * g):
    f0, p0 = divmod(query, g * g)
    row, col = divmod(p0, g)
    for f1 in range(f):
      fmaps[0, :, query, f1, row * g + int(col + slot_col[f1] - slot_col[f0]) % g] = 1
      fmaps[1, :, query, f1, p0] = 1
  return fmaps


def test_score_of_known_maps(monkeypatch):
  """score() end to end on maps whose numbers are known: clip 0's square moves a patch per slot,
  clip 1's stays put. Its 24 pairs (12 per clip): the tracker is exact; the static map is off by
  0 px in clip 1 and, on the torus, by 8 px (slots 1 or 3 apart: 8 pairs) or 16 px (2 apart: 4)
  in clip 0."""
  clips = [_square_clip(8), _square_clip(0)]
  data = synthetic.SyntheticVideos(
      videos=np.zeros((2, 8, 32, 32, 3), np.uint8), labels=np.zeros(2, np.int32),
      centers=np.stack([c for c, _ in clips]), masks=np.stack([m for _, m in clips]),
      class_names=['x'])
  maps = np.stack([_known_maps(c, m) for c, m in clips], 1)   # (L, B, heads, N, F, P)
  monkeypatch.setattr(attention_maps, 'compute', lambda *a, **kw: None)
  monkeypatch.setattr(attention_maps, 'frame_maps', lambda *a: maps)
  model = types.SimpleNamespace(cfg=CFG)
  out = tracking.score(model, None, data, batch_size=2, period=32)
  exact = {'argmax_error': 0.0, 'centroid_error': 0.0, 'on_object': 1.0, 'argmax_pck@4': 1.0,
           'argmax_pck@8': 1.0, 'argmax_pck@16': 1.0, 'centroid_pck@4': 1.0,
           'centroid_pck@8': 1.0, 'centroid_pck@16': 1.0}
  static = {'argmax_error': (8 * 8 + 4 * 16) / 24, 'on_object': 0.5, 'argmax_pck@4': 0.5,
            'argmax_pck@8': 20 / 24, 'argmax_pck@16': 1.0}
  moved = {'argmax_error': (8 * 8 + 4 * 16) / 12, 'on_object': 0.0, 'argmax_pck@4': 0.0,
           'argmax_pck@8': 8 / 12, 'argmax_pck@16': 1.0}
  for subset, pairs, want in (('all', 24, static), ('moved', 12, moved)):
    o = out[subset]
    assert [len(o['layers']), len(o['layers'][0]['heads'])] == [2, 2]
    assert o['layers'][0]['mean'] == {**exact, 'pairs': pairs}
    assert o['layers'][0]['heads'] == [{**exact, 'pairs': pairs}] * 2
    got = o['layers'][1]['mean']
    assert {k: got[k] for k in want} == pytest.approx(want, abs=1e-12)
    assert o['static'] == got                 # the static map predicts what 'static' does
    assert o['oracle'] == {**exact, 'pairs': pairs}  # every target is a patch centre here


def test_score_runs_on_a_model():
  """The same on a real model (its maps, any numbers): what does not depend on them."""
  path = os.path.join(os.path.dirname(__file__), 'goldens', 'model_maps_trajectory.npz')
  model, variables = weights.load_official(path)
  data = synthetic.generate(3, num_frames=8, size=32, classes='move_right,move_left',
                            num_distractors=0, background_speed=0.0)
  out = tracking.score(model, variables, data, batch_size=2, period=32)
  for subset in ('all', 'moved'):
    assert len(out[subset]['layers']) == 2 and len(out[subset]['layers'][0]['heads']) == 4
    pairs = out[subset]['static']['pairs']
    assert [l['mean']['pairs'] for l in out[subset]['layers']] == [pairs, pairs]
    # The oracle patch holds the target: at most half a patch diagonal (5.7 px) away.
    assert out[subset]['oracle']['argmax_pck@8'] == 1.0


def test_seed_table_groups_seeds():
  layer = lambda v: {'layers': [{'mean': {'argmax_error': v, 'centroid_error': v,
                                          'argmax_pck@8': 0.5, 'centroid_pck@8': 0.5,
                                          'on_object': v / 10}}]}
  results = {'traj_s0': {'all': layer(2.0)}, 'traj_s1': {'all': layer(4.0)},
             'joint_s0': {'all': layer(1.0)}}
  rows = tracking.seed_table(results, 'all').splitlines()
  assert rows[2] == '| traj | 2 | 0 | 3.00 ± 1.00 | 3.00 ± 1.00 | 0.50 ± 0.00 | 0.50 ± 0.00 | 0.30 ± 0.10 |'
  assert rows[3] == '| joint | 1 | 0 | 1.00 | 1.00 | 0.50 | 0.50 | 0.10 |'

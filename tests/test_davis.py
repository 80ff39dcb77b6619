"""DAVIS-2017 label propagation: metrics against the official code (davis_metrics), the layout
reader (davis_layout), the command (davis) end to end."""
import pathlib

import numpy as np
import pytest

from mformer_jax.analysis import davis, davis_layout, davis_metrics
from mformer_jax.errors import InputError

REFERENCE = pathlib.Path(__file__).parent / 'data' / 'davis_reference.npz'


@pytest.fixture(scope='module')
def ref():
  return dict(np.load(REFERENCE))


def _masks(ref, case):
  shape = tuple(ref[f'{case}/shape'])
  size = int(np.prod(shape))
  unpack = lambda key: np.unpackbits(ref[f'{case}/{key}'])[:size].reshape(shape).astype(bool)
  return unpack('gt'), unpack('pred')


def _cases(ref):
  return sorted({k.split('/')[0] for k in ref if k.endswith('/J')})


def test_reference_covers_the_hard_cases(ref):
  cases = _cases(ref)
  for kind in ('blobs', 'shift', 'noisy', 'thin', 'empty_gt', 'empty_pred', 'both_empty', 'full'):
    assert any(c.startswith(kind + '_') for c in cases), kind
  assert tuple(ref['blobs_480p/shape']) == (3, 480, 854)


def test_jaccard_and_f_measure_equal_the_official_code(ref):
  for case in _cases(ref):
    gt, pred = _masks(ref, case)
    np.testing.assert_allclose(davis_metrics.jaccard(gt, pred), ref[f'{case}/J'], rtol=0, atol=1e-12,
                               err_msg=case)
    np.testing.assert_allclose(davis_metrics.f_measure(gt, pred), ref[f'{case}/F'], rtol=0, atol=1e-12,
                               err_msg=case)


def test_empty_mask_conventions(ref):
  gt, _ = _masks(ref, 'blobs_small')
  empty = np.zeros_like(gt)
  np.testing.assert_array_equal(davis_metrics.jaccard(empty, empty), 1.0)
  np.testing.assert_array_equal(davis_metrics.f_measure(empty, empty), 1.0)
  np.testing.assert_array_equal(davis_metrics.f_measure(gt, empty)[gt.any(axis=(1, 2))], 0.0)
  np.testing.assert_array_equal(davis_metrics.jaccard(gt, gt), 1.0)


def test_dilation_is_a_disk_of_the_diagonal_tolerance():
  assert davis_metrics.disk_radius((480, 854)) == 8.0
  assert davis_metrics.disk_radius((24, 36)) == 1.0
  point = np.zeros((41, 41), bool)
  point[20, 20] = True
  disk = davis_metrics.dilate_disk(point, 8.0)
  yy, xx = np.mgrid[-20:21, -20:21]
  np.testing.assert_array_equal(disk, yy ** 2 + xx ** 2 <= 64)


def test_statistics_equal_db_statistics(ref):
  for key in [k for k in ref if k.startswith('stats_') and k.endswith('/values')]:
    case = key.split('/')[0]
    np.testing.assert_allclose(davis_metrics.statistics(ref[key]), ref[f'{case}/MRD'], rtol=0,
                               atol=1e-12, equal_nan=True, err_msg=case)


def test_sequence_evaluation_and_csvs_equal_the_official_tool(ref):
  seqs = ('alpha', 'beta', 'gamma')
  summary = davis_metrics.summarise(
      {s: davis_metrics.evaluate_sequence(ref[f'eval_{s}/gt'], ref[f'eval_{s}/pred']) for s in seqs})
  assert list(summary['objects']) == list(ref['eval/object_names'])
  for metric in 'JF':
    for key, column in (('M', 'Mean'), ('R', 'Recall'), ('D', 'Decay')):
      ours = [o[f'{metric}-{column}'] for o in summary['objects'].values()]
      np.testing.assert_allclose(ours, ref[f'eval/{metric}_{key}'], rtol=0, atol=1e-12)
  glob, per_seq = davis_metrics.results_csvs(summary)
  assert glob == str(ref['eval/global_results-val.csv'])
  assert per_seq == str(ref['eval/per-sequence_results-val.csv'])


def test_j_and_f_of_a_case_known_by_hand():
  """Two 4x4 squares in 5 frames of 16x16 (frames 0 and 4 unscored): object 1 predicted exactly
  (J = F = 1), object 2 missed (J = F = 0) but in frame 2, where its left half is found:
  J = 8/16. F: the square's boundary map (pixels differing from their east, south or south-east
  neighbour) has 16 pixels, the half's 12; within the tolerance (radius ceil(0.008 * 22.6) = 1:
  the 4-neighbours) 11 of the half's lie near the square's (P = 11/12) and 11 of the square's
  near the half's (R = 11/16): F = 2PR / (P + R) = 11/14. Globally J = (1 + 1/6) / 2 = 7/12,
  F = (1 + 11/42) / 2 = 53/84, J&F = 17/28 (means over objects)."""
  gt = np.zeros((5, 16, 16), np.uint8)
  gt[:, 2:6, 2:6], gt[:, 9:13, 9:13] = 1, 2
  pred = np.where(gt == 1, 1, 0).astype(np.uint8)
  pred[2, 9:13, 9:11] = 2
  j, f = davis_metrics.evaluate_sequence(gt, pred)
  np.testing.assert_array_equal(j, [[1, 1, 1], [0, 0.5, 0]])
  np.testing.assert_allclose(f, [[1, 1, 1], [0, 11 / 14, 0]], rtol=0, atol=1e-15)
  assert davis_metrics.boundary_map(gt[2] == 2).sum() == 16 and davis_metrics.boundary_map(pred[2] == 2).sum() == 12
  g = davis_metrics.summarise({'seq': (j, f)})['global']
  assert [g['J&F-Mean'], g['J-Mean'], g['F-Mean']] == pytest.approx([17 / 28, 7 / 12, 53 / 84],
                                                                    abs=1e-15)
  assert davis_metrics.results_csvs(davis_metrics.summarise({'seq': (j, f)}))[0].splitlines()[1].startswith(
      '0.607,0.583,')


def test_prediction_with_an_unknown_object_is_an_error(ref):
  gt = ref['eval_beta/gt']
  with pytest.raises(ValueError, match='first frame only 2 objects'):
    davis_metrics.evaluate_sequence(gt, np.full_like(gt, 3))


# --- the DAVIS layout reader ---------------------------------------------------------------


@pytest.fixture(scope='module')
def twin(tmp_path_factory):
  root = tmp_path_factory.mktemp('davis') / 'DAVIS'
  names = davis_layout.write_synthetic(root, 2, num_frames=8, size=32, num_objects=2)
  return root, names


def test_reader_reads_the_twin(twin):
  root, names = twin
  assert davis_layout.sequence_names(root) == names
  seq = davis_layout.load_sequence(root, names[0])
  assert seq.frames.shape == (8, 32, 32, 3) and seq.frames.dtype == np.uint8
  assert seq.annotations.shape == (8, 32, 32)
  assert seq.num_objects == 2 and set(np.unique(seq.annotations[0])) == {0, 1, 2}
  assert seq.frame_names == [f'{i:05d}' for i in range(8)]


def _copy(root, tmp_path):
  import shutil
  dst = tmp_path / 'DAVIS'
  shutil.copytree(root, dst)
  return dst


def test_reader_errors(twin, tmp_path):
  root, names = twin
  with pytest.raises(InputError, match='is not a folder'):
    davis_layout.sequence_names(tmp_path / 'nowhere')
  with pytest.raises(InputError, match='not a DAVIS-2017 root: no JPEGImages/480p'):
    davis_layout.sequence_names(root / 'Annotations')
  with pytest.raises(InputError, match='no sequence list .*train.txt'):
    davis_layout.sequence_names(root, 'train')
  bad = _copy(root, tmp_path)
  (bad / 'ImageSets/2017/val.txt').write_text('\n'.join(names + ['ghost']))
  assert davis_layout.sequence_names(bad)[-1] == 'ghost'
  with pytest.raises(InputError, match="sequence 'ghost': no frames"):
    davis_layout.load_sequence(bad, 'ghost')
  ann = bad / 'Annotations/480p' / names[0]
  (ann / '00003.png').rename(ann / '00042.png')
  with pytest.raises(InputError, match=r"without a frame: \['00042'\], without an "
                     r"annotation: \['00003'\]"):
    davis_layout.load_sequence(bad, names[0])
  ann = bad / 'Annotations/480p' / names[1]
  davis_layout.save_ids(np.zeros((16, 16), np.uint8), ann / '00002.png')
  with pytest.raises(InputError, match='00002.png is 16x16 but its frames are 32x32'):
    davis_layout.load_sequence(bad, names[1])


def test_first_frame_only_annotations_are_read(twin, tmp_path):
  root, names = twin
  bad = _copy(root, tmp_path)
  for p in sorted((bad / 'Annotations/480p' / names[0]).glob('*.png'))[1:]:
    p.unlink()
  seq = davis_layout.load_sequence(bad, names[0])
  assert seq.annotations.shape == (1, 32, 32) and len(seq.frames) == 8


def test_cli_bad_root_is_one_line_and_status_2(tmp_path, capsys):
  status = davis.main(['--davis_root', str(tmp_path), '--features=oracle', '--out',
                       str(tmp_path / 'out')])
  err = capsys.readouterr().err.strip()
  assert status == 2 and len(err.splitlines()) == 1
  assert err.startswith('davis: error: ') and 'not a DAVIS-2017 root' in err


# --- propagation --------------------------------------------------------------------------


def test_clip_plans_give_every_frame_its_own_tubelet():
  from mformer_jax.analysis import label_propagation as lp
  for t in (1, 5, 8, 13):
    plan = lp.clip_plan(t, 8, 2, 'repeat')
    assert len(plan) == -(-t // 4)
    covered = {}
    for frames, slots in plan:
      assert len(frames) == 8 and np.all(frames[0::2] == frames[1::2])  # repeated frames
      covered.update({f: frames[2 * s] for s, f in slots.items()})
    assert covered == {f: f for f in range(t)}
    covered = {}
    for frames, slots in lp.clip_plan(t, 8, 2, 'sliding'):
      assert np.all(np.diff(frames) >= 0) and np.all(np.diff(frames) <= 1)  # a real clip
      for s, f in slots.items():  # frame f starts its slot's tubelet (f, f + 1)
        assert frames[2 * s] == f and frames[2 * s + 1] == min(f + 1, t - 1)
        covered[f] = True
    assert sorted(covered) == list(range(t))


def _protocol(name='videowalk', **changes):
  import dataclasses
  from mformer_jax.analysis import label_propagation as lp
  return dataclasses.replace(lp.PROTOCOLS[name], **changes)


def test_propagation_follows_the_features():
  from mformer_jax.analysis import label_propagation as lp
  # 4x4 cells; frame 0 labels the left half 1, the right half 2. In frame 1 the features of
  # the two halves swap, so the labels must swap too.
  left = np.zeros((4, 4, 2), np.float32)
  left[:, :2, 0], left[:, 2:, 1] = 1, 1
  feats = np.stack([left, left[:, ::-1]])
  labels = np.zeros((4, 4, 3), np.float32)
  labels[:, :2, 1], labels[:, 2:, 2] = 1, 1
  out = lp.propagate(feats, labels, _protocol(topk=4, context=2, radius=12))
  np.testing.assert_allclose(out[1], labels[:, ::-1], atol=1e-6)
  # videowalk: the radius applies to the queue, not to the first frame: cells 3 columns away
  # from any same-feature context cell still find it in frame 0.
  out = lp.propagate(feats, labels, _protocol(topk=4, context=2, radius=1))
  np.testing.assert_allclose(out[1], labels[:, ::-1], atol=1e-6)
  # DINO: the window masks the first frame too; within 1 cell the swapped halves' columns 1
  # and 2 still reach a matching cell, columns 0 and 3 only the other label's (the window's
  # best), so they keep their own label (at temperature 0.1 a mismatch weighs e^-10 / match).
  out = lp.propagate(feats, labels, _protocol('dino', topk=4, radius=1))
  np.testing.assert_allclose(out[1][:, 1:3], labels[:, ::-1][:, 1:3], atol=1e-4)
  np.testing.assert_allclose(out[1][:, [0, 3]], labels[:, [0, 3]], atol=1e-4)


def test_neighbourhoods_disk_is_strict_square_is_inclusive():
  from mformer_jax.analysis import label_propagation as lp
  bias = lp.neighbourhood_bias((5, 5), 2.0)
  assert bias.shape == (25, 25)
  assert bias[12, 12 + 1] == 0 and bias[12, 12 + 5 + 1] == 0  # distances 1 and sqrt(2)
  assert bias[12, 12 + 2] == -1e10  # distance 2 is not < 2 (videowalk's mask)
  square = lp.neighbourhood_bias((3, 6), 2.0, 'square')  # DINO: |dy|, |dx| <= 2
  yy, xx = np.divmod(np.arange(18), 6)
  want = (np.abs(yy[:, None] - yy) <= 2) & (np.abs(xx[:, None] - xx) <= 2)
  np.testing.assert_array_equal(square == 0, want)


def _dino_reference(feats, first, topk, n_last, radius, temperature):
  """DINO's `label_propagation` loop in float64 numpy, as its code states it: exp(aff / T)
  times the square window, zeroed below the k-th largest per query, normalised to sum 1;
  the queue holds the n_last previous frames, starting empty."""
  t, gh, gw, d = feats.shape
  f = feats.reshape(t, gh * gw, d).astype(np.float64)
  yy, xx = np.divmod(np.arange(gh * gw), gw)
  window = ((np.abs(yy[:, None] - yy) <= radius) & (np.abs(xx[:, None] - xx) <= radius))
  seg0 = first.reshape(gh * gw, -1).astype(np.float64)
  queue, out = [], [seg0]
  for i in range(1, t):
    ctx = [(f[0], seg0)] + queue
    aff = np.concatenate([np.exp(k @ f[i].T / temperature) * window for k, _ in ctx])
    kth = np.sort(aff, axis=0)[-topk]
    aff = np.where(aff < kth, 0, aff)
    aff = aff / aff.sum(axis=0, keepdims=True)
    seg = np.concatenate([s for _, s in ctx]).T @ aff  # (C, q)
    out.append(seg.T)
    queue = (queue + [(f[i], seg.T)])[-n_last:]
  return np.stack(out).reshape(t, gh, gw, -1)


def _videowalk_reference(feats, first, topk, context, radius, temperature):
  """videowalk's loop in float64 numpy: the queue front-padded with `context` copies of frame
  0, the Euclidean radius on the queue only, softmax over the top k of all context logits."""
  t, gh, gw, d = feats.shape
  f = feats.reshape(t, gh * gw, d).astype(np.float64)
  yy, xx = np.divmod(np.arange(gh * gw), gw)
  near = np.hypot(yy[:, None] - yy, xx[:, None] - xx) < radius
  seg0 = first.reshape(gh * gw, -1).astype(np.float64)
  queue, out = [(f[0], seg0)] * context, [seg0]
  for i in range(1, t):
    ctx = [(f[0], seg0)] + queue
    logits = np.concatenate([f[i] @ k.T for k, _ in ctx], axis=1) / temperature  # (q, n q)
    mask = np.concatenate([np.ones_like(near)] + [near] * len(queue), axis=1)
    logits = np.where(mask, logits, -np.inf)
    top = np.argsort(-logits, axis=1, kind='stable')[:, :topk]
    w = np.exp(np.take_along_axis(logits, top, 1) - logits.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    labels = np.concatenate([s for _, s in ctx])
    seg = np.einsum('qk,qkc->qc', w, labels[top])
    out.append(seg)
    queue = queue[1:] + [(f[i], seg)]
  return np.stack(out).reshape(t, gh, gw, -1)


@pytest.mark.parametrize('name', ['videowalk', 'dino'])
def test_propagation_equals_a_float64_reference_of_each_protocol(name):
  from mformer_jax.analysis import label_propagation as lp
  rng = np.random.default_rng(5)
  t, gh, gw = 12, 5, 7  # more frames than DINO's queue, a non-square grid
  feats = lp.l2_normalise(rng.standard_normal((t, gh, gw, 6)).astype(np.float32))
  first = lp.l2_normalise(rng.uniform(size=(gh, gw, 3)).astype(np.float32)) ** 2
  if name == 'dino':
    proto = _protocol('dino', topk=5, context=3, radius=2)
    want = _dino_reference(feats, first, 5, 3, 2, 0.1)
  else:
    proto = _protocol(topk=6, context=4, radius=2.5, temperature=0.2)
    want = _videowalk_reference(feats, first, 6, 4, 2.5, 0.2)
  np.testing.assert_allclose(lp.propagate(feats, first, proto), want, rtol=0, atol=2e-5)


def test_label_handling_of_each_protocol():
  from mformer_jax.analysis import label_propagation as lp
  ids = np.random.default_rng(3).integers(0, 3, (10, 16)).astype(np.uint8)
  ids[0, 0] = 255  # void counts as background
  # In: DINO samples one pixel per cell (PIL nearest: floor((i + 0.5) * scale)); videowalk
  # averages the one-hot around each cell (fractions summing to 1).
  rows, cols = ((np.arange(n) + 0.5) * s // n for n, s in ((3, 10), (5, 16)))
  sampled = np.where(ids == 255, 0, ids)[rows.astype(int)][:, cols.astype(int)]
  dino = lp.first_labels(ids, 2, (3, 5), lp.PROTOCOLS['dino'])
  np.testing.assert_array_equal(dino, sampled[..., None] == np.arange(3))
  walk = lp.first_labels(ids, 2, (2, 4), lp.PROTOCOLS['videowalk'])
  np.testing.assert_allclose(walk.sum(-1), 1, atol=1e-6)
  assert ((walk > 0.1) & (walk < 0.9)).mean() > 0.5
  # Out: an object channel that is weak everywhere but peaks at one cell. videowalk's argmax
  # keeps the background; DINO's per-channel min-max makes the peak win there.
  soft = np.zeros((1, 2, 2, 2), np.float32)
  soft[0, ..., 0] = [[0.6, 0.55], [0.6, 0.6]]
  soft[0, ..., 1] = [[0.1, 0.5], [0.1, 0.1]]
  assert lp.to_ids(soft, (4, 4), lp.PROTOCOLS['videowalk'], 2).max() == 0
  out = lp.to_ids(soft, (6, 6), lp.PROTOCOLS['dino'], 2)  # 4x4 at the cell size, nearest to 6x6
  assert out.shape == (1, 6, 6) and out[0, 0, -1] == 1 and out[0, -1, 0] == 0


def test_input_size_keeps_the_aspect_ratio():
  from mformer_jax.analysis import label_propagation as lp
  assert lp.input_size((480, 854), 480, 16) == (480, 848)  # long side floored to the patch
  assert lp.input_size((480, 854), 480, 16, 64) == (480, 832)  # DINO: to a multiple of 64
  assert lp.input_size((854, 480), 480, 8, 64) == (832, 480)  # portrait
  assert lp.input_size((480, 854), 480, 16, square=True) == (480, 480)
  assert lp.input_size((50, 70), 0, 8) == (48, 64)  # the frame's own short side, floored
  with pytest.raises(ValueError, match='patch size 8 does not divide the short side 36'):
    lp.input_size((480, 854), 36, 8)
  with pytest.raises(ValueError, match='patch size 14 does not divide 64'):
    lp.input_size((480, 854), 476, 14, 64)
  assert lp.input_size((480, 854), 476, 14) == (476, 840)  # 846.9 floored to 14
  with pytest.raises(ValueError, match=r'patch size 14 does not divide the short side 480 \(it '
                     r'divides 476 and 490\)'):
    lp.input_size((480, 854), 480, 14)


@pytest.mark.parametrize('protocol,flag,cell,want', [
    ('dino', None, 8, 64), ('dino', None, 16, 64), ('dino', None, 14, 14),  # 14 does not divide 64
    ('videowalk', None, 14, 14), ('dino', 0, 8, 8), ('dino', 28, 14, 28), ('videowalk', 32, 8, 32)])
def test_the_long_sides_multiple_falls_back_to_a_patch_that_does_not_divide_the_protocols(
    protocol, flag, cell, want):
  import argparse
  from mformer_jax.analysis import label_propagation as lp
  args = argparse.Namespace(size_multiple=flag)
  assert davis.size_multiple(args, lp.PROTOCOLS[protocol], cell) == want


def _read_ids(path):
  from PIL import Image
  with Image.open(path) as im:
    assert im.mode == 'P'
    return np.array(im)


def test_end_to_end_oracle_is_perfect_and_outputs_are_official(twin, tmp_path, capsys):
  root, names = twin
  out = tmp_path / 'oracle'
  assert davis.main(['--davis_root', str(root), '--features=oracle', '--stride=1',
                     '--short_side=0', '--out', str(out)]) == 0
  glob = (out / 'global_results-val.csv').read_text().splitlines()
  assert glob[0] == ','.join(davis_metrics.GLOBAL_COLUMNS)
  values = [float(x) for x in glob[1].split(',')]
  assert values[0] >= 0.99 and values[1] >= 0.99 and values[4] >= 0.99
  rows = (out / 'per-sequence_results-val.csv').read_text().splitlines()
  assert rows[0] == 'Sequence,J-Mean,F-Mean' and len(rows) == 1 + 2 * len(names)
  assert rows[1].startswith(f'{names[0]}_1,')
  # The written PNGs are what was scored, and they are what the official evaluator reads.
  seq = davis_layout.load_sequence(root, names[1])
  pred = np.stack([_read_ids(out / names[1] / f'{f}.png') for f in seq.frame_names])
  j, f = davis_metrics.evaluate_sequence(seq.annotations, pred)
  assert (out / 'overlays' / f'{names[1]}.png').is_file()
  assert np.mean(j) >= 0.99 and np.mean(f) >= 0.99
  assert f'{names[1]}_2,{np.mean(j[1]):.3f},{np.mean(f[1]):.3f}' in rows


@pytest.mark.slow
def test_end_to_end_model_features(twin, tmp_path):
  root, names = twin
  out = tmp_path / 'untrained'
  assert davis.main(['--davis_root', str(root), '--init_config=configs/demo.py',
                     '--tubelets=sliding', '--layer=1', '--sequences', names[0],
                     '--short_side=0', '--out', str(out)]) == 0
  summary = (out / 'global_results-val.csv').read_text().splitlines()[1]
  # The score is the official evaluation of the PNGs it wrote (an untrained model's: any value).
  seq = davis_layout.load_sequence(root, names[0])
  pred = np.stack([_read_ids(out / names[0] / f'{f}.png') for f in seq.frame_names])
  assert pred.shape == (8, 32, 32) and set(np.unique(pred)) <= {0, 1, 2}
  want = davis_metrics.results_csvs(davis_metrics.summarise(
      {names[0]: davis_metrics.evaluate_sequence(seq.annotations, pred)}))[0]
  assert summary == want.splitlines()[1]


# --- frames at their aspect ratio, protocol presets -----------------------------------------


@pytest.fixture(scope='module')
def wide_twin(tmp_path_factory):
  """Frames wider than high (64x48), as DAVIS's 854x480."""
  root = tmp_path_factory.mktemp('davis_wide') / 'DAVIS'
  return root, davis_layout.write_synthetic(root, 2, num_frames=8, size=64, height=48, num_objects=2)


def test_synthetic_twin_crops_to_the_height_and_keeps_every_object(wide_twin):
  root, names = wide_twin
  for name in names:
    seq = davis_layout.load_sequence(root, name)
    assert seq.frames.shape == (8, 48, 64, 3) and seq.annotations.shape == (8, 48, 64)
    assert all((seq.annotations[0] == k).sum() >= 48 for k in (1, 2))


def _results(out):
  import json
  return json.loads((out / 'results.json').read_text())


def test_cli_records_the_protocol_and_the_input_size_per_sequence(wide_twin, tmp_path):
  root, names = wide_twin
  args = ['--davis_root', str(root), '--features=oracle', '--stride=8', '--short_side=0']
  assert davis.main(args + ['--out', str(tmp_path / 'walk')]) == 0
  walk = _results(tmp_path / 'walk')
  assert walk['protocol'] == dict(name='videowalk', topk=10, context=20, radius=12.0,
                                  temperature=0.05, neighbourhood='disk', restrict_first=False,
                                  pad_queue=True, labels='videowalk', size_multiple=0)
  assert walk['input_sizes'] == {n: [48, 64] for n in names}
  assert davis.main(args + ['--protocol=dino', '--topk=3', '--out', str(tmp_path / 'dino')]) == 0
  dino = _results(tmp_path / 'dino')
  assert dino['protocol'] == dict(name='dino', topk=3, context=7, radius=12.0, temperature=0.1,
                                  neighbourhood='square', restrict_first=True, pad_queue=False,
                                  labels='dino', size_multiple=64)
  assert dino['settings']['protocol'] == 'dino' and dino['settings']['short_side'] == 0
  assert (walk['size_multiple'], dino['size_multiple']) == (8, 64)  # the multiple used
  assert davis.main(args + ['--square', '--out', str(tmp_path / 'square')]) == 0
  assert _results(tmp_path / 'square')['input_sizes'] == {n: [48, 48] for n in names}


@pytest.mark.parametrize('protocol', ['videowalk', 'dino'])
def test_oracle_at_pixel_cells_is_perfect_at_the_aspect_ratio(wide_twin, tmp_path, protocol):
  root, _ = wide_twin
  out = tmp_path / protocol
  assert davis.main(['--davis_root', str(root), '--features=oracle', '--stride=1',
                     '--short_side=0', f'--protocol={protocol}', '--context=2',
                     '--out', str(out)]) == 0  # a short queue: 3072 cells a frame
  assert _results(out)['global']['J&F-Mean'] >= 0.99


def test_cli_size_that_the_cell_does_not_divide_is_one_line(wide_twin, tmp_path, capsys):
  root, _ = wide_twin
  status = davis.main(['--davis_root', str(root), '--features=oracle', '--stride=8',
                       '--short_side=36', '--out', str(tmp_path / 'out')])
  err = capsys.readouterr().err.strip()
  assert status == 2 and len(err.splitlines()) == 1
  assert err == 'davis: error: the patch size 8 does not divide the short side 36 (it divides 32 and 40)'


def test_model_overrides_take_their_fields_types():
  """--model_override goes through config_lib.parse_arg with ModelConfig's fields as defaults:
  only the named fields come back, each converted to its field's type."""
  from mformer_jax.errors import ConfigError
  assert davis._overrides('trajectory_impl=chunked,num_heads=4,qkv_bias=False,drop_path=0') == {
      'trajectory_impl': 'chunked', 'num_heads': 4, 'qkv_bias': False, 'drop_path': 0.0}
  assert davis._overrides('') == {}
  with pytest.raises(ConfigError, match="num_heads='four' is not a int"):
    davis._overrides('num_heads=four')
  with pytest.raises(ConfigError, match="unknown option 'heads'"):
    davis._overrides('heads=4')

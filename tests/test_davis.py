"""DAVIS-2017 label propagation: metrics against the official code, reader, end to end."""
import pathlib

import numpy as np
import pytest

from mformer_jax.analysis import davis

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
    np.testing.assert_allclose(davis.jaccard(gt, pred), ref[f'{case}/J'], rtol=0, atol=1e-12,
                               err_msg=case)
    np.testing.assert_allclose(davis.f_measure(gt, pred), ref[f'{case}/F'], rtol=0, atol=1e-12,
                               err_msg=case)


def test_empty_mask_conventions(ref):
  gt, _ = _masks(ref, 'blobs_small')
  empty = np.zeros_like(gt)
  np.testing.assert_array_equal(davis.jaccard(empty, empty), 1.0)
  np.testing.assert_array_equal(davis.f_measure(empty, empty), 1.0)
  np.testing.assert_array_equal(davis.f_measure(gt, empty)[gt.any(axis=(1, 2))], 0.0)
  np.testing.assert_array_equal(davis.jaccard(gt, gt), 1.0)


def test_dilation_is_a_disk_of_the_diagonal_tolerance():
  assert davis.disk_radius((480, 854)) == 8.0
  assert davis.disk_radius((24, 36)) == 1.0
  point = np.zeros((41, 41), bool)
  point[20, 20] = True
  disk = davis.dilate_disk(point, 8.0)
  yy, xx = np.mgrid[-20:21, -20:21]
  np.testing.assert_array_equal(disk, yy ** 2 + xx ** 2 <= 64)


def test_statistics_equal_db_statistics(ref):
  for key in [k for k in ref if k.startswith('stats_') and k.endswith('/values')]:
    case = key.split('/')[0]
    np.testing.assert_allclose(davis.statistics(ref[key]), ref[f'{case}/MRD'], rtol=0,
                               atol=1e-12, equal_nan=True, err_msg=case)


def test_sequence_evaluation_and_csvs_equal_the_official_tool(ref):
  seqs = ('alpha', 'beta', 'gamma')
  summary = davis.summarise(
      {s: davis.evaluate_sequence(ref[f'eval_{s}/gt'], ref[f'eval_{s}/pred']) for s in seqs})
  assert list(summary['objects']) == list(ref['eval/object_names'])
  for metric in 'JF':
    for key, column in (('M', 'Mean'), ('R', 'Recall'), ('D', 'Decay')):
      ours = [o[f'{metric}-{column}'] for o in summary['objects'].values()]
      np.testing.assert_allclose(ours, ref[f'eval/{metric}_{key}'], rtol=0, atol=1e-12)
  glob, per_seq = davis.results_csvs(summary)
  assert glob == str(ref['eval/global_results-val.csv'])
  assert per_seq == str(ref['eval/per-sequence_results-val.csv'])


def test_prediction_with_an_unknown_object_is_an_error(ref):
  gt = ref['eval_beta/gt']
  with pytest.raises(ValueError, match='first frame only 2 objects'):
    davis.evaluate_sequence(gt, np.full_like(gt, 3))


# --- the DAVIS layout reader ---------------------------------------------------------------


@pytest.fixture(scope='module')
def twin(tmp_path_factory):
  root = tmp_path_factory.mktemp('davis') / 'DAVIS'
  names = davis.write_synthetic(root, 2, num_frames=8, size=32, num_objects=2)
  return root, names


def test_reader_reads_the_twin(twin):
  root, names = twin
  assert davis.sequence_names(root) == names
  seq = davis.load_sequence(root, names[0])
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
  with pytest.raises(davis.LayoutError, match='is not a folder'):
    davis.sequence_names(tmp_path / 'nowhere')
  with pytest.raises(davis.LayoutError, match='not a DAVIS-2017 root: no JPEGImages/480p'):
    davis.sequence_names(root / 'Annotations')
  with pytest.raises(davis.LayoutError, match='no sequence list .*train.txt'):
    davis.sequence_names(root, 'train')
  bad = _copy(root, tmp_path)
  (bad / 'ImageSets/2017/val.txt').write_text('\n'.join(names + ['ghost']))
  assert davis.sequence_names(bad)[-1] == 'ghost'
  with pytest.raises(davis.LayoutError, match="sequence 'ghost': no frames"):
    davis.load_sequence(bad, 'ghost')
  ann = bad / 'Annotations/480p' / names[0]
  (ann / '00003.png').rename(ann / '00042.png')
  with pytest.raises(davis.LayoutError, match=r"without a frame: \['00042'\], without an "
                     r"annotation: \['00003'\]"):
    davis.load_sequence(bad, names[0])
  ann = bad / 'Annotations/480p' / names[1]
  davis.save_ids(np.zeros((16, 16), np.uint8), ann / '00002.png')
  with pytest.raises(davis.LayoutError, match='00002.png is 16x16 but its frames are 32x32'):
    davis.load_sequence(bad, names[1])


def test_first_frame_only_annotations_are_read(twin, tmp_path):
  root, names = twin
  bad = _copy(root, tmp_path)
  for p in sorted((bad / 'Annotations/480p' / names[0]).glob('*.png'))[1:]:
    p.unlink()
  seq = davis.load_sequence(bad, names[0])
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


def test_propagation_follows_the_features():
  from mformer_jax.analysis import label_propagation as lp
  # 4x4 cells; frame 0 labels the left half 1, the right half 2. In frame 1 the features of
  # the two halves swap, so the labels must swap too.
  left = np.zeros((4, 4, 2), np.float32)
  left[:, :2, 0], left[:, 2:, 1] = 1, 1
  feats = np.stack([left, left[:, ::-1]])
  labels = np.zeros((4, 4, 3), np.float32)
  labels[:, :2, 1], labels[:, 2:, 2] = 1, 1
  out = lp.propagate(feats, labels, topk=4, context=2, radius=12)
  np.testing.assert_allclose(out[1], labels[:, ::-1], atol=1e-6)
  # The radius applies to the queue, not to the first frame: cells 3 columns away from any
  # same-feature context cell still find it in frame 0.
  out = lp.propagate(feats, labels, topk=4, context=2, radius=1)
  np.testing.assert_allclose(out[1], labels[:, ::-1], atol=1e-6)


def test_radius_bias_is_strict():
  from mformer_jax.analysis import label_propagation as lp
  bias = lp.radius_bias(5, 2.0)
  assert bias.shape == (25, 25)
  assert bias[12, 12 + 1] == 0 and bias[12, 12 + 5 + 1] == 0  # distances 1 and sqrt(2)
  assert bias[12, 12 + 2] == -1e10  # distance 2 is not < 2 (videowalk's mask)


def _read_ids(path):
  from PIL import Image
  with Image.open(path) as im:
    assert im.mode == 'P'
    return np.array(im)


def test_end_to_end_oracle_is_perfect_and_outputs_are_official(twin, tmp_path, capsys):
  root, names = twin
  out = tmp_path / 'oracle'
  assert davis.main(['--davis_root', str(root), '--features=oracle', '--stride=1',
                     '--out', str(out)]) == 0
  glob = (out / 'global_results-val.csv').read_text().splitlines()
  assert glob[0] == ','.join(davis.GLOBAL_COLUMNS)
  values = [float(x) for x in glob[1].split(',')]
  assert values[0] >= 0.99 and values[1] >= 0.99 and values[4] >= 0.99
  rows = (out / 'per-sequence_results-val.csv').read_text().splitlines()
  assert rows[0] == 'Sequence,J-Mean,F-Mean' and len(rows) == 1 + 2 * len(names)
  assert rows[1].startswith(f'{names[0]}_1,')
  # The written PNGs are what was scored, and they are what the official evaluator reads.
  seq = davis.load_sequence(root, names[1])
  pred = np.stack([_read_ids(out / names[1] / f'{f}.png') for f in seq.frame_names])
  j, f = davis.evaluate_sequence(seq.annotations, pred)
  assert (out / 'overlays' / f'{names[1]}.png').is_file()
  assert np.mean(j) >= 0.99 and np.mean(f) >= 0.99
  assert f'{names[1]}_2,{np.mean(j[1]):.3f},{np.mean(f[1]):.3f}' in rows


def test_end_to_end_model_features(twin, tmp_path):
  root, names = twin
  out = tmp_path / 'untrained'
  assert davis.main(['--davis_root', str(root), '--init_config=configs/demo.py',
                     '--tubelets=sliding', '--layer=1', '--sequences', names[0],
                     '--out', str(out)]) == 0
  summary = (out / 'global_results-val.csv').read_text().splitlines()[1].split(',')
  assert 0.0 < float(summary[0]) <= 1.0
  pred = _read_ids(out / names[0] / '00007.png')
  assert pred.shape == (32, 32) and set(np.unique(pred)) <= {0, 1, 2}

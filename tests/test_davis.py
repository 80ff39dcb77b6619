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

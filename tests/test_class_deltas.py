"""class_deltas on two reports written by the evaluator's own writer, with known per-class answers."""
import csv
import pathlib

import numpy as np
import pytest

from mformer_jax.eval import evaluator, metrics
from mformer_jax.analysis import class_deltas, single_frame

NAMES = ['spilling', 'pretending', 'putting', 'showing']
VIDEOS = [10, 10, 10, 2]


def _report(directory: pathlib.Path, correct):
  """An evaluation report in which class c has VIDEOS[c] videos, `correct[c]` of them right."""
  labels = np.repeat(np.arange(4), VIDEOS)
  scores = np.zeros((len(labels), 4))
  for c in range(4):
    rows = np.flatnonzero(labels == c)
    scores[rows, c] = 1.0
    scores[rows[correct[c]:], (c + 1) % 4] = 2.0  # the rest predicted as the next class
  head = metrics.head_metrics(scores, labels, NAMES)
  evaluator.write_report(directory, {'top1': head['top1']}, {'label': head}, {'label': NAMES}, [])


@pytest.fixture
def runs(tmp_path):
  _report(tmp_path / 'a' / 'eval' / 'step_10', [5, 8, 3, 0])
  _report(tmp_path / 'a' / 'eval' / 'step_200', [5, 8, 3, 0])  # latest: the one read
  _report(tmp_path / 'a' / 'eval' / 'step_30', [0, 0, 0, 0])
  _report(tmp_path / 'b' / 'eval' / 'step_200', [9, 6, 3, 2])
  return tmp_path


def test_known_deltas_from_workdir_and_file(runs):
  a = class_deltas.per_class(runs / 'a')
  assert a['pretending'] == (0.8, 10) and a['showing'] == (0.0, 2)
  rows = class_deltas.deltas(a, class_deltas.per_class(runs / 'b/eval/step_200/metrics.json'))
  assert [r['cls'] for r in rows] == ['showing', 'spilling', 'putting', 'pretending']
  np.testing.assert_allclose([r['delta'] for r in rows], [1.0, 0.4, 0.0, -0.2], atol=1e-12)
  gains, losses = class_deltas.extremes(rows, top=1)
  assert [r['cls'] for r in gains] == ['showing'] and [r['cls'] for r in losses] == ['pretending']


def test_cli_min_videos_csv_png(runs, capsys):
  out = runs / 'out'
  rows = class_deltas.main([str(runs / 'a'), str(runs / 'b'), '--min_videos', '5', '--top', '2',
                            '--out', str(out)])
  assert [r['cls'] for r in rows] == ['spilling', 'putting', 'pretending']  # 'showing': 2 videos
  printed = capsys.readouterr().out
  assert 'spilling' in printed and '+40.0' in printed and '-20.0' in printed
  with open(out / 'class_deltas.csv') as f:
    table = list(csv.DictReader(f))
  assert [(r['class'], r['videos_a'], float(r['delta'])) for r in table] == [
      ('spilling', '10', pytest.approx(0.4)), ('putting', '10', 0.0),
      ('pretending', '10', pytest.approx(-0.2))]
  assert (out / 'class_deltas.png').read_bytes()[:4] == b'\x89PNG'


@pytest.mark.parametrize('run_a, options, message', [
    ('missing_dir', [], 'no metrics.json'),
    ('a', ['--head', 'verb'], "no head 'verb'"),
    ('a', ['--min_videos', '11'], 'no class has >= 11 videos'),
])
def test_bad_input_exits_2(runs, capsys, run_a, options, message):
  with pytest.raises(SystemExit) as e:
    class_deltas.main([str(runs / run_a), str(runs / 'b'), *options])
  assert e.value.code == 2 and message in capsys.readouterr().err


def test_single_frame_table_over_seeds(runs, capsys):
  one, multi = single_frame.main([f"{runs / 'a'},{runs / 'b'}", str(runs / 'b')])
  assert one == [0.5, 0.625] and multi == [0.625]  # top-1 of 16 / 32 and 20 / 32 right
  assert '| 56.2 [50.0, 62.5] | 62.5 | 6.2 | 2 / 1 |' in capsys.readouterr().out
  with pytest.raises(SystemExit) as e:
    single_frame.main([str(runs / 'a'), str(runs / 'b'), '--metric', 'top7'])
  assert e.value.code == 2 and "no 'top7'" in capsys.readouterr().err

"""The LRA study drivers: the layer-scaling rows and the collected tables (tiny inputs)."""
import json

import pytest

from mformer_jax.lra import layer_scaling, report


@pytest.mark.slow  # compiles every attention type's step twice
def test_layer_scaling_skips_over_budget_with_the_compiled_peak(tmp_path):
  out = tmp_path / 'layer.json'
  layer_scaling.main(['--out', str(out), '--lengths', '16,32', '--reps', '1', '--max_gb', '0'])
  got = json.loads(out.read_text())
  assert [(r['attention'], r['tokens']) for r in got['layer']] == [
      (a, n) for n in (16, 32) for a in layer_scaling.TYPES]
  for r in got['layer']:
    assert 'time_ms' not in r and r['skipped'].endswith('GB > 0.0 GB')
    assert r['peak_mb'] == layer_scaling.layer_step(r['attention'], r['tokens'])[2] / 2**20
  assert got['gflops_per_example_len2048'] == layer_scaling.model_gflops(2048)


def test_layer_scaling_gflops_only_keeps_the_rows(tmp_path):
  out = tmp_path / 'layer.json'
  out.write_text(json.dumps({'layer': [{'attention': 'exact', 'tokens': 8, 'peak_mb': 1.0}]}))
  layer_scaling.main(['--out', str(out), '--gflops_only'])
  got = json.loads(out.read_text())
  assert got['layer'] == [{'attention': 'exact', 'tokens': 8, 'peak_mb': 1.0}]
  assert got['gflops_per_example_len2000'] == layer_scaling.model_gflops(2000)


def test_report_tables(tmp_path, capsys):
  for seed, acc in ((0, 0.35), (1, 0.37)):
    run = tmp_path / 'runs' / f'exact_s{seed}'
    run.mkdir(parents=True)
    run.joinpath('results.json').write_text(json.dumps({
        'attention': 'exact', 'seed': seed, 'final_test_accuracy': acc,
        'test_accuracy_at_best_val': acc + 0.01, 'test_majority_rate': 0.17}))
  layer = {'gflops_per_example_len2048': {'exact': 1.25},
           'layer': [{'attention': a, 'tokens': n, 'peak_mb': 10.0 * n, 'time_ms': 2.0 * n}
                     for a in report.TYPES for n in (8, 16)]}
  layer['layer'][-1] = {'attention': 'performer', 'tokens': 16, 'peak_mb': 99.0, 'skipped': 'x'}
  (tmp_path / 'layer.json').write_text(json.dumps(layer))
  report.main(['--runs', str(tmp_path / 'runs' / '*'), '--layer', str(tmp_path / 'layer.json'),
               '--out', str(tmp_path / 'acc.json')])
  lines = capsys.readouterr().out.splitlines()
  # mean 36.0, seed sd 1.4, at best val 37.0; only the attention type with runs gets a row
  assert lines[2] == '| exact | 36.0 ± 1.4 (sd) | 37.0 | 2 | 17.0 | 1.250 | 36.69 | 1.21 | 4579 |'
  assert len(lines) == 3 + 1 + 2 + len(report.TYPES)
  assert lines[-4] == '| exact | 16 / 80 | 32 / 160 |'
  assert lines[-1] == '| performer | 16 / 80 | skipped (99 MB) |'
  assert [r['seed'] for r in json.loads((tmp_path / 'acc.json').read_text())] == [0, 1]

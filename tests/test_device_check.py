"""benchmarks.device_check: the largest-batch search, the timing, the profile's categories and
shares, the rendered table (all on made-up inputs, exact), and the whole check in smoke mode."""
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import types

import pytest

from benchmarks import common, device_check, device_report, device_workers, trace_summary

GIB = 2**30
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_next_batch_doubles_as_far_as_the_linear_model_allows():
  # 2 GiB of state, batch 4 needs 3 GiB: 0.25 GiB per clip; 9 GiB allowed.
  nb = lambda **kw: device_workers.next_batch(**{
      'lo': 4, 'need_lo': 3 * GIB, 'state': 2 * GIB, 'limit': 9 * GIB, 'max_batch': 256, **kw})
  assert nb() == (16, '')                                   # 32 would need 10 GiB
  assert nb(hi=16) == (8, '')
  assert nb(max_batch=8) == (8, '')
  assert nb(max_batch=4) == (None, 'max_batch=4')
  assert nb(hi=8) == (None, 'batch 8 does not fit')
  assert nb(limit=3.5 * GIB) == (None, 'batch 8 would need ~4.0 GiB of 3.5')


class FakeOurs:
  """compile(b) of a program that needs 2 GiB of state + per_clip(b) * b bytes, on a device of
  10 GiB (9 GiB with the search's 10 % margin)."""

  def __init__(self, per_clip):
    self.per_clip, self.compiled = per_clip, []

  def memory_limit(self):
    return 10 * GIB

  def state_bytes(self):
    return 2 * GIB

  def compile(self, b):
    self.compiled.append(b)
    need = int(2 * GIB + self.per_clip(b) * b)
    ma = types.SimpleNamespace(argument_size_in_bytes=need, temp_size_in_bytes=0,
                               output_size_in_bytes=0, alias_size_in_bytes=0)
    return types.SimpleNamespace(batch=b, memory_analysis=lambda: ma), 1.0


def test_search_compiles_the_predicted_batch_and_checks_it():
  spec = {'max_batch': 256, 'search_s': 60.0}
  # Batch 4 needed 3 GiB (0.25 GiB a clip) but larger batches need 0.3 GiB a clip.
  ours = FakeOurs(lambda b: 0.3 * GIB)
  fits, why = device_workers.search(ours, 4, 3 * GIB, spec)
  assert ours.compiled == [16] and [b for b, _ in fits] == [16]
  assert why == 'batch 32 would need ~11.6 GiB of 9.0'
  # 16 needs 9.5 GiB: it bounds the next guess, 8 fits, and nothing lies between.
  ours = FakeOurs(lambda b: 7.5 * GIB / 16 if b == 16 else 0.25 * GIB)
  fits, why = device_workers.search(ours, 4, 3 * GIB, spec)
  assert ours.compiled == [16, 8] and [b for b, _ in fits] == [8]
  assert why == 'batch 16 does not fit'
  # A compile that would overrun the search time is not started.
  ours = FakeOurs(lambda b: 0.1 * GIB)
  fits, why = device_workers.search(ours, 4, 3 * GIB, {'max_batch': 256, 'search_s': 1.0})
  assert ours.compiled == [16] and why == 'search time (1 s)'


def test_time_groups_sync_once_per_group(monkeypatch):
  clock, calls, syncs = [0.0], [], []
  monkeypatch.setattr(device_workers.time, 'perf_counter', lambda: clock[0])

  def run():          # each call takes 0.1 s of the fake clock
    calls.append(1)
    clock[0] += 0.1
  timing = {'warmup': 2, 'groups': 3, 'min_s': 0.0, 'max_groups': 10}
  times = device_workers.time_groups(run, lambda: syncs.append(1), timing)
  # 0.25 s groups of 0.1 s calls: 3 calls a group, after 2 warm-up calls and 1 to size them.
  assert len(calls) == 2 + 1 + 3 * 3 and len(syncs) == 1 + 1 + 3
  assert times == pytest.approx([0.1] * 3)
  calls.clear()
  syncs.clear()   # --one_step: one call, nothing to sync before it (no outputs yet)
  one = device_workers.time_groups(run, lambda: syncs.append(len(calls)),
                                   {**timing, 'warmup': 0, 'groups': 1})
  assert len(calls) == 1 and syncs == [1] and one == pytest.approx([0.1])


HLO = """HloModule jit_step_on_mesh, entry_computation_layout={(f32[8]{0})->f32[8]{0}}

%fused_scores (p0: bf16[2,8], p1: bf16[8,8]) -> bf16[2,8] {
  %p0 = bf16[2,8]{1,0} parameter(0)
  %p1 = bf16[8,8]{1,0} parameter(1)
  ROOT %dot.1 = bf16[2,8]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%fused_qkv (p0: bf16[2,8], p1: bf16[8,8]) -> bf16[2,8] {
  %p0 = bf16[2,8]{1,0} parameter(0)
  %p1 = bf16[8,8]{1,0} parameter(1)
  ROOT %dot.2 = bf16[2,8]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%fused_transpose (p0: f32[2,8]) -> f32[8,2] {
  %p0 = f32[2,8]{1,0} parameter(0)
  ROOT %t = f32[8,2]{1,0} transpose(%p0), dimensions={1,0}
}

%fused_norm (p0: f32[2,8]) -> f32[2,8] {
  %p0 = f32[2,8]{1,0} parameter(0)
  ROOT %m = f32[2,8]{1,0} multiply(%p0, %p0)
}

ENTRY %main.9 (a: bf16[2,8], b: bf16[8,8], /*index=2*/c: f32[2,8]) -> (bf16[2,8], f32[8,2]) {
  %a = bf16[2,8]{1,0} parameter(0)
  %b = bf16[8,8]{1,0} parameter(1)
  %c = f32[2,8]{1,0} parameter(2)
  %scores_fusion = bf16[2,8]{1,0} fusion(%a, %b), kind=kOutput, calls=%fused_scores, metadata={op_name="jit(step)/jvp(Motionformer)/blocks_0/attn/attn._fast/dot_general"}
  %qkv_fusion = bf16[2,8]{1,0} fusion(%a, %b), kind=kOutput, calls=%fused_qkv, metadata={op_name="jit(step)/jvp(Motionformer)/blocks_0/attn/qkv/dot_general"}
  %out_proj = bf16[2,8]{1,0} fusion(%a, %b), kind=kOutput, calls=%fused_qkv, metadata={op_name="jit(step)/transpose(jvp(Motionformer))/blocks_0/attn/attn._fast/proj/dot_general"}
  %transpose_fusion = f32[8,2]{1,0} fusion(%c), kind=kLoop, calls=%fused_transpose
  %norm_fusion = f32[2,8]{1,0} fusion(%c), kind=kLoop, calls=%fused_norm, metadata={op_name="jit(step)/jvp(Motionformer)/blocks_0/norm1/mul"}
  %fmha = (bf16[2,8]{1,0}, u8[0]{0}) custom-call(%a, %b), custom_call_target="__cudnn$fmhaSoftmax"
  %w = (s32[], f32[2,8]) while(%c), condition=%cond, body=%body
  ROOT %tuple = (bf16[2,8]{1,0}, f32[8,2]{1,0}) tuple(%scores_fusion, %transpose_fusion)
}
"""

CATEGORY = {'scores_fusion': 'attention', 'qkv_fusion': 'matmul', 'out_proj': 'matmul',
            'transpose_fusion': 'copies/transposes', 'norm_fusion': 'elementwise/norm',
            'fmha': 'attention', 'w': None, 'tuple': None, 'a': None}


def test_hlo_ops_are_put_in_their_category():
  ops = trace_summary.parse_hlo(HLO)
  assert ops['scores_fusion']['calls'] == 'fused_scores' and ops['dot.1']['comp'] == 'fused_scores'
  assert ops['a']['comp'] == 'main.9' and ops['fmha']['target'] == '__cudnn$fmhaSoftmax'
  assert {n: trace_summary.category(ops[n], ops[None]) for n in CATEGORY} == CATEGORY
  assert trace_summary.label('fusion.12', {'op_name': 'jit(step)/jvp(M)/blocks_11/mlp/dot'}) == (
      'jvp(M)/blocks_*/mlp/dot')
  assert trace_summary.label('loop_fusion.7', None) == 'loop_fusion'
  assert trace_summary.kernel_category('MemcpyH2D') == 'host transfers'
  assert trace_summary.kernel_category('Memcpy DtoD (Device -> Device)') == 'copies/transposes'
  assert trace_summary.kernel_category('sm90_xmma_gemm_bf16bf16_bf16f32') == 'matmul'
  assert trace_summary.kernel_category('cudnn_generated_fort_native_sdpa_sm90') == 'attention'


def write_trace(folder, events):
  os.makedirs(folder / 'plugins' / 'profile' / 'run', exist_ok=True)
  with gzip.open(folder / 'plugins' / 'profile' / 'run' / 'host.trace.json.gz', 'wt') as f:
    json.dump({'traceEvents': events}, f)


def meta(pid, tid, process, thread):
  return [{'ph': 'M', 'pid': pid, 'name': 'process_name', 'args': {'name': process}},
          {'ph': 'M', 'pid': pid, 'tid': tid, 'name': 'thread_name', 'args': {'name': thread}}]


def test_a_gpu_trace_is_summarised_from_its_xla_ops_line(tmp_path):
  x = lambda name, dur, tid=1, pid=1, **args: {'ph': 'X', 'pid': pid, 'tid': tid, 'name': name,
                                               'dur': dur, 'args': args}
  write_trace(tmp_path, [
      *meta(1, 1, '/device:GPU:0', 'XLA Ops'), *meta(1, 2, '/device:GPU:0', 'Stream #7(Compute)'),
      *meta(9, 1, '/host:CPU', 'python'),
      x('scores_fusion', 600.0), x('scores_fusion', 600.0), x('qkv_fusion', 400.0),
      x('transpose_fusion', 200.0), x('w', 5000.0),                 # structural: left out
      x('sm90_gemm_kernel', 400.0, tid=2),                            # its op is on the line
      x('MemcpyH2D', 200.0, tid=2), x('PjitFunction(step)', 9000.0, pid=9)])
  s = trace_summary.summarize(str(tmp_path), HLO, steps=2)
  assert s['source'] == "trace: device 'XLA Ops' line"
  assert s['op_ms_per_step'] == pytest.approx(1.0)   # 2000 us over 2 steps
  assert s['shares'] == pytest.approx({'attention': 0.6, 'matmul': 0.2, 'elementwise/norm': 0,
                                       'copies/transposes': 0.1, 'host transfers': 0.1,
                                       'other': 0})
  # Ops by the jax op they come from (every block's copy together), else by instruction name.
  assert [(o['op'], o['category']) for o in s['top_ops']] == [
      ('jvp(Motionformer)/blocks_*/attn/attn._fast/dot_general', 'attention'),
      ('jvp(Motionformer)/blocks_*/attn/qkv/dot_general', 'matmul'),
      ('transpose_fusion', 'copies/transposes'), ('MemcpyH2D', 'host transfers')]
  assert s['top_ops'][0]['ms_per_step'] == pytest.approx(0.6)
  assert s['top_ops'][0]['count'] == 1                  # once per step


def test_a_cpu_trace_uses_the_host_threads_of_this_program(tmp_path):
  x = lambda op, dur, module='jit_step_on_mesh': {
      'ph': 'X', 'pid': 1, 'tid': 1, 'name': op, 'dur': dur,
      'args': {'hlo_op': op, 'hlo_module': module}}
  write_trace(tmp_path, [*meta(1, 1, '/host:CPU', 'tf_XLAExecute'),
                         x('norm_fusion', 300.0), x('qkv_fusion', 100.0),
                         x('norm_fusion', 900.0, module='jit_init')])   # another program
  s = trace_summary.summarize(str(tmp_path), HLO)
  assert s['source'] == 'trace: host threads (hlo_op)'
  assert s['shares']['elementwise/norm'] == pytest.approx(0.75)
  assert s['shares']['matmul'] == pytest.approx(0.25)


def test_without_a_trace_the_compiled_ops_are_counted(tmp_path):
  s = trace_summary.summarize(str(tmp_path), HLO)
  assert s['source'] == 'hlo_op_counts' and 'not of time' in s['note']
  # The ENTRY's 6 ops with a category (fusion bodies are counted as their fusion).
  assert s['shares'] == pytest.approx({'attention': 2 / 6, 'matmul': 2 / 6,
                                       'elementwise/norm': 1 / 6, 'copies/transposes': 1 / 6,
                                       'host transfers': 0, 'other': 0})


def results_of(train, official=(), evals=(), matmul=None, profile=None):
  return {'machine': {'cpu': 'Test CPU', 'jax': '0.0', 'date': 'today', 'gpus': ['NVIDIA H100']},
          'mode': 'full', 'budget_s': 450.0, 'elapsed_s': 300.0, 'model': 'Mformer-B 16x224',
          'dtype': 'bfloat16 compute, float32 parameters', 'train': list(train),
          'official': list(official), 'eval': list(evals), 'matmul': matmul,
          'profile': profile, 'skipped': ['divided-none: time budget (450 s)'], 'notes': []}


ROW = {'name': 'trajectory-chunked-xla-none', 'attention': 'trajectory', 'impl': 'chunked',
       'backend': 'xla', 'remat': 'none', 'batch': 4, 'step_s': 0.05, 'clips_per_s': 80.0,
       'peak_bytes': 3 * GIB, 'tflops_reference': 200.0, 'mfu_reference': 200 / 989,
       'mfu_executed': 150 / 989, 'peak_tflops': 989.0}


def test_the_table_compares_with_the_official_model_at_the_same_batch():
  fast = {**ROW, 'impl': 'frames', 'backend': 'cudnn', 'batch': 16, 'step_s': 0.1,
          'clips_per_s': 160.0, 'profile': {'shares': {'attention': 1.0}, 'top_ops': [],
                                            'source': 'trace'}}
  official = [{'name': 'official', 'mode': 'train', 'batch': 4, 'step_s': 0.1,
               'clips_per_s': 40.0, 'peak_bytes': 4 * GIB},
              {'name': 'official', 'mode': 'eval', 'batch': 30, 'step_s': 0.3,
               'clips_per_s': 100.0, 'peak_bytes': 2 * GIB}]
  ours_eval = {'name': 'eval', 'attention': 'trajectory', 'impl': 'frames', 'backend': 'cudnn',
               'remat': 'none', 'batch': 30, 'step_s': 0.1, 'clips_per_s': 300.0,
               'peak_bytes': 1 * GIB, 'peak_what': 'device peak_bytes_in_use'}
  results = results_of([ROW, fast, {'name': 'joint-none', 'error': 'XlaRuntimeError: OOM'}],
                       official, [ours_eval], {'n': 8192, 'tflops': 800.0})
  assert device_report.best(results['train']) is fast
  assert device_report.best_profile(results['train']) == {'name': fast['name'], 'batch': 16,
                                                          **fast['profile']}
  text = device_report.render(results).splitlines()
  assert ('| trajectory chunked, remat none | 4 | 50.0 | 80 | 3.00 | 200 | 20.2 % | 25.0 % | '
          '15.2 % | 2.00 | 0.75 |') in text
  assert ('| trajectory frames+cudnn, remat none | 16 | 100.0 | 160 | 3.00 | 200 | 20.2 % | '
          '25.0 % | 15.2 % | - | - |') in text      # no official row at batch 16
  assert '| joint-none | - | error: XlaRuntimeError: OOM |' + ' |' * 8 in text
  assert 'Eval ours / official: 3.00x clips/s at 0.50x the peak memory.' in text
  assert ('Measured bf16 matmul (8192^3): 800.0 TFLOP/s; nominal dense bf16 peak: 989 '
          'TFLOP/s.') in text
  assert '- skipped: divided-none: time budget (450 s)' in text


def test_machine_class_of_a_gpu_machine():
  assert common.machine_class({'gpus': ['NVIDIA H100 80GB HBM3'], 'cpu': 'AMD EPYC 9454',
                               'cores': 16}) == 'nvidia-h100-80gb-hbm3-x1'
  assert common.machine_class({'cpu': 'AMD EPYC 9454', 'cores': 2}) == 'amd-epyc-2core'


def test_arguments():
  a = device_check.parse_args(['--out=/x', '--smoke'])
  assert (a.out, a.batch, a.eval_batch, a.budget_s) == ('/x', 4, 30, 450.0)
  with pytest.raises(SystemExit):
    device_check.parse_args(['--smoke', '--one_step'])


@pytest.mark.slow
def test_the_check_and_the_step_import_without_tensorflow():
  """On the GPU machine there is no TensorFlow, clu, tfds, dm-pix or PyAV."""
  code = ('import sys; import mformer_jax.train.step; first = set(sys.modules); '
          'import benchmarks.device_check, benchmarks.device_workers as w; '
          'w.Ours({"model": {"depth": 1, "embed_dim": 16, "num_heads": 2}, "timing": {}}); '
          'from mformer_jax.train import throughput; from mformer_jax.plan import hlo; '
          'banned = ("tensorflow", "tensorflow_datasets", "clu", "dm_pix", "av", "torch"); '
          'bad = lambda mods: sorted({m.split(".")[0] for m in mods} & set(banned)); '
          'print(bad(first), bad(sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split('\n')[-2] == '[] []'


def official_available():
  return (importlib.util.find_spec('torch') is not None
          and os.path.isfile(os.path.join(device_check.OFFICIAL_DIR, 'slowfast', 'models',
                                          'vit_helper.py')))


@pytest.mark.slow
def test_smoke_runs_every_setting_and_writes_the_json_and_table(tmp_path):
  results = device_check.run(device_check.parse_args(
      ['--smoke', f'--out={tmp_path}', '--budget_s=0']))
  names = [r['name'] for r in results['train']]
  assert sorted(set(names)) == sorted(
      ['trajectory-frames-cudnn-none', 'trajectory-chunked-xla-none',
       'trajectory-frames-cudnn-tied', 'trajectory-chunked-xla-tied',
       f"joint-{device_report.best(results['train'])['remat']}",
       f"divided-{device_report.best(results['train'])['remat']}"])
  assert all('error' not in r for r in results['train'] + results['eval']), results
  first = [r for r in results['train'] if r['name'] == 'trajectory-frames-cudnn-none']
  assert [r['batch'] for r in first] == [4, 8] and first[0]['search_stopped'] == 'max_batch=8'
  for r in results['train']:
    from mformer_jax.model import ModelConfig  # pylint: disable=g-import-not-at-top
    from mformer_jax.train import throughput  # pylint: disable=g-import-not-at-top
    cfg = ModelConfig(**device_check.SMOKE_MODEL, attention=r['attention'])
    assert r['flops_reference'] == throughput.model_flops_per_clip(cfg) * r['batch']
    assert r['tflops_reference'] == pytest.approx(r['flops_reference'] / r['step_s'] / 1e12)
    assert r['flops_executed'] > 0 and 'mfu_reference' not in r   # no peak on a CPU
    assert r['backend'] == 'xla'                                   # cuDNN needs a GPU
  assert results['matmul']['tflops'] > 0 and results['eval'][0]['batch'] == 30
  profile = results['profile']
  assert profile['name'] == device_report.best(results['train'])['name']
  assert sum(profile['shares'].values()) == pytest.approx(1.0)
  assert set(profile['shares']) == set(trace_summary.CATEGORIES) and profile['top_ops']
  if official_available():
    assert {r['mode'] for r in results['official']} == {'train', 'eval'}
  else:
    assert results['official'] == [] and results['notes'][0].startswith('official model skipped')
  files = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs]
  path = next(f for f in files if f.endswith('.json'))
  assert os.path.basename(path).startswith('device_check_smoke_jax')
  with open(path) as f:
    assert json.load(f)['train'] == results['train']
  with open(path[:-len('.json')] + '.md') as f:
    assert f.read() == device_report.render(results)


@pytest.mark.slow
def test_a_worker_process_reports_its_rows_and_its_failures():
  """spawn: python -m benchmarks.device_workers from the repository root, one row per task."""
  rows = device_check.spawn(sys.executable, [{'task': 'nope', 'name': 'x'},
                                             {'task': 'none', 'name': 'y'}], 'jax', 120)
  assert rows == [{'name': 'x', 'error': "KeyError: 'nope'"},
                  {'name': 'y', 'error': "KeyError: 'none'"}]


def test_the_results_document_renders_a_device_check_under_its_class():
  """benchmarks.report, the one renderer of results/README.md, files a device check under the
  GPU's machine class with the same tables as the check's own document, one level deeper."""
  from benchmarks import report  # pylint: disable=g-import-not-at-top
  results = results_of([ROW], matmul={'n': 8192, 'tflops': 800.0})
  results['command'] = '-m benchmarks.device_check --out=benchmarks/results'
  rel = 'nvidia-h100-x1/device_check_jax0110.json'
  text = report.render({rel: results})
  assert '## nvidia-h100-x1: nvidia-h100-x1' in text
  section = text[text.index('#### Device check: `device_check_jax0110`'):]
  assert 'python -m benchmarks.device_check --out=benchmarks/results' in section
  assert device_report.body(results, '#####').rstrip('\n') in section
  assert device_report.render(results).endswith(device_report.body(results, '##'))

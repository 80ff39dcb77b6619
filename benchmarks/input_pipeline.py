r"""Input pipeline benchmark: training clips/s per core at the K400 recipe, and the speed-up of
decoding only the sampled frames over decoding the whole video.

  TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 \
      .venv/bin/python -m benchmarks.input_pipeline --out benchmarks/out [--runs=3] [--results=PATH]

Synthetic 10 s videos (30 fps, 320x426, h264) are encoded with PyAV and prepared with
`mformer_jax.data.prepare` (native frames as JPEG). The training pipeline (16 frames at rate 4,
short side U[256,320], 224 crop, flip, colour jitter) is then timed in a subprocess pinned to one
core (one map call at a time, TF pools of 1 thread) and in one using every core: the trainer's
iterator (uint8 crops and colour draws; the step finishes them, `data.device_augment`) and, in the
same run, the reference per-clip path (TensorFlow's record reader and parser, the whole recipe in
TensorFlow: `transforms.train_augment`) through the same tf.data settings. The finishing step's
cost on this CPU (jitted, per clip) is reported beside. `--out` is the scratch folder (videos,
prepared records); the results go to `--results` (default:
benchmarks/results/<machine class>/input_pipeline_<jax>.json).
"""

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks import common

HEIGHT, WIDTH, FPS, SECONDS = 320, 426, 30, 10
# clips/s measured, each in its own process: the trainer's pipeline and the reference path, on
# one core and on all.
MODES = ('train1', 'train_all', 'reference1', 'reference_all')


def _frames(seed, num=FPS * SECONDS):
  """Textured, moving content so h264/JPEG sizes are realistic (not flat colour)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:HEIGHT, :WIDTH].astype(np.float32)
  noise = rng.uniform(0, 40, (HEIGHT // 8, WIDTH // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)
  waves = rng.uniform(0.01, 0.08, (3, 2))
  for t in range(num):
    img = [127 + 80 * np.sin(waves[c, 0] * (x + 3 * t) + waves[c, 1] * y) for c in range(3)]
    img = np.stack(img, -1) + noise[:, :WIDTH]
    yield np.clip(img, 0, 255).astype(np.uint8)


def make_videos(folder, count):
  from mformer_jax.data import video  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(folder, 'bench'), exist_ok=True)
  paths = []
  for i in range(count):
    path = os.path.join(folder, 'bench', f'video{i:03d}.mp4')
    if not os.path.exists(path):
      video.write_video(path, np.stack(list(_frames(i))), FPS)
    paths.append(path)
  return paths


def _pin(cores):
  if cores == 1:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if cores == 1:
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
  from mformer_jax.data import config  # pylint: disable=g-import-not-at-top
  return config.data_config('kinetics400', num_frames=16, sampling_rate=4, crop_size=224)


def _rate(it, clips, batch):
  next(it)  # Warm-up: graph tracing, first reads.
  start = time.perf_counter()
  for _ in range(clips // batch):
    next(it)
  return clips // batch * batch / (time.perf_counter() - start)


def train_throughput(data_dir, clips, cores, batch=8):
  """Run in a fresh process: clips/s of the trainer's pipeline on `cores` cores."""
  cfg = _pin(cores)
  from mformer_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  cfg.data_dir = data_dir
  cfg.num_parallel_calls = 1 if cores == 1 else 0
  it = pipeline.make_train_iterator(cfg, local_batch_size=batch, seed=0, process_index=0,
                                    process_count=1)
  return _rate(it, clips, batch)


def reference_throughput(data_dir, clips, cores, batch=8):
  """Run in a fresh process: clips/s of the reference per-clip path (see the docstring)."""
  cfg = _pin(cores)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mformer_jax.data import augment, shards, transforms  # pylint: disable=g-import-not-at-top
  cfg.data_dir = data_dir
  split = shards.Shards(data_dir, cfg.name, 'train')
  ix = split.np_index
  read = lambda e: split._read(split.paths[ix['shard'][e]], ix['offset'][e], ix['length'][e])  # pylint: disable=protected-access

  def clip(example, seed):
    n, fps = split.index['num_frames'][example], split.index['fps'][example]
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
    record = tf.ensure_shape(tf.numpy_function(read, [example], tf.string), [])
    frames = augment.decode_frames(split._parse(record),  # pylint: disable=protected-access
                                   transforms.frame_indices(n, fps, cfg, train_seed=seeds[0]))
    return transforms.train_augment(frames, seeds[1:], cfg)
  examples = tf.data.Dataset.range(split.num).repeat()
  ds = tf.data.Dataset.zip(examples, tf.data.Dataset.counter().map(lambda i: tf.stack([0, i])))
  ds = ds.map(clip, num_parallel_calls=1 if cores == 1 else tf.data.AUTOTUNE,
              deterministic=True).batch(batch).prefetch(2)
  return _rate(ds.as_numpy_iterator(), clips, batch)


def finish_ms_per_clip(batch=8, repeats=5):
  """Median ms per clip of the step's finishing (`device_augment.model_input`, colour jitter on),
  jitted on this machine's CPU."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mformer_jax.data import device_augment  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  draws = np.concatenate([rng.uniform(0.6, 1.4, (batch, 3)),
                          np.tile([[2, 0, 1, 1]], (batch, 1))], 1).astype(np.float32)
  b = {'clip': rng.integers(0, 256, (batch, 16, 224, 224, 3), np.uint8), 'colour': draws}
  fn = jax.jit(device_augment.model_input)
  fn(b).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(b).block_until_ready()
    times.append((time.perf_counter() - start) / batch * 1e3)
  return sorted(times)[repeats // 2]


def decode_speedup(data_dir, videos, repeats):
  """Seconds per clip: whole-video PyAV decode vs reading the record + decoding 16 JPEGs."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mformer_jax.data import augment, config, shards, video  # pylint: disable=g-import-not-at-top
  cfg = config.data_config('kinetics400', num_frames=16, sampling_rate=4, crop_size=224)
  cfg.data_dir = data_dir
  prepared = shards.Shards(cfg.data_dir, cfg.name, 'train')

  @tf.function
  def needed(example, u):
    idx = augment.linspace_indices(prepared.index['num_frames'][example],
                                   prepared.index['fps'][example], u, 16, 4)
    return prepared.decoded(example, idx)

  @tf.function
  def all_jpegs(example):
    encoded = prepared.frames(example)
    return augment.decode_frames(encoded, tf.range(tf.size(encoded)))

  times = {}
  for name, fn in [('pyav_whole_video', lambda i: video.read_video(videos[i])),
                   ('record_all_jpegs', lambda i: all_jpegs(tf.constant(i, tf.int64))),
                   ('record_needed_jpegs',
                    lambda i: needed(tf.constant(i, tf.int64), tf.constant(0.5, tf.float64)))]:
    fn(0)
    start = time.perf_counter()
    for r in range(repeats):
      fn(r % len(videos))
    times[name] = (time.perf_counter() - start) / repeats
  return times


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--out', default='benchmarks/out')
  p.add_argument('--videos', type=int, default=8)
  p.add_argument('--clips', type=int, default=96)
  p.add_argument('--runs', type=int, default=3, help='runs recorded, one after the other')
  p.add_argument('--measure', choices=MODES, help=argparse.SUPPRESS)
  common.out_arg(p, 'input_pipeline', flag='--results')
  args = p.parse_args()
  data_dir = os.path.join(args.out, 'prepared')
  if args.measure:
    cores = 1 if args.measure.endswith('1') else len(os.sched_getaffinity(0))
    fn = reference_throughput if args.measure.startswith('reference') else train_throughput
    print(json.dumps(fn(data_dir, args.clips, cores)))
    return
  from mformer_jax.data import layouts, prepare  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  videos = make_videos(args.out, args.videos)
  encode_s = time.perf_counter() - start
  items = [layouts.Item(os.path.basename(v)[:-4], v, {'label': i % 2})
           for i, v in enumerate(videos)]
  start = time.perf_counter()
  prepare.build(items, ['a', 'b'], out=data_dir, split='train', layout='kinetics',
                workers=len(os.sched_getaffinity(0)), per_shard=4)
  prepare_s = time.perf_counter() - start
  record, path = common.new_results(args.results, 'input_pipeline', args.variant)
  record['versions'] = {d: importlib.metadata.version(d) for d in ('tensorflow', 'tensorflow-cpu', 'av')
                        if _installed(d)}
  for _ in range(args.runs):
    results = dict(videos=len(videos), encode_s=encode_s, prepare_s=prepare_s,
                   mp4_mb=sum(os.path.getsize(v) for v in videos) / 2**20,
                   records_mb=sum(os.path.getsize(os.path.join(data_dir, f))
                                  for f in os.listdir(data_dir) if f.endswith('.tfrecord')) / 2**20)
    results.update(measure(args, data_dir, videos))
    print(json.dumps(results, indent=1))
    record['runs'].append(results)
  common.write(record, path)


def measure(args, data_dir, videos) -> dict:
  """One run: every mode in its own process, the step's finishing, the decode comparison."""
  results = {}
  for mode in MODES:
    out = subprocess.run([sys.executable, '-m', 'benchmarks.input_pipeline', '--out',
                          os.path.abspath(args.out), '--clips', str(args.clips), '--measure',
                          mode], cwd=common.ROOT, check=True, capture_output=True,
                         text=True).stdout
    results[f'{mode}_clips_per_s'] = json.loads(out.strip().splitlines()[-1])
  results['train1_over_reference1'] = results['train1_clips_per_s'] / results[
      'reference1_clips_per_s']
  results['finish_in_step_ms_per_clip'] = finish_ms_per_clip()
  results.update(decode_speedup(data_dir, videos, repeats=8))
  results['speedup_needed_vs_pyav'] = results['pyav_whole_video'] / results['record_needed_jpegs']
  results['speedup_needed_vs_all_jpegs'] = (results['record_all_jpegs'] /
                                            results['record_needed_jpegs'])
  return results


def _installed(dist):
  try:
    return bool(importlib.metadata.version(dist))
  except importlib.metadata.PackageNotFoundError:
    return False


if __name__ == '__main__':
  main()

r"""Peak resident memory of `predict` against the length of the video: it grows with the clips the
model sees, not with the video (issue 32.3).

  TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -m benchmarks.predict_memory \
      [--lengths=60,1200,6000] [--whole_up_to=1200] [--scratch=benchmarks/out/predict_memory]

Generated 640x360 videos at 30 fps (moving texture, H.264) of each length; each run is a fresh
process (`common.run_worker`: its ru_maxrss is its own) that predicts with the demo model (its
8 x 32 px clips, untrained weights: the memory of the model is not the point) over 10 clips x 3
crops at sampling rate 4, writing the labelled .mp4 (`predict_output`). `whole` runs the way
predict worked before, for contrast: every frame decoded and kept (`video.read_video`), the
views cut from the whole stack (`transforms.test_views`, the reference of
`pipeline.load_video_views`) and the labelled copy drawn on the whole stack; it is run up to
--whole_up_to frames (4.3 GB at 1,200 frames; 6,000 would need about 20 GB). Results:
benchmarks/results/<machine class>/predict_memory_<jax>.json.
"""
import argparse
import functools
import json
import os
import sys
import time

import numpy as np

from benchmarks import common

HEIGHT, WIDTH, FPS = 360, 640, 30


def frames(num, seed=0):
  """Moving texture (not flat colour, so that H.264 and the decoder do real work)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:HEIGHT, :WIDTH].astype(np.float32)
  noise = rng.uniform(0, 40, (HEIGHT // 8, WIDTH // 8, 3)).repeat(8, 0).repeat(8, 1)
  for t in range(num):
    wave = 127 + 80 * np.sin(0.03 * (x + 4 * t) + 0.02 * y)
    yield np.clip(wave[..., None] + noise, 0, 255).astype(np.uint8)


def make_video(folder, num):
  from mformer_jax.data import video  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f'video_{num}.mp4')
  if not os.path.exists(path):
    video.write_video(path + '.tmp.mp4', frames(num), FPS)
    os.replace(path + '.tmp.mp4', path)
  return path


def make_model(folder):
  """The demo config's model, initialised, as a converted workdir (step 0)."""
  import jax  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import init_variables, make_model as build  # pylint: disable=g-import-not-at-top
  from mformer_jax.run import checkpoints  # pylint: disable=g-import-not-at-top
  path = os.path.join(folder, 'model')
  if not os.path.isdir(path):
    model = build(_config().model)
    checkpoints.save_params(path, init_variables(model, jax.random.key(0))['params'], model.cfg)
  return path


def _config(**fields):
  from configs import demo  # pylint: disable=g-import-not-at-top
  from mformer_jax import config_lib  # pylint: disable=g-import-not-at-top
  config = demo.get_config()
  d = config.data
  d.test_num_clips, d.test_num_crops, d.sampling_rate, d.sampler = 10, 3, 4, 'linspace'
  for key, value in fields.items():
    node, leaf = config, key.split('.')
    for k in leaf[:-1]:
      node = node[k]
    node[leaf[-1]] = value
  return config_lib.finalize(config)


def _whole(config, workdir):
  """predict as it was before decoding only the sampled frames (module docstring)."""
  import jax  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mformer_jax.data import transforms, video  # pylint: disable=g-import-not-at-top
  from mformer_jax.eval import evaluator, overlay  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import make_model as build  # pylint: disable=g-import-not-at-top
  from mformer_jax.run import sharding  # pylint: disable=g-import-not-at-top
  model = build(config.model)
  params, _ = evaluator.params_to_evaluate(config, workdir, model, sharding.make_mesh())
  decoded, fps = video.read_video(config.video)
  views = transforms.test_views(tf.constant(np.stack(decoded)), len(decoded), fps,
                                config.data).numpy()
  probs = jax.jit(functools.partial(evaluator.probabilities, model))(params, views)['label']
  top = {'label': [(str(i), float(p)) for i, p in enumerate(np.asarray(probs).mean(0))][:3]}
  stack = np.stack(video.read_video(config.video)[0])
  h, w = stack.shape[1] // 2 * 2, stack.shape[2] // 2 * 2
  labelled = overlay.draw_labels(stack[:, :h, :w], overlay.label_lines(top))
  video.write_video(config.predict_output, labelled, fps)
  return len(labelled)


def worker(spec):
  """One predict in this fresh process; emits peak RSS and wall time."""
  start = time.perf_counter()
  config = _config(video=spec['video'], predict_output=spec['output'],
                   **{'init.checkpoint': spec['model']})
  workdir = os.path.join(os.path.dirname(spec['output']), 'work')
  if spec['mode'] == 'whole':
    written = _whole(config, workdir)
  else:
    from mformer_jax.eval import predict  # pylint: disable=g-import-not-at-top
    predict.predict(config, workdir)
    written = None
    if spec.get('count_frames'):
      from mformer_jax.data import video  # pylint: disable=g-import-not-at-top
      written = sum(1 for _ in video.decode(spec['output']))
  common.emit(dict(spec, seconds=round(time.perf_counter() - start, 2), frames_written=written))


def measure(scratch, num, mode, count_frames=False):
  """The worker's RESULT for a video of `num` frames (generated once into `scratch`)."""
  spec = dict(video=make_video(scratch, num), model=make_model(scratch), mode=mode, frames=num,
              output=os.path.join(scratch, f'labelled_{mode}_{num}.mp4'),
              count_frames=count_frames, raw_video_mb=round(num * HEIGHT * WIDTH * 3 / 2**20, 1))
  return common.run_worker(sys.executable, __file__, spec, timeout=3600)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--worker', help=argparse.SUPPRESS)
  ap.add_argument('--lengths', default='60,1200,6000', help='video lengths in frames')
  ap.add_argument('--whole_up_to', type=int, default=1200,
                  help="the longest video the former whole-video predict is run on")
  ap.add_argument('--scratch', default=os.path.join('benchmarks', 'out', 'predict_memory'))
  common.out_arg(ap, 'predict_memory', flag='--results')
  args = ap.parse_args()
  if args.worker:
    worker(json.loads(args.worker))
    return
  results, path = common.new_results(args.results, 'predict_memory', args.variant)
  results['settings'] = dict(size=f'{WIDTH}x{HEIGHT}', fps=FPS, model='configs/demo.py',
                             clips=10, crops=3, num_frames=8, sampling_rate=4)
  for num in (int(n) for n in args.lengths.split(',')):
    for mode in ('clips', 'whole') if num <= args.whole_up_to else ('clips',):
      r = measure(args.scratch, num, mode)  # relative to the repository root, the workers' cwd
      results['runs'].append(r)
      print(json.dumps({k: r.get(k) for k in ('mode', 'frames', 'raw_video_mb', 'peak_rss_mb',
                                               'seconds', 'error')}), flush=True)
      common.write(results, path)


if __name__ == '__main__':
  main()

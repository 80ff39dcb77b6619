r"""Attention maps of a Motionformer (appendix Fig. 2), drawn: the maps themselves are
`mformer_jax.model.attention_maps`.

CLI (Fig. 2): a PNG strip of the F slots with the query's attention overlaid, the query point
marked and the per-slot argmax path drawn as arrows, plus an animated GIF (or MP4):

  python -m mformer_jax.analysis.attention_maps --checkpoint=workdirs/demo --synthetic=0
  python -m mformer_jax.analysis.attention_maps --checkpoint=k400.pyth --video=clip.mp4 \
      --query=0,112,96 --layer=11 --head=-1 --output=maps/

--query=FRAME,X,Y: FRAME indexes the model's T input frames, X (column) and Y (row) are pixels
of the model's input (the crop shown in the strip; a video is read as `predict` reads it, one
centre view). Each panel shows the first frame of its tubelet. --head=-1 averages the heads.
--synthetic=SEED --index=I renders test clip I of the demo's synthetic data instead (query by
default: the object's centre in frame 0, whose true position per slot is marked +).
"""
import argparse
import os

import jax.numpy as jnp
import numpy as np
from absl import logging
from PIL import Image

from mformer_jax import data, errors, weights
from mformer_jax.data import synthetic, video
from mformer_jax.data.config import data_config
from mformer_jax.errors import ConfigError
from mformer_jax.model import ModelConfig, attention_maps


def _synthetic_clip(cfg: ModelConfig, seed: int, index: int, classes: str):
  v = synthetic.render([index], num_frames=cfg.num_frames, size=cfg.img_size, seed=seed,
                       split='test', classes=classes, num_distractors=0, background_speed=0.0)
  return v.videos[0], v.centers[0]


def _video_clip(path: str, cfg: ModelConfig, sampling_rate: int):
  """The model's input (T, S, S, 3): one centre view, as the evaluator (and predict) see it."""
  # Here, not at the top: the pipeline brings TensorFlow, which a synthetic clip does not need.
  from mformer_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  data_cfg = data_config('kinetics400', num_frames=cfg.num_frames, sampling_rate=sampling_rate,
                         crop_size=cfg.img_size)
  data_cfg.test_num_clips = data_cfg.test_num_crops = 1      # one centre view
  data_cfg.bgr = attention_maps.input_bgr(cfg)
  return pipeline.load_video_views(path, data_cfg)[0]


def figure(checkpoint, *, video_path='', synthetic_seed=None, index=0,
           synthetic_classes='move_right,move_left,move_down,move_up', query='', layer=-1,
           head=-1, sampling_rate=4, fmt='gif', output='attention_maps'):
  """Writes the Fig. 2 strip (PNG) and animation (GIF/MP4) of one query; returns their paths.

  Bad input (unreadable video, query outside the clip, layer or head out of range) raises
  ValueError or InputError with a one-line message.
  """
  if bool(video_path) == (synthetic_seed is not None):
    raise ConfigError('give exactly one of --video=FILE or --synthetic=SEED')
  model, variables = weights.load_model(checkpoint)
  cfg = model.cfg
  layer = attention_maps.select_layers([layer], cfg.depth)[0]
  if not -1 <= head < cfg.num_heads:
    raise ConfigError(f'head {head} out of range: the model has {cfg.num_heads} heads '
                      '(-1 = their mean)')
  truth = None
  # The model is fed its own colour order; the panels show RGB.
  if video_path:
    clip = _video_clip(video_path, cfg, sampling_rate)
    frames = data.to_display_rgb(clip, attention_maps.input_bgr(cfg))
  else:
    frames, centres = _synthetic_clip(cfg, synthetic_seed, index, synthetic_classes)
    clip = data.to_model_input(jnp.asarray(frames), attention_maps.input_bgr(cfg))
    truth = centres[::cfg.tubelet_size]
  size = frames.shape[1]
  if query:
    try:
      qf, qx, qy = (float(v) for v in query.split(','))
    except ValueError:
      raise ConfigError(f'--query={query!r}: expected FRAME,X,Y') from None
  elif truth is not None:                    # synthetic: the object's centre in frame 0
    qf, (qy, qx) = 0, centres[0]
  else:
    raise ConfigError('--query=FRAME,X,Y is needed with --video')
  token = attention_maps.query_token(cfg, size, int(qf), qx, qy)
  attn = attention_maps.compute(model, variables, jnp.asarray(clip)[None], layers=[layer])
  fmap = attention_maps.frame_maps(attn, cfg)[0, 0, :, token]
  fmap = np.asarray(fmap.mean(0) if head < 0 else fmap[head], np.float32)
  panels = attention_maps.render(frames[::cfg.tubelet_size], fmap, cfg, token=token, query_xy=(qx, qy),
                  truth=truth)
  os.makedirs(output, exist_ok=True)
  stem = os.path.join(output, f'attention_layer{layer}_head{head}_query{int(qf)}-{int(qx)}-'
                      f'{int(qy)}')
  Image.fromarray(np.concatenate(list(panels), axis=1)).save(stem + '.png', optimize=True)
  if fmt == 'mp4':
    video.write_video(stem + '.mp4', panels, fps=2)
  else:
    Image.fromarray(panels[0]).save(stem + '.gif', save_all=True, duration=500, loop=0,
                                    append_images=[Image.fromarray(p) for p in panels[1:]])
  return stem + '.png', f'{stem}.{fmt}'


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m mformer_jax.analysis.attention_maps',
                              description=__doc__.split('\n')[0])
  p.add_argument('--checkpoint', required=True, help='Trainer workdir or official .pyth/.npz '
                 '(anything weights.load_model accepts).')
  p.add_argument('--video', default='', help='A video file (one centre view, as predict sees it).')
  p.add_argument('--synthetic', type=int, default=None,
                 help='Render a synthetic motion test clip with this seed.')
  p.add_argument('--index', type=int, default=0, help='Which synthetic clip.')
  p.add_argument('--synthetic_classes', default='move_right,move_left,move_down,move_up',
                 help="Synthetic motion classes (the demo's by default).")
  p.add_argument('--query', default='', help='FRAME,X,Y in the model input (default for '
                 'synthetic: the object centre in frame 0).')
  p.add_argument('--layer', type=int, default=-1, help='Layer (negative from the end).')
  p.add_argument('--head', type=int, default=-1, help='Head, or -1 for the mean over heads.')
  p.add_argument('--sampling_rate', type=int, default=4, help='Frame stride when sampling a video.')
  p.add_argument('--format', choices=('gif', 'mp4'), default='gif', help='Animation format.')
  p.add_argument('--output', default='attention_maps', help='Output folder.')
  f = p.parse_args(argv)
  logging.set_verbosity(logging.WARNING)   # an error is then the one line on stderr
  try:
    paths = figure(f.checkpoint, video_path=f.video, synthetic_seed=f.synthetic, index=f.index,
                   synthetic_classes=f.synthetic_classes, query=f.query, layer=f.layer,
                   head=f.head, sampling_rate=f.sampling_rate, fmt=f.format, output=f.output)
  except errors.UserError as e:
    errors.exit_with(e, prog='attention_maps')
  print('\n'.join(paths))


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')   # TF (video decoding) start-up chatter
  main()

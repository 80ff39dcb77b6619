"""`predict`'s video output: the top labels drawn on the frames, optionally over the attention map
of one query point (analysis/attention_maps.py renders the map).

Without a query the output is the input video itself, every frame, at its size and fps. With a
query (FRAME,X,Y in pixels of the model's centre view, as attention_maps' --query) the map only
exists on the clip the model saw, so the output is that clip: one 256 px panel per temporal slot
(the query's last-layer attention, heads averaged, its argmax path), shown at 2 fps.
"""
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mformer_jax.model import attention_maps
from mformer_jax.data import pipeline, to_display_rgb, video
from mformer_jax.errors import ConfigError, UserError
from mformer_jax.model import head_prefix

TOP_DRAWN = 3  # Labels drawn per head (predict prints more).
# The comment predict writes into its videos: a file carrying it may be overwritten by predict.
MARKER = 'mformer_jax predict'

# The formats predict_output may name, and their encoder (None: an animated GIF, as the Fig. 2
# CLI writes).
FORMATS = {'.mp4': 'libx264', '.webm': 'libvpx-vp9', '.gif': None}


def label_lines(top: dict, count: int = TOP_DRAWN) -> list[str]:
  """'0.87 name' per class of `predict`'s {head: [(name, p)]}, heads other than 'label' named."""
  lines = []
  for head, best in top.items():
    prefix = head_prefix(head).rstrip('_')
    lines += [f'{prefix + ": " if prefix else ""}{p:.2f}  {name}' for name, p in best[:count]]
  return lines


def label_painter(height: int, width: int, lines: list[str]):
  """A function drawing `lines` in white on a dark band, bottom left, on a copy of uint8 frames
  of that size: one (H, W, 3) frame or a stack (..., H, W, 3). The text is laid out once."""
  font = ImageFont.load_default(size=max(9, height // 18))
  probe = ImageDraw.Draw(Image.new('RGB', (1, 1)))
  boxes = [probe.textbbox((0, 0), line, font=font) for line in lines]
  pad, step = 2, max(b[3] for b in boxes) + 2
  band_h, band_w = step * len(lines) + 2 * pad, min(width, max(b[2] for b in boxes) + 2 * pad)
  text = Image.new('L', (band_w, band_h))
  draw = ImageDraw.Draw(text)
  for i, line in enumerate(lines):
    draw.text((pad, pad + i * step), line, fill=255, font=font)
  mask = np.asarray(text)[:min(band_h, height)] > 127

  def paint(frames):
    out = np.array(frames)
    band = out[..., max(height - band_h, 0):, :band_w, :]
    band[:] = band // 3  # Darkened, so white text reads on any footage.
    band[..., mask, :] = 255
    return out

  return paint


def draw_labels(frames: np.ndarray, lines: list[str]) -> np.ndarray:
  """A copy of (T, H, W, 3) uint8 frames with `lines` in white on a dark band, bottom left."""
  return label_painter(*frames.shape[1:3], lines)(frames)


def attention_panels(model, params, config, query: str, layer: int = -1) -> np.ndarray:
  """(F, 256, 256, 3) panels of the query's attention over the centre view of config.video."""
  cfg = model.cfg
  try:
    qf, qx, qy = (float(v) for v in query.split(','))
  except ValueError:
    raise ConfigError(f'predict_query={query!r}: expected FRAME,X,Y') from None
  data = config.data.copy_and_resolve_references()
  data.test_num_clips = data.test_num_crops = 1  # The centre view only.
  clip = pipeline.load_video_views(config.video, data)[:1]
  try:
    token = attention_maps.query_token(cfg, clip.shape[2], int(qf), qx, qy)
    maps = attention_maps.compute(model, {'params': params}, clip, layers=[layer])
    fmap = attention_maps.frame_maps(maps, cfg)[0, 0, :, token].mean(0)
  except UserError as e:  # a query outside the clip, a model without per-frame maps
    raise ConfigError(f'predict_query={query!r}: {e}') from None
  frames = to_display_rgb(clip[0], data.bgr)  # Shown as RGB.
  return attention_maps.render(frames[::cfg.tubelet_size], np.asarray(fmap, np.float32), cfg,
                               token=token, query_xy=(qx, qy))


def check_output(path: str, source: str = '') -> None:
  """ConfigError (one line naming `path`) for an output write_prediction cannot produce or must
  not write: called before the model runs, so that a typo costs nothing. An existing file is
  overwritten only where it is an earlier output of predict (it carries video.MARKER); never
  the input video `source` itself, under any name."""
  ext = os.path.splitext(path)[1].lower()
  folder = os.path.dirname(os.path.abspath(path))
  if ext not in FORMATS:
    problem = f'{ext or "no extension"}: not a format predict writes ({", ".join(FORMATS)})'
  elif not os.path.isdir(folder):
    problem = f'the folder {folder} does not exist'
  elif not os.access(folder, os.W_OK):
    problem = f'the folder {folder} is not writable'
  elif os.path.isdir(path):
    problem = 'a folder'
  elif os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
    problem = f'this is the input video ({source}); write the labelled copy to another file'
  elif os.path.exists(path) and video.comment(path) != MARKER:
    problem = ('the file exists and is not an output of predict (which carries the comment '
               f'{MARKER!r}); predict overwrites only its own outputs: remove it or choose '
               'another name')
  else:
    return
  raise ConfigError(f'predict_output={path}: {problem}')


def write_prediction(path: str, config, model, params, top: dict) -> int:
  """Writes the labelled video (module docstring) to `path`, marked as predict's (MARKER);
  returns its frame count. The input video is streamed: decoded, labelled and encoded one frame
  at a time (a GIF is the exception: PIL holds its frames until it writes)."""
  if config.predict_query:
    panels, fps = attention_panels(model, params, config, config.predict_query), 2
  else:
    (fps, _), panels = video.probe(config.video), None
  written = 0

  def labelled():  # one frame at a time, cut to even sizes (H.264's 4:2:0 needs them)
    nonlocal written
    paint = None
    frames = (f for _, f in video.decode(config.video)) if panels is None else panels
    for frame in frames:
      h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
      paint = paint or label_painter(h, w, label_lines(top))
      written += 1
      yield paint(frame[:h, :w])

  # Written beside it, then renamed: an interrupted write (a signal, a full disk) leaves neither
  # a broken file, which a rerun would refuse as not predict's, nor a lost earlier output.
  stem, ext = os.path.splitext(path)
  codec, partial = FORMATS[ext.lower()], f'{stem}.partial{ext}'
  try:
    if codec is None:
      video.write_gif(partial, labelled(), fps, comment=MARKER)
    else:
      video.write_video(partial, labelled(), fps, codec, comment=MARKER)
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return written

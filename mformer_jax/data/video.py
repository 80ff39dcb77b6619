"""Video and image files in and out with PyAV/PIL (no TensorFlow: preparation workers run it)."""

import contextlib
import fractions
import io
import itertools

import av
import numpy as np
from PIL import Image

from mformer_jax.errors import InputError


def _short_side_size(height, width, short_side):
  """Official `random_short_side_scale_jitter` output size (long side floored)."""
  if not short_side or min(height, width) == short_side:
    return height, width
  if width < height:
    return int(np.floor(height / width * short_side)), short_side
  return short_side, int(np.floor(width / height * short_side))


@contextlib.contextmanager
def _reading(path):
  """Opens `path`: (container, its first video stream, fps); PyAV's and the OS's errors while
  the block reads it become InputError (the reason written to the skip report)."""
  try:
    with av.open(str(path)) as container:
      if not container.streams.video:
        raise InputError('no video stream')
      stream = container.streams.video[0]
      stream.thread_type = 'AUTO'
      rate = stream.average_rate or stream.guessed_rate
      yield container, stream, float(rate) if rate else 30.0
  except InputError:  # ours, above: already the reason
    raise
  except (av.FFmpegError, OSError, ValueError) as e:
    raise InputError(f'{type(e).__name__}: {e}') from e


def probe(path):
  """(fps, the frame count the container states, 0 where it states none, as WebM)."""
  with _reading(path) as (_, stream, fps):
    return fps, int(stream.frames or 0)


def decode(path, short_side=0, keep=None):
  """Every frame of a video, in order: (index, RGB uint8 frame (optionally short side resized))
  where `keep` (a set of indices; None = all) holds the index, else (index, None): the frame is
  decoded but not converted, so that skipping it costs no memory."""
  with _reading(path) as (container, stream, _):
    for i, frame in enumerate(container.decode(stream)):
      if keep is not None and i not in keep:
        yield i, None
        continue
      height, width = _short_side_size(frame.height, frame.width, short_side)
      yield i, frame.to_ndarray(format='rgb24', width=width, height=height,
                                interpolation='BILINEAR')


def read_video(path, short_side=0):
  """All frames of a video file as RGB uint8 (optionally short side resized) and its fps."""
  fps, _ = probe(path)
  frames = [frame for _, frame in decode(path, short_side)]
  if not frames:
    raise InputError('no decodable frames')
  return frames, fps


def read_frames(path, wanted, transform=None):
  """Only the frames of `path` that `wanted(n, fps)` asks for, where n is the number of frames
  the video decodes to (as read_video counts them): (sorted distinct indices, [transform(frame)]
  for each, n, fps). Every frame is decoded but only these are converted and kept, so memory
  holds a clip's frames, never the video's. n is the container's count where it states one,
  checked against the frames decoded (a wrong count costs a second pass with the true one);
  without one a first pass counts the frames."""
  fps, n = probe(path)
  if not n:
    n = sum(1 for _ in decode(path, keep=()))
  for _ in range(2):
    indices = np.unique(np.asarray(wanted(n, fps)))
    kept, count = {}, 0
    for count, (i, frame) in enumerate(decode(path, keep=set(indices.tolist())), 1):
      if frame is not None:
        kept[i] = frame if transform is None else transform(frame)
    if not count:
      raise InputError('no decodable frames')
    if count != n:  # the container's count was wrong: the indices of the true one
      n, stated = count, n
      indices = np.unique(np.asarray(wanted(n, fps)))
      if not set(indices.tolist()) <= set(kept):
        continue
    return indices, [kept[i] for i in indices.tolist()], n, fps
  raise InputError(f'decodes to {stated} frames, then to {n}')


def encode_jpeg(frame, quality=90):
  buf = io.BytesIO()
  Image.fromarray(frame).save(buf, format='JPEG', quality=quality)
  return buf.getvalue()


def resize_jpeg(data, short_side, quality=90):
  """Re-encodes a JPEG at a new short side; returns the bytes unchanged when no resize is due."""
  image = Image.open(io.BytesIO(data))
  image.load()  # Decode fully now: a truncated JPEG must fail here, never inside TF.
  height, width = _short_side_size(image.height, image.width, short_side)
  if (height, width) == (image.height, image.width):
    return data, (height, width)
  image = image.convert('RGB').resize((width, height), Image.BILINEAR)
  return encode_jpeg(np.asarray(image), quality), (height, width)


def write_video(path, frames, fps=30, codec='libx264', comment=''):
  """Encodes RGB uint8 frames: an array (T, H, W, 3) or any iterable of (H, W, 3) frames, one
  in memory at a time; 'libx264' for .mp4, 'libvpx-vp9' for .webm. `comment` goes into the
  container's metadata (`comment`)."""
  frames = iter(frames)
  first = next(frames)
  with av.open(str(path), 'w') as out:
    if comment:
      out.metadata['comment'] = comment
    stream = out.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1001))
    stream.height, stream.width = first.shape[:2]
    stream.pix_fmt = 'yuv420p'
    for frame in itertools.chain([first], frames):
      out.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format='rgb24')))
    out.mux(stream.encode())


def write_gif(path, frames, fps, comment=''):
  """An animated GIF of RGB uint8 frames (an array or an iterable), looping, `fps` frames a
  second, with `comment` in its comment extension. (PIL keeps every frame until it writes.)"""
  images = (Image.fromarray(np.asarray(f)) for f in frames)
  first = next(images)
  first.save(str(path), save_all=True, append_images=images, duration=round(1000 / fps), loop=0,
             **({'comment': comment.encode()} if comment else {}))


def comment(path) -> str:
  """The comment a video or GIF file carries (write_video, write_gif), '' for none or for a file
  that is no video."""
  try:
    if str(path).lower().endswith('.gif'):
      with Image.open(str(path)) as image:
        return image.info.get('comment', b'').decode(errors='replace')
    with av.open(str(path)) as container:
      meta = {k.lower(): v for k, v in container.metadata.items()}
      return meta.get('comment', '')
  except (av.FFmpegError, OSError, ValueError):
    return ''

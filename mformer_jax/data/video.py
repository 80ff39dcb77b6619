"""Video and image files in and out with PyAV/PIL (no TensorFlow: preparation workers run it)."""

import fractions
import io

import av
import numpy as np
from PIL import Image

from mformer_jax.errors import UserError


class VideoError(UserError):
  """A video that cannot be used; the message is the reason written to the skip report."""


def _short_side_size(height, width, short_side):
  """Official `random_short_side_scale_jitter` output size (long side floored)."""
  if not short_side or min(height, width) == short_side:
    return height, width
  if width < height:
    return int(np.floor(height / width * short_side)), short_side
  return short_side, int(np.floor(width / height * short_side))


def read_video(path, short_side=0):
  """All frames of a video file as RGB uint8 (optionally short side resized) and its fps."""
  try:
    with av.open(str(path)) as container:
      if not container.streams.video:
        raise VideoError('no video stream')
      stream = container.streams.video[0]
      stream.thread_type = 'AUTO'
      rate = stream.average_rate or stream.guessed_rate
      fps = float(rate) if rate else 30.0
      frames = []
      for frame in container.decode(stream):
        height, width = _short_side_size(frame.height, frame.width, short_side)
        frames.append(frame.to_ndarray(format='rgb24', width=width, height=height,
                                       interpolation='BILINEAR'))
  except VideoError:
    raise
  except (av.FFmpegError, OSError, ValueError) as e:
    raise VideoError(f'{type(e).__name__}: {e}') from e
  if not frames:
    raise VideoError('no decodable frames')
  return frames, fps


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


def write_video(path, frames, fps=30, codec='libx264'):
  """Encodes RGB uint8 frames (T, H, W, 3); 'libx264' for .mp4, 'libvpx-vp9' for .webm."""
  with av.open(str(path), 'w') as out:
    stream = out.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1001))
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = 'yuv420p'
    for frame in frames:
      out.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format='rgb24')))
    out.mux(stream.encode())


def write_gif(path, frames, fps):
  """An animated GIF of RGB uint8 frames (T, H, W, 3), looping, `fps` frames a second."""
  images = [Image.fromarray(np.asarray(f)) for f in frames]
  images[0].save(str(path), save_all=True, append_images=images[1:],
                 duration=round(1000 / fps), loop=0)

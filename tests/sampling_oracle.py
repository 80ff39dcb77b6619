"""Frame-index samplers in plain numpy: the reference the tf.data versions are tested against.

All samplers map a video of `n` stored frames at `fps` to `num_frames` indices into the stored
frames. Randomness enters only through `u` (uniform in [0, 1)), so callers control seeding and a
test can feed the same `u` to numpy and TF. Arithmetic is float64 in both implementations.
"""

import numpy as np


def _ramp(num_frames):
  """linspace(0, 1, num_frames) written as i / (num - 1) so TF can repeat it bit for bit."""
  return np.arange(num_frames) / max(num_frames - 1, 1)


def clip_size(fps, num_frames, sampling_rate, target_fps=30.0):
  """Stored frames spanned by `num_frames` x `sampling_rate` frames at `target_fps` (official)."""
  return sampling_rate * num_frames / target_fps * fps


def linspace_indices(n, fps, num_frames, sampling_rate, u, target_fps=30.0, offset=0):
  """Kinetics / EK sampling (`decoder.get_start_end_idx` + `temporal_sampling`).

  Start uniform in [0, max(n - clip, 0)] (train: u random; test clip i of N: u = i / N), then
  `num_frames` evenly spaced indices over the clip, clamped and truncated. EK adds `offset=1`
  (official `start_idx + 1`, frames are 1-based relative to the narration start).
  """
  size = clip_size(fps, num_frames, sampling_rate, target_fps)
  start = u * max(n - size, 0.0)
  idx = start + offset + (size - 1) * _ramp(num_frames)
  return np.clip(idx, 0, n - 1).astype(np.int64)


def eval_clip_indices(n, fps, num_frames, sampling_rate, num_clips, target_fps=30.0,
                          offset=0):
  """(num_clips, num_frames): the official uniformly placed test clips, start = delta * i / N."""
  return np.stack([linspace_indices(n, fps, num_frames, sampling_rate, i / num_clips,
                                    target_fps, offset) for i in range(num_clips)])


def segment_indices(n, fps, num_frames, u=None, target_fps=30.0):
  """SSv2 TSN-style sampling (`ssv2.get_seq_frames`) on a `target_fps` timeline.

  The official lists hold frames re-extracted at 30 fps; we store native frames and sample the
  equivalent 30 fps timeline (frame j shows stored frame floor(j * fps / 30)). Train: u has shape
  (num_frames,) and picks uniformly inside each segment (inclusive ends, like random.randint);
  test (u is None): the segment middle.
  """
  length = max(1, int(round(n * target_fps / fps)))
  seg = (length - 1) / num_frames
  i = np.arange(num_frames)
  starts, ends = np.round(seg * i), np.round(seg * (i + 1))  # Half-to-even, as np.round.
  if u is None:
    virtual = (starts + ends) // 2
  else:
    virtual = starts + np.floor(np.asarray(u) * (ends - starts + 1))
  return np.minimum(np.floor(virtual * fps / target_fps), n - 1).astype(np.int64)

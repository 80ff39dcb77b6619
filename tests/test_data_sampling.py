"""Frame-index samplers: numpy reference vs official numbers, and TF vs the reference."""

import itertools
import random

import numpy as np

from mformer_jax.data import augment
import sampling_oracle as sampling


def test_kinetics_train_matches_official_numbers():
  # 300 frames at 30 fps, 16 x 4: clip of 64 frames; u = 0 is torch.linspace(0, 63, 16).long().
  np.testing.assert_array_equal(
      sampling.linspace_indices(300, 30.0, 16, 4, 0.0),
      [0, 4, 8, 12, 16, 21, 25, 29, 33, 37, 42, 46, 50, 54, 58, 63])
  # At 60 fps the same 2.1 s span 128 stored frames; u = 1 ends on the last frame.
  idx = sampling.linspace_indices(300, 60.0, 16, 4, 1.0)
  assert idx[0] == 300 - 128 and idx[-1] == 299


def test_kinetics_test_clips_start_at_delta_i_over_n():
  idx = sampling.eval_clip_indices(300, 30.0, 16, 4, num_clips=10)
  assert idx.shape == (10, 16)
  np.testing.assert_array_equal(idx[:, 0], [int(236 * i / 10) for i in range(10)])


def test_short_video_is_clamped_and_epic_is_one_based():
  np.testing.assert_array_equal(sampling.linspace_indices(10, 30.0, 4, 8, 0.7),
                                [0, 9, 9, 9])  # Clip of 32 > 10 frames: start 0, clamped.
  np.testing.assert_array_equal(sampling.linspace_indices(10, 30.0, 4, 8, 0.7, offset=1),
                                [1, 9, 9, 9])


def _official_ssv2(num_30fps, num_frames, train):
  """Transcription of ssv2.get_seq_frames on a 30 fps frame list."""
  seg = float(num_30fps - 1) / num_frames
  seq = []
  for i in range(num_frames):
    start, end = int(np.round(seg * i)), int(np.round(seg * (i + 1)))
    seq.append(random.randint(start, end) if train else (start + end) // 2)
  return seq


def test_ssv2_segments_match_official_on_a_30fps_list():
  # Stored at 30 fps the 30 fps timeline is the stored list itself.
  for n, t in [(45, 8), (100, 16), (9, 16), (301, 8)]:
    np.testing.assert_array_equal(sampling.segment_indices(n, 30.0, t),
                                  _official_ssv2(n, t, train=False))
  # 12 fps: the 30 fps frame j shows stored frame floor(j * 12 / 30).
  mid = _official_ssv2(120, 8, train=False)
  np.testing.assert_array_equal(sampling.segment_indices(48, 12.0, 8),
                                [j * 12 // 30 for j in mid])
  random.seed(0)
  allowed = [set(range(int(np.round(119 / 8 * i)), int(np.round(119 / 8 * (i + 1))) + 1))
             for i in range(8)]
  for u in np.random.default_rng(0).uniform(size=(50, 8)):
    virtual_ok = [any(j * 12 // 30 == k for j in allowed[i])
                  for i, k in enumerate(sampling.segment_indices(48, 12.0, 8, u))]
    assert all(virtual_ok)


def test_tf_samplers_equal_numpy_reference():
  rng = np.random.default_rng(0)
  grid = itertools.product([1, 7, 24, 31, 64, 300, 301], [12.0, 25.0, 29.97, 30.0, 50.0, 60.0],
                           [(4, 2), (8, 4), (16, 4)], [0, 1])
  for n, fps, (t, rate), offset in grid:
    u = np.concatenate([[0.0, 0.5, 1.0 - 1e-12], rng.uniform(size=3)])
    got = augment.linspace_indices(n, fps, u, t, rate, offset=offset).numpy()
    want = [sampling.linspace_indices(n, fps, t, rate, x, offset=offset) for x in u]
    np.testing.assert_array_equal(got, want, err_msg=f'{n} {fps} {t} {rate} {offset}')
    np.testing.assert_array_equal(augment.segment_indices(n, fps, t).numpy(),
                                  sampling.segment_indices(n, fps, t))
    us = rng.uniform(size=t)
    np.testing.assert_array_equal(augment.segment_indices(n, fps, t, us).numpy(),
                                  sampling.segment_indices(n, fps, t, us))

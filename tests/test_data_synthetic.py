"""Synthetic motion dataset: determinism, ground truth, motion-only classes, pipelines."""

import numpy as np
import pytest

from mformer_jax.data import config
from mformer_jax.data import pipeline
from mformer_jax.data import synthetic

KW = dict(num_frames=8, size=32)
K = 4  # Low Fourier frequencies kept per axis by the probes.


def _spectrum(videos):
  """Low-frequency 2D FFT per frame and channel, (N, T, 3, 2K+1, 2K+1) complex."""
  f = np.fft.fftshift(np.fft.fft2(videos.astype(np.float32) / 255, axes=(2, 3)), axes=(2, 3))
  c = videos.shape[2] // 2
  return np.moveaxis(f[:, :, c - K:c + K + 1, c - K:c + K + 1], -1, 2)


def single_frame_features(videos):
  """Power spectrum of the middle frame: translation invariant, motion blind."""
  mid = videos.shape[1] // 2
  return np.log1p(np.abs(_spectrum(videos[:, mid:mid + 1])) ** 2).reshape(len(videos), -1)


def frame_pair_features(videos):
  """Normalised cross-power spectrum of consecutive frames: the phase of F(t+1) F(t)* is the
  spectral form of the frame-to-frame displacement (what frame differences carry)."""
  f = _spectrum(videos)
  cross = (f[:, 1:] * np.conj(f[:, :-1])).sum(2)
  cross /= np.abs(cross) + 1e-3
  return np.concatenate([cross.real, cross.imag], -1).reshape(len(videos), -1)


def linear_probe_accuracy(features, train, test):
  """Ridge-regression classifier on standardised features; test accuracy."""
  a, b = features(train.videos), features(test.videos)
  mean, std = a.mean(0), a.std(0) + 1e-6
  a, b = (a - mean) / std, (b - mean) / std
  a, b = np.c_[a, np.ones(len(a))], np.c_[b, np.ones(len(b))]
  onehot = np.eye(len(train.class_names))[train.labels]
  w = np.linalg.solve(a.T @ a + 10 * np.eye(a.shape[1]), a.T @ onehot)
  return ((b @ w).argmax(1) == test.labels).mean()


@pytest.fixture(scope='module')
def motion():
  return (synthetic.generate(2000, **KW), synthetic.generate(800, split='test', **KW))


@pytest.mark.slow
def test_single_frame_probe_is_at_chance_frame_pairs_are_not(motion):
  train, test = motion
  chance = 1 / len(synthetic.MOTION_CLASSES)
  single = linear_probe_accuracy(single_frame_features, train, test)
  pairs = linear_probe_accuracy(frame_pair_features, train, test)
  assert single < chance + 0.05, single
  assert pairs > 0.5, pairs


def test_appearance_twin_is_solved_by_a_single_frame():
  train = synthetic.generate(1000, variant='appearance', **KW)
  test = synthetic.generate(400, variant='appearance', split='test', **KW)
  # Colour is linear in these features, shape under random size and rotation only partly:
  # far above chance (1/11), unlike the motion variant.
  assert linear_probe_accuracy(single_frame_features, train, test) > 0.3


def test_deterministic_by_index_and_ground_truth(motion):
  train, _ = motion
  again = synthetic.render([7, 3], **KW)
  np.testing.assert_array_equal(again.videos, train.videos[[7, 3]])
  np.testing.assert_array_equal(again.labels, train.labels[[7, 3]])
  assert train.videos.shape == (2000, 8, 32, 32, 3) and train.videos.dtype == np.uint8
  assert train.masks.shape == (2000, 8, 32, 32) and train.centers.shape == (2000, 8, 2)
  assert np.bincount(train.labels).min() > 100  # All classes present.
  assert train.masks[:200].any((2, 3)).all()  # The object is visible in every frame.
  # Every mask pixel lies within the largest radius of its centre (torus distance).
  rows, cols = np.meshgrid(np.arange(32) + 0.5, np.arange(32) + 0.5, indexing='ij')
  for n in range(20):
    for t in range(8):
      d = np.abs(np.stack([rows, cols]) - train.centers[n, t][:, None, None])
      d = np.minimum(d, 32 - d)
      assert np.hypot(*d)[train.masks[n, t]].max() < 0.3 * 32 * 1.3


def test_moving_classes_move_the_centre_the_right_way(motion):
  train, _ = motion
  step = np.diff(train.centers, axis=1)
  step = (step + 16) % 32 - 16  # Unwrap the torus.
  names = train.class_names
  mean = {c: step[train.labels == names.index(c)].mean((0, 1)) for c in names}
  assert mean['move_right'][1] > 1 and mean['move_left'][1] < -1
  assert mean['move_down'][0] > 1 and mean['move_up'][0] < -1


def test_synthetic_pipelines_resume_and_count_every_video_once():
  cfg = config.data_config('synthetic_motion', num_frames=8, sampling_rate=1, crop_size=32)
  cfg.synthetic.num_train, cfg.synthetic.num_test = 40, 30
  assert pipeline.num_examples(cfg, 'train') == 40
  it = pipeline.make_train_iterator(cfg, local_batch_size=8, seed=0, process_index=0,
                                    process_count=1)
  batches = [next(it) for _ in range(7)]  # Crosses the epoch boundary at 40 clips.
  # The rendered uint8 videos as they are (the training step normalises them).
  assert batches[0]['clip'].shape == (8, 8, 32, 32, 3) and batches[0]['clip'].dtype == np.uint8
  resumed = next(pipeline.make_train_iterator(cfg, local_batch_size=8, seed=0, start_step=6,
                                              process_index=0, process_count=1))
  np.testing.assert_array_equal(resumed['clip'], batches[6]['clip'])
  data = synthetic.generate(40, **{**KW, 'with_masks': False})
  rendered = {v.tobytes() for v in data.videos}
  assert all(clip.tobytes() in rendered for b in batches for clip in b['clip'])
  epoch = np.concatenate([b['label'] for b in batches[:5]])
  assert sorted(epoch) == sorted(data.labels)  # One epoch = every clip once.
  seen = []
  for p in (0, 1):
    ev = pipeline.EvalDataset(cfg, local_batch_size=8, process_index=p, process_count=2)
    assert ev.views_per_video == 1 and ev.num_skipped == 0 and ev.num_batches == 2
    seen.append(np.concatenate([b['video_index'][b['mask']] for b in ev]))
  assert sorted(np.concatenate(seen)) == list(range(30))

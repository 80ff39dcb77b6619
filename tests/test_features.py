"""Feature extraction: one pre-logits vector per video, unreadable videos listed, resumable."""
import subprocess
import sys

import jax
import numpy as np
import pytest

import train_fixtures as tf_
from mformer_jax import convert, features
from mformer_jax.data import pipeline, synthetic, video
from mformer_jax.model import init_variables, make_model


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp('features')
  model = make_model(tf_.config().model)
  rng = np.random.default_rng(0)  # Noise: at init the 3D patch kernel is zero (input ignored).
  params = jax.tree.map(lambda x: x + 0.05 * rng.standard_normal(x.shape, np.float32),
                        init_variables(model, jax.random.key(3))['params'])
  convert.save_params(str(root / 'converted'), params, model.cfg)
  clips = synthetic.generate(3, num_frames=8, size=32, split='test').videos
  paths = [str(root / f'clip{i}.mp4') for i in range(3)]
  for path, clip in zip(paths, clips):
    video.write_video(path, clip)
  data = open(paths[0], 'rb').read()
  bad = str(root / 'truncated.mp4')
  with open(bad, 'wb') as f:
    f.write(data[:len(data) // 3])
  return root, paths, bad


def test_features_unreadable_and_resume(setup, tmp_path, monkeypatch):
  root, (a, b, c), bad = setup
  cfg = tf_.config(**{'init.checkpoint': str(root / 'converted')})
  out = str(tmp_path / 'f.npz')
  num, unreadable = features.extract(cfg, str(tmp_path / 'work'), [a, bad, b], out,
                                     per_view=True)
  assert num == 2 and list(unreadable) == [bad]
  with np.load(out) as z:
    assert list(z['paths']) == [a, b] and list(z['unreadable']) == [bad]
    assert z['features'].shape == (2, 32) and z['views'].shape == (2, 1, 32)
    np.testing.assert_array_equal(z['features'], z['views'].mean(1))
    first = z['features']
  # The same numbers as the model's own pre-logits output on the evaluation views.
  model_cfg, params = convert.load_params(str(root / 'converted'))
  _, want = make_model(model_cfg.__dict__).apply(
      {'params': params}, pipeline.load_video_views(b, cfg.data), train=False,
      return_features=True)
  np.testing.assert_allclose(first[1], np.asarray(want)[0], atol=1e-6)
  assert np.abs(first[0] - first[1]).max() > 1e-3  # Different videos, different features.
  # Resuming decodes only what is not in the file yet (the unreadable one is tried again).
  seen = []
  load = pipeline.load_video_views
  monkeypatch.setattr(pipeline, 'load_video_views', lambda p, d: seen.append(p) or load(p, d))
  num, unreadable = features.extract(cfg, str(tmp_path / 'work'), [a, b, c, bad], out,
                                     per_view=True)
  assert num == 3 and seen == [c, bad] and list(unreadable) == [bad]
  with np.load(out) as z:
    np.testing.assert_array_equal(z['features'][:2], first)
  with pytest.raises(ValueError, match='another model or config'):
    features.extract(cfg, str(tmp_path / 'work'), [a], out, per_view=False)


def test_cli(setup, tmp_path):
  root, (a, b, _), bad = setup
  (tmp_path / 'list.txt').write_text(f'{a}\n{bad}\n\n{b}\n')
  cmd = [sys.executable, '-m', 'mformer_jax.features', f'--workdir={tmp_path / "work"}',
         f'--out={tmp_path / "f.npz"}', *tf_.flags(**{'init.checkpoint': str(root / 'converted')})]
  proc = subprocess.run(cmd + [f'--videos={tmp_path / "list.txt"}'], cwd=tf_.ROOT, env=tf_.env(),
                        capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.splitlines()[0] == f'2 videos -> {tmp_path / "f.npz"}; 1 unreadable:'
  assert proc.stdout.splitlines()[1].startswith(f'  unreadable {bad}: ')
  assert 'features: 100%' in proc.stderr  # The progress bar.
  proc = subprocess.run(cmd + ['--videos=missing.txt'], cwd=tf_.ROOT, env=tf_.env(),
                        capture_output=True, text=True, timeout=240)
  assert proc.returncode == 2 and 'Traceback' not in proc.stderr
  assert 'error: no video list, folder or video at missing.txt' in proc.stderr

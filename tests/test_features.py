"""Feature extraction on real footage: one pre-logits vector per video, unreadable videos
listed and skipped, resumable; predict on the same clips."""
import subprocess
import sys

import numpy as np
import pytest

import real_footage
import train_fixtures as tfx
from mformer_jax import errors, weights
from mformer_jax.eval import predict, features
from mformer_jax.data import pipeline
from mformer_jax.model import make_model


@pytest.fixture(scope='module')
def setup(tmp_path_factory, converted_tiny):
  """The config of the converted tiny model, the real clips and a corrupt copy of one."""
  root = tmp_path_factory.mktemp('features')
  clips = [real_footage.clip(n)
           for n in ('bikes.mp4', 'carphone_pristine.mp4', 'carphone_distorted.mp4')]
  corrupt = str(root / 'carphone_corrupt.mp4')
  data = open(clips[1], 'rb').read()
  with open(corrupt, 'wb') as f:  # The header intact, the frames cut off.
    f.write(data[:len(data) // 4])
  return tfx.config(**{'init.checkpoint': converted_tiny}), clips, corrupt


@pytest.mark.slow
def test_features_unreadable_resume_and_predict(setup, tmp_path, monkeypatch):
  cfg, (bikes, carphone, distorted), corrupt = setup
  work, out = str(tmp_path / 'work'), str(tmp_path / 'f.npz')
  num, unreadable = features.extract(cfg, work, [bikes, corrupt, carphone], out, per_view=True)
  assert num == 2 and list(unreadable) == [corrupt]
  with np.load(out) as z:
    assert list(z['paths']) == [bikes, carphone] and list(z['unreadable']) == [corrupt]
    assert z['features'].shape == (2, 32) and z['views'].shape == (2, 1, 32)
    np.testing.assert_array_equal(z['features'], z['views'].mean(1))
    first = z['features']
  # The model's own pre-logits output on the evaluation views of the clip.
  model_cfg, params = weights.load(cfg.init.checkpoint)
  _, want = make_model(model_cfg.__dict__).apply(
      {'params': params}, pipeline.load_video_views(carphone, cfg.data), train=False,
      return_features=True)
  np.testing.assert_allclose(first[1], np.asarray(want)[0], atol=1e-6)
  assert np.abs(first[0] - first[1]).max() > 1e-3  # Different videos, different features.
  # Resuming decodes only what is not in the file yet (the unreadable one is tried again).
  seen = []
  load = pipeline.load_video_views
  monkeypatch.setattr(pipeline, 'load_video_views', lambda p, d: seen.append(p) or load(p, d))
  num, unreadable = features.extract(cfg, work, [bikes, carphone, distorted, corrupt], out,
                                     per_view=True)
  assert num == 3 and seen == [distorted, corrupt] and list(unreadable) == [corrupt]
  with np.load(out) as z:
    np.testing.assert_array_equal(z['features'][:2], first)
    assert np.abs(z['features'][2] - first[1]).max() > 0  # Distorted differs from pristine.
  with pytest.raises(errors.InputError, match='another model or config'):
    features.extract(cfg, work, [bikes], out, per_view=False)
  monkeypatch.undo()
  cfg = cfg.copy_and_resolve_references()
  cfg.video = carphone
  top = predict.predict(cfg, work)['label']
  assert len(top) == 4 and {n for n, _ in top} == set(cfg.data.synthetic.classes.split(','))
  assert abs(sum(p for _, p in top) - 1) < 1e-5
  cfg.video = corrupt
  with pytest.raises(errors.InputError, match=f'cannot read {corrupt}'):
    predict.predict(cfg, work)


@pytest.mark.slow
def test_cli(setup, tmp_path):
  cfg, (bikes, carphone, _), corrupt = setup
  (tmp_path / 'list.txt').write_text(f'{carphone}\n{corrupt}\n\n{bikes}\n')
  cmd = [sys.executable, '-m', 'mformer_jax.features', f'--workdir={tmp_path / "work"}',
         f'--out={tmp_path / "f.npz"}', *tfx.flags(**{'init.checkpoint': cfg.init.checkpoint})]
  proc = subprocess.run(cmd + [f'--videos={tmp_path / "list.txt"}'], cwd=tfx.ROOT, env=tfx.env(),
                        capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.splitlines()[0] == f'2 videos -> {tmp_path / "f.npz"}; 1 unreadable:'
  assert proc.stdout.splitlines()[1].startswith(f'  unreadable {corrupt}: ')
  assert 'features: 100%' in proc.stderr  # The progress bar.
  with np.load(tmp_path / 'f.npz') as z:
    assert list(z['paths']) == [carphone, bikes] and 'views' not in z.files
  proc = subprocess.run(cmd + ['--videos=missing.txt'], cwd=tfx.ROOT, env=tfx.env(),
                        capture_output=True, text=True, timeout=240)
  assert proc.returncode == 2 and 'Traceback' not in proc.stderr
  assert 'error: no video list, folder or video at missing.txt' in proc.stderr


def test_video_list_reads_a_folder_a_list_or_one_video(tmp_path):
  (tmp_path / 'clips' / 'sub').mkdir(parents=True)
  for name in ('b.mp4', 'a.WEBM', 'notes.txt', 'sub/c.mkv'):
    (tmp_path / 'clips' / name).write_bytes(b'')
  folder = tmp_path / 'clips'
  assert features.video_list(str(folder)) == [str(folder / 'a.WEBM'), str(folder / 'b.mp4'),
                                               str(folder / 'sub' / 'c.mkv')]
  listing = tmp_path / 'list.txt'
  listing.write_text('# comment\nclips/b.mp4\n\n/abs/x.mp4\n')
  assert features.video_list(str(listing)) == [str(tmp_path / 'clips' / 'b.mp4'), '/abs/x.mp4']
  assert features.video_list(str(folder / 'b.mp4')) == [str(folder / 'b.mp4')]
  with pytest.raises(features.MissingInputError, match='no video list, folder or video at '):
    features.video_list(str(tmp_path / 'none'))

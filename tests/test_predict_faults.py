"""predict's faults of issue 32: an output that is the input video or a file predict did not
write (refused, before the model runs), the whole video held in memory (only the frames the
views sample are kept; the views are exactly those of the whole video), a query without an
output, a video shorter than a clip (said)."""
import hashlib
import logging
import os
import re
import subprocess

import numpy as np
import pytest
import tensorflow as tf

import real_footage
import train_fixtures as tfx
from benchmarks import predict_memory
from mformer_jax.data import pipeline, transforms, video
from mformer_jax.errors import ConfigError
from mformer_jax.eval import overlay, predict


def _whole_video_views(path, cfg):
  """The reference: every frame decoded and kept, the views cut from the whole stack (what
  load_video_views did before it kept only the sampled frames)."""
  frames, fps = video.read_video(path)
  return transforms.test_views(tf.constant(np.stack(frames)), len(frames), fps, cfg).numpy()


@pytest.mark.parametrize('name,fields', [
    ('bikes.mp4', dict(test_num_clips=10, test_num_crops=3, crop_size=64, sampling_rate=4)),
    ('carphone_pristine.mp4', dict(sampler='segment', num_frames=8, crop_size=48, bgr=True)),
])
def test_views_from_the_sampled_frames_equal_those_of_the_whole_video(name, fields):
  cfg = tfx.config().data.copy_and_resolve_references()
  cfg.update(fields)
  path = real_footage.clip(name)
  np.testing.assert_array_equal(pipeline.load_video_views(path, cfg),
                                _whole_video_views(path, cfg))


def _wanted(n, fps):
  return np.array([[0, 3, n - 1], [3, n // 2, n - 1]])


def _check_read_frames(path, frames):
  indices, kept, n, fps = video.read_frames(path, _wanted)
  assert (n, fps) == (len(frames), 12.0) and indices.tolist() == [0, 3, n // 2, n - 1]
  for i, frame in zip(indices, kept):
    np.testing.assert_array_equal(frame, frames[i])


def test_read_frames_counts_frames_where_the_container_does_not(tmp_path):
  path = str(tmp_path / 'clip.webm')  # WebM states no frame count
  video.write_video(path, predict_memory.frames(20), 12, 'libvpx-vp9')
  assert video.probe(path) == (12.0, 0)
  _check_read_frames(path, video.read_video(path)[0])


@pytest.mark.parametrize('stated', [15, 40])
def test_read_frames_recovers_from_a_wrong_frame_count(tmp_path, monkeypatch, stated):
  path = str(tmp_path / 'clip.mp4')
  video.write_video(path, predict_memory.frames(20), 12)
  frames = video.read_video(path)[0]
  monkeypatch.setattr(video, 'probe', lambda p: (12.0, stated))
  _check_read_frames(path, frames)


def _write(path, frames, comment=''):
  if str(path).endswith('.gif'):
    video.write_gif(path, frames, 4, comment=comment)
  else:
    video.write_video(path, frames, 4, overlay.FORMATS[os.path.splitext(path)[1]],
                      comment=comment)


@pytest.mark.parametrize('ext', ['.mp4', '.webm', '.gif'])
def test_an_output_of_predict_is_recognised(tmp_path, ext):
  ours, other = tmp_path / f'ours{ext}', tmp_path / f'other{ext}'
  _write(ours, np.zeros((3, 16, 16, 3), np.uint8), comment=overlay.MARKER)
  _write(other, np.zeros((3, 16, 16, 3), np.uint8))
  assert (video.comment(ours), video.comment(other)) == (overlay.MARKER, '')
  overlay.check_output(str(ours), 'input.mp4')  # an earlier output: overwritten
  with pytest.raises(ConfigError, match=re.escape(
      f'predict_output={other}: the file exists and is not an output of predict (which carries '
      f"the comment 'mformer_jax predict'); predict overwrites only its own outputs: remove it "
      'or choose another name')):
    overlay.check_output(str(other), 'input.mp4')


def test_the_input_video_is_never_an_output(tmp_path):
  source = tmp_path / 'in.mp4'
  _write(source, np.zeros((3, 16, 16, 3), np.uint8), comment=overlay.MARKER)
  os.symlink(source, tmp_path / 'link.mp4')
  os.mkdir(tmp_path / 'sub')
  for out in (source, tmp_path / 'link.mp4', tmp_path / 'sub' / '..' / 'in.mp4'):
    # Even an earlier output of predict, given as the input, is not overwritten.
    with pytest.raises(ConfigError, match=re.escape(
        f'predict_output={out}: this is the input video ({source}); write the labelled copy to '
        'another file')):
      overlay.check_output(str(out), str(source))
  (tmp_path / 'dir.mp4').mkdir()
  with pytest.raises(ConfigError, match=re.escape(f'{tmp_path / "dir.mp4"}: a folder')):
    overlay.check_output(str(tmp_path / 'dir.mp4'), str(source))


def test_predict_refuses_its_input_as_output_before_the_model_runs(tmp_path):
  # No model anywhere: were the checks not first, 'nothing to evaluate' would come instead.
  clip = str(tmp_path / 'clip.mp4')
  _write(clip, np.zeros((3, 16, 16, 3), np.uint8))
  before = open(clip, 'rb').read()
  cfg = tfx.config(**{'video': clip, 'predict_output': clip})
  with pytest.raises(ConfigError, match='this is the input video'):
    predict.predict(cfg, str(tmp_path / 'work'))
  cfg = tfx.config(**{'video': clip, 'predict_query': '0,16,16'})
  with pytest.raises(ConfigError, match=re.escape(
      'predict_query=0,16,16 draws into the labelled video: give it a file, '
      '--config.predict_output=FILE.mp4')):
    predict.predict(cfg, str(tmp_path / 'work'))
  assert open(clip, 'rb').read() == before


def test_a_video_shorter_than_a_clip_is_said(tmp_path, caplog):
  # 8 frames at rate 4 span 32 frames at 30 fps: from 5 frames, indices 0, 4.4, 8.9, ... cut
  # to the last frame, 4: frames 0 and 4 alone.
  cfg = tfx.config().data
  short, long = str(tmp_path / 'short.mp4'), str(tmp_path / 'long.mp4')
  video.write_video(short, predict_memory.frames(5), 30)
  video.write_video(long, predict_memory.frames(40), 30)
  with caplog.at_level(logging.WARNING):
    views = pipeline.load_video_views(short, cfg)
    assert [r.getMessage() for r in caplog.records] == [
        f'{short}: 5 frames at 30 fps, shorter than a clip samples: 2 distinct frames fill each '
        'clip of 8 (frames repeated)']
    caplog.clear()
    pipeline.load_video_views(long, cfg)
    assert not caplog.records
  np.testing.assert_array_equal(views, _whole_video_views(short, cfg))


def test_labels_drawn_frame_by_frame_equal_those_drawn_on_the_stack():
  frames = np.random.default_rng(0).integers(0, 256, (3, 60, 90, 3), np.uint8)
  lines = ['0.50  move_right', '0.30  move_left']
  paint = overlay.label_painter(60, 90, lines)
  stacked = overlay.draw_labels(frames, lines)
  np.testing.assert_array_equal(np.stack([paint(f) for f in frames]), stacked)
  assert not np.array_equal(stacked, frames) and np.array_equal(stacked[:, :30], frames[:, :30])


def test_an_interrupted_write_keeps_the_earlier_output(tmp_path, monkeypatch):
  clip, out = str(tmp_path / 'clip.mp4'), tmp_path / 'labelled.mp4'
  video.write_video(clip, predict_memory.frames(6), 30)
  cfg = tfx.config(**{'video': clip, 'predict_output': str(out)})
  top = {'label': [('move_up', 0.5)]}
  assert overlay.write_prediction(str(out), cfg, None, None, top) == 6
  earlier = out.read_bytes()
  decode = video.decode

  def cut(path, *args, **kwargs):  # the third frame never comes
    for i, frame in decode(path, *args, **kwargs):
      if i == 2:
        raise KeyboardInterrupt
      yield i, frame

  monkeypatch.setattr(video, 'decode', cut)
  with pytest.raises(KeyboardInterrupt):
    overlay.write_prediction(str(out), cfg, None, None, top)
  assert out.read_bytes() == earlier and sorted(os.listdir(tmp_path)) == ['clip.mp4',
                                                                          'labelled.mp4']


@pytest.mark.slow
def test_predict_overwriting_its_input_is_one_line(converted_tiny, tmp_path):
  clip = str(tmp_path / 'clip.mp4')
  video.write_video(clip, predict_memory.frames(40), 30)
  digest = hashlib.sha256(open(clip, 'rb').read()).hexdigest()
  proc = subprocess.run(
      tfx.main_cmd(str(tmp_path / 'work'), **{'mode': 'predict', 'video': clip,
                                              'predict_output': clip,
                                              'init.checkpoint': converted_tiny}),
      cwd=tfx.ROOT, env=tfx.env(), capture_output=True, text=True, timeout=240)
  assert proc.returncode == 2 and proc.stdout == '', proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert [l for l in proc.stderr.splitlines() if l.startswith('error:')] == [
      f'error: predict_output={clip}: this is the input video ({clip}); write the labelled copy '
      'to another file']
  assert hashlib.sha256(open(clip, 'rb').read()).hexdigest() == digest


@pytest.mark.slow
def test_a_long_video_is_predicted_in_the_memory_of_a_short_one(tmp_path):
  """Each in a fresh process (benchmarks.predict_memory): 600 frames of 640x360 are 396 MB of
  raw frames, which the former predict held about 3.7 times; now the peak may exceed that of a
  30-frame video by a quarter of them at most."""
  short, long = (predict_memory.measure(str(tmp_path), n, 'clips', count_frames=True)
                 for n in (30, 600))
  assert 'error' not in short and 'error' not in long, (short, long)
  assert (short['frames_written'], long['frames_written']) == (30, 600)
  assert long['peak_rss_mb'] - short['peak_rss_mb'] < long['raw_video_mb'] / 4, (short, long)

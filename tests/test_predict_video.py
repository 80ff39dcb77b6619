"""predict's video output on real footage: the top labels drawn on every frame, the attention map
of a query point on the clip the model saw, and one clear line for a truncated file."""
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

import real_footage
import train_fixtures as tfx
from mformer_jax import weights
from mformer_jax.errors import ConfigError
from mformer_jax.eval import predict, overlay
from mformer_jax.data import video
from mformer_jax.model import make_model


def _band_diff(out, ref, band, clear):
  """Mean |out - ref| in the bottom-left band x band corner (inside the three label lines at
  any size) and in the rows above the bottom `clear` rows (far from them)."""
  diff = np.abs(out.astype(np.float32) - ref.astype(np.float32)).mean(-1)
  return float(diff[:, -band:, :band].mean()), float(diff[:, :-clear].mean())


@pytest.mark.slow
def test_predict_writes_labelled_video(converted_tiny, tmp_path):
  carphone = real_footage.clip('carphone_pristine.mp4')
  out = str(tmp_path / 'labelled.mp4')
  cfg = tfx.config(**{'init.checkpoint': converted_tiny, 'video': carphone, 'predict_output': out})
  top = predict.predict(cfg, str(tmp_path / 'work'))
  names = [n for n, _ in top['label']]
  assert sorted(names) == sorted(cfg.data.synthetic.classes.split(','))
  assert abs(sum(p for _, p in top['label']) - 1) < 1e-5
  lines = overlay.label_lines(top)
  assert lines == [f'{p:.2f}  {n}' for n, p in top['label'][:3]]

  got, fps = video.read_video(out)
  want, want_fps = video.read_video(carphone)
  assert len(got) == len(want) == 120 and got[0].shape == want[0].shape == (144, 176, 3)
  assert fps == pytest.approx(want_fps, rel=1e-3)
  # Text and darkening change the label band a lot, the rest only by the re-encoding.
  inside, outside = _band_diff(np.stack(got), np.stack(want), 20, 50)
  assert inside > 40 and outside < 4, (inside, outside)


@pytest.mark.slow
def test_predict_query_overlays_attention(converted_tiny, tmp_path):
  carphone = real_footage.clip('carphone_pristine.mp4')
  out = str(tmp_path / 'attention.mp4')
  cfg = tfx.config(**{'init.checkpoint': converted_tiny, 'video': carphone, 'predict_output': out,
                      'predict_query': '0,20,12'})
  top = predict.predict(cfg, str(tmp_path / 'work'))
  model_cfg, params = weights.load(converted_tiny)
  panels = overlay.attention_panels(make_model(model_cfg.__dict__), params, cfg, '0,20,12')
  assert panels.shape == (4, 256, 256, 3)  # 8 frames / tubelet 2 = 4 slots, 256 px panels.
  got, fps = video.read_video(out)
  assert len(got) == 4 and got[0].shape == (256, 256, 3) and fps == pytest.approx(2)
  inside, outside = _band_diff(np.stack(got), panels, 30, 80)
  assert inside > 40 and outside < 6, (inside, outside)
  assert top['label'][0][1] >= top['label'][-1][1]
  with pytest.raises(ConfigError, match='outside the 32x32 frame'):
    overlay.attention_panels(make_model(model_cfg.__dict__), params, cfg, '0,40,12')


@pytest.mark.slow
def test_predict_truncated_video_is_one_line(converted_tiny, tmp_path):
  data = open(real_footage.clip('carphone_pristine.mp4'), 'rb').read()
  truncated = str(tmp_path / 'carphone_truncated.mp4')
  with open(truncated, 'wb') as f:  # The header intact, the frames cut off.
    f.write(data[:len(data) // 4])
  proc = subprocess.run(
      tfx.main_cmd(str(tmp_path / 'work'),
                   **{'mode': 'predict', 'video': truncated, 'init.checkpoint': converted_tiny}),
      cwd=tfx.ROOT, env=tfx.env(), capture_output=True, text=True, timeout=240)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr and proc.stdout == ''
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and f'cannot read {truncated}' in errors[0], proc.stderr[-2000:]


@pytest.mark.parametrize('name,problem', [
    ('nodir/out.mp4', 'the folder {tmp}/nodir does not exist'),
    ('out.avi', '.avi: not a format predict writes (.mp4, .webm, .gif)')])
def test_predict_output_is_checked_before_the_model_runs(tmp_path, name, problem):
  # No model anywhere: were the check not first, 'nothing to evaluate' would come instead.
  out = tmp_path / name
  cfg = tfx.config(**{'video': real_footage.clip('carphone_pristine.mp4'),
                      'predict_output': str(out)})
  with pytest.raises(ConfigError, match=re.escape(
      f'predict_output={out}: {problem.format(tmp=tmp_path)}')):
    predict.predict(cfg, str(tmp_path / 'work'))


@pytest.mark.slow
def test_predict_answers_before_writing_and_writes_the_attention_clip_as_gif(converted_tiny,
                                                                              tmp_path):
  out = tmp_path / 'attention.gif'
  cfg = tfx.config(**{'init.checkpoint': converted_tiny, 'predict_output': str(out),
                      'video': real_footage.clip('carphone_pristine.mp4'),
                      'predict_query': '0,20,12'})
  seen = []
  top = predict.predict(cfg, str(tmp_path / 'work'), report=lambda r: seen.append(
      (r, out.exists())))
  assert seen == [(top, False)]  # the answer came first, the file after it
  gif = Image.open(out)
  assert (gif.n_frames, gif.size, gif.info['duration'], gif.info['loop']) == (4, (256, 256), 500, 0)
  model_cfg, params = weights.load(converted_tiny)
  panels = overlay.attention_panels(make_model(model_cfg.__dict__), params, cfg, '0,20,12')
  gif.seek(0)
  first = np.asarray(gif.convert('RGB'), np.float32)
  assert np.abs(first - panels[0])[:-80].mean() < 8  # the panel, in GIF's 256 colours

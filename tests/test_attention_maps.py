"""attention_maps.compute against the official code's attention tensors (tests/goldens).

`model_maps_*.npz` hold every softmax the official forward computed (float64 model); ours must
match to 1e-10 whatever the trajectory_impl or block layout. The other attentions and the
Orthoformer, which have no goldens, are checked against the model's own forward and a NumPy
recomputation.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mformer_jax.model import layout
from mformer_jax import weights
from mformer_jax.analysis import attention_maps as figures
from mformer_jax.model import attention_maps

GOLDENS = os.path.join(os.path.dirname(__file__), 'goldens')


def _load(name, **overrides):
  path = os.path.join(GOLDENS, f'model_{name}.npz')
  z = np.load(path)
  model, variables = weights.load_official(path, overrides)
  dtype = model.cfg.param_dtype if model.cfg.dtype != 'bfloat16' else jnp.float32
  clip = jnp.asarray(z['io__input'], dtype).transpose(0, 2, 3, 4, 1)
  return z, model, variables, clip


def _assert_golden(z, maps, names, layers):
  for name in names:
    assert maps[name].shape[0] == len(layers)
    for row, i in enumerate(layers):
      ref = z[f'maps__block{i}_{name}']
      assert maps[name][row].shape == ref.shape and maps[name].dtype == np.float64
      np.testing.assert_allclose(maps[name][row], ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize('impl,scan', [('einsum', False), ('frames', False), ('chunked', False),
                                       ('chunked', True)])
def test_trajectory_goldens(impl, scan):
  with jax.enable_x64(True):
    z, model, variables, clip = _load('maps_trajectory', dtype='float64', trajectory_impl=impl,
                                      scan_blocks=scan)
    assert ('blocks' in variables['params']) == scan
    maps = attention_maps.compute(model, variables, clip)
    assert sorted(maps) == ['space', 'temporal']
    _assert_golden(z, maps, ['space', 'temporal'], [0, 1])
    # One layer only: layer 0 then runs for its output alone.
    last = attention_maps.compute(model, variables, clip, layers=[-1])
    _assert_golden(z, last, ['space', 'temporal'], [1])
    first = attention_maps.compute(model, variables, clip, layers=0)
    _assert_golden(z, first, ['space', 'temporal'], [0])


@pytest.mark.parametrize('scan', [False, True])
def test_joint_goldens(scan):
  with jax.enable_x64(True):
    z, model, variables, clip = _load('maps_joint', dtype='float64', scan_blocks=scan)
    maps = attention_maps.compute(model, variables, clip)
    assert list(maps) == ['joint'] and maps['joint'].shape == (2, 2, 4, 65, 65)
    _assert_golden(z, maps, ['joint'], [0, 1])
    _assert_golden(z, attention_maps.compute(model, variables, clip, layers=[1]), ['joint'], [1])


def test_float32_and_bfloat16_close_to_goldens():
  z, model, variables, clip = _load('maps_trajectory', trajectory_impl='chunked')
  maps = attention_maps.compute(model, variables, clip, layers=[1])
  assert maps['space'].dtype == jnp.float32
  np.testing.assert_allclose(maps['space'][0], z['maps__block1_space'], atol=1e-5)
  z, model, variables, clip = _load('maps_trajectory', dtype='bfloat16')
  maps = attention_maps.compute(model, variables, clip, layers=[0])
  assert maps['space'].dtype == jnp.bfloat16
  np.testing.assert_allclose(maps['space'][0].astype(np.float32), z['maps__block0_space'],
                             atol=0.06)


def test_layer_selection_errors():
  _, model, variables, clip = _load('maps_joint')
  for bad in (2, -3, []):
    with pytest.raises(ValueError, match='out of range: the model has 2 layers'):
      attention_maps.compute(model, variables, clip, layers=bad)
  assert attention_maps.select_layers([1, -1, 0], 2) == [0, 1]
  with pytest.raises(ValueError, match='no per-frame attention'):
    _, model, variables, clip = _load('maps_trajectory', approx='nystrom')
    attention_maps.compute(model, variables, clip)


def _layer_norm(x, scale, bias):
  mean = x.mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-6) * scale + bias


def test_divided_against_numpy():
  """Divided 'time' of block 0 recomputed in NumPy from the golden block input."""
  with jax.enable_x64(True):
    z, model, variables, clip = _load('divided', dtype='float64')
    maps = jax.device_get(attention_maps.compute(model, variables, clip))
  b, heads, f = 2, 4, model.cfg.temporal_slots
  n = f * 16
  assert maps['time'].shape == (2, b, heads, n, 1 + f)
  assert maps['space'].shape == (2, b, heads, n, 1 + 16)
  for name in ('time', 'space'):
    np.testing.assert_allclose(maps[name].sum(-1), 1.0, atol=1e-12)
  p = layout.unstack_blocks(jax.device_get(variables['params']))['blocks_0']  # numpy, float64
  x = _layer_norm(np.asarray(z['inter__block0_in'], np.float64), p['norm3']['scale'],
                  p['norm3']['bias'])
  qkv = x @ p['timeattn']['qkv']['kernel'] + p['timeattn']['qkv']['bias']
  q, k = (qkv[..., i * 64:(i + 1) * 64].reshape(b, 1 + n, heads, 16) for i in range(2))
  q = q * 16 ** -0.5
  for t in (0, 17, n - 1):                       # patch queries: token 1 + t
    same_patch = [0] + [1 + g * 16 + t % 16 for g in range(f)]
    logits = np.einsum('bhd,bkhd->bhk', q[:, 1 + t], k[:, same_patch])
    ref = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(maps['time'][0, :, :, t], ref / ref.sum(-1, keepdims=True),
                               atol=1e-6)


@pytest.mark.parametrize('replay', [False, True])
def test_orthoformer_maps_are_the_models(replay):
  """Orthoformer: the implied per-frame maps with the model's own landmarks, so the temporal
  step they lead to is the one the model's forward sows."""
  z, model, variables, clip = _load('trajectory_orthoformer')
  depth, heads = model.cfg.depth, model.cfg.num_heads
  first = (jnp.stack([jnp.asarray(z[f'rng__randint_call{i}']).reshape(-1) for i in range(depth)])
           if replay else None)
  _, state = model.apply(variables, clip, first_landmarks=first, mutable=['intermediates'])
  maps = attention_maps.compute(model, variables, clip, first_landmarks=first)
  f = model.cfg.temporal_slots
  assert maps['space'].shape[:4] == (depth, 2, heads, maps['space'].shape[3])
  np.testing.assert_allclose(maps['space'].sum(-1), 1.0, atol=1e-5)
  for i in range(depth):
    sown = state['intermediates'][f'blocks_{i}']['attn']['temporal_attn'][0]
    assert sown.shape[-1] == f
    np.testing.assert_allclose(maps['temporal'][i], sown, atol=1e-6)


def test_figure_synthetic_and_video(tmp_path, monkeypatch):
  """The files hold the rendered panels: the PNG strip exactly, the GIF (256 colours) and the
  MP4 (h264) as their lossy codings keep them (close on average)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from mformer_jax.data import synthetic, video  # pylint: disable=g-import-not-at-top
  rendered, render = [], attention_maps.render
  monkeypatch.setattr(attention_maps, 'render',
                      lambda *a, **kw: rendered.append(render(*a, **kw)) or rendered[-1])
  path = os.path.join(GOLDENS, 'model_maps_trajectory.npz')
  png, gif = figures.figure(path, synthetic_seed=0, output=str(tmp_path / 'syn'))
  panels = rendered[-1]
  assert panels.shape == (4, 256, 256, 3)            # one panel per temporal slot
  np.testing.assert_array_equal(np.asarray(Image.open(png)), np.concatenate(list(panels), 1))
  with Image.open(gif) as im:
    assert im.n_frames == 4
    for k in range(4):
      im.seek(k)
      assert np.abs(np.asarray(im.convert('RGB'), np.float32) - panels[k]).mean() < 3
  clip = synthetic.generate(1, num_frames=8, size=32, num_distractors=0).videos[0]
  video.write_video(tmp_path / 'clip.mp4', clip, fps=30)
  png, mp4 = figures.figure(path, video_path=str(tmp_path / 'clip.mp4'), query='2,20,5',
                                   layer=0, head=1, sampling_rate=1, fmt='mp4',
                                   output=str(tmp_path / 'vid'))
  panels = rendered[-1]
  assert png.endswith('attention_layer0_head1_query2-20-5.png')
  np.testing.assert_array_equal(np.asarray(Image.open(png)), np.concatenate(list(panels), 1))
  frames = np.stack(video.read_video(mp4)[0])
  assert frames.shape == panels.shape
  assert np.abs(frames.astype(np.float32) - panels).mean() < 3


@pytest.mark.parametrize('kwargs,message', [
    (dict(video_path='clip.mp4', query='0,1,1'), 'cannot read'),
    (dict(synthetic_seed=0, query='0,32,1'), r'query point \(32.0, 1.0\) outside the 32x32'),
    (dict(synthetic_seed=0, query='8,1,1'), 'query frame 8 outside the clip'),
    (dict(synthetic_seed=0, layer=2), 'out of range: the model has 2 layers'),
    (dict(synthetic_seed=0, head=4), 'head 4 out of range'),
    (dict(synthetic_seed=0, query='1,2'), 'expected FRAME,X,Y')])
def test_figure_bad_input(tmp_path, kwargs, message):
  if 'video_path' in kwargs:
    (tmp_path / 'clip.mp4').write_bytes(b'not a video')
    kwargs = {**kwargs, 'video_path': str(tmp_path / 'clip.mp4')}
  with pytest.raises(ValueError, match=message):  # a ConfigError, InputError or ValueError
    figures.figure(os.path.join(GOLDENS, 'model_maps_trajectory.npz'),
                          output=str(tmp_path), **kwargs)


@pytest.mark.slow
def test_cli_bad_input_is_one_line_and_status_2(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  run = subprocess.run(
      [sys.executable, '-m', 'mformer_jax.analysis.attention_maps',
       f'--checkpoint={os.path.join(GOLDENS, "model_maps_trajectory.npz")}', '--synthetic=0',
       '--query=0,99,1', f'--output={tmp_path}'], capture_output=True, text=True, check=False)
  assert run.returncode == 2, run.stderr
  # 'error:' lines, not any line saying 'error' (TensorFlow's oneDNN notice speaks of round-off
  # errors when orbax imports it).
  lines = [l for l in run.stderr.splitlines() if 'error:' in l or 'Traceback' in l]
  assert lines == ['attention_maps: error: query point (99.0, 1.0) outside the 32x32 frame']


def test_figure_feeds_an_ek_model_bgr_as_the_evaluator(tmp_path, monkeypatch):
  """The Fig. 2 CLI gives an Epic-Kitchens model (trained on BGR) the evaluator's view of a real
  clip, channel order included, and shows that view as RGB."""
  import real_footage  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from mformer_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from mformer_jax.data.config import data_config  # pylint: disable=g-import-not-at-top
  path = os.path.join(GOLDENS, 'model_ek_trajectory.npz')
  footage = real_footage.clip('bikes.mp4')
  seen, shown = [], []
  compute, render = attention_maps.compute, attention_maps.render
  monkeypatch.setattr(attention_maps, 'compute',
                      lambda m, v, clip, **kw: seen.append(np.asarray(clip)) or
                      compute(m, v, clip, **kw))
  monkeypatch.setattr(attention_maps, 'render',
                      lambda frames, *a, **kw: shown.append(frames) or render(frames, *a, **kw))
  png, _ = figures.figure(path, video_path=footage, query='0,10,20', layer=1,
                                 output=str(tmp_path))
  cfg = data_config('kinetics400', num_frames=8, sampling_rate=4, crop_size=32)
  cfg.test_num_clips = cfg.test_num_crops = 1
  cfg.bgr = True
  bgr = pipeline.load_video_views(footage, cfg)
  cfg.bgr = False
  rgb = pipeline.load_video_views(footage, cfg)
  assert not np.array_equal(bgr, rgb)  # real colour: the channel order matters
  np.testing.assert_array_equal(seen[0], bgr)
  # The panels' pixels: the RGB view back in [0, 255] (the official mean and std of 0.5).
  np.testing.assert_array_equal(
      shown[0], np.clip(np.round((rgb[0, ::2] + 1.0) * 127.5), 0, 255).astype(np.uint8))
  assert Image.open(png).size == (4 * 256, 256)

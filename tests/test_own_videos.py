"""Own videos end to end: class folders cut from real footage, prepared by the preparation
tool, fine-tuned from a converted tiny checkpoint with the head reset, evaluated."""
import os

import jax
import numpy as np
import pytest
from flax import traverse_util

import real_footage
import train_fixtures as tfx
from configs import own_videos
from mformer_jax import weights, convert, train
from mformer_jax.data import prepare, video

CLIP_FRAMES = 24
TINY = tfx.ON_CLIPS  # the tiny trainer on this data: 2 classes x 3 training clips


def make_class_folders(root):
  """ROOT/{train,val}/{bikes,carphone}/*.mp4: 3 + 1 short clips per class, cut from the real
  videos (CLIP_FRAMES consecutive frames each, short side 64: even sizes for libx264)."""
  for name, source in (('bikes', 'bikes.mp4'), ('carphone', 'carphone_pristine.mp4')):
    frames, fps = video.read_video(real_footage.clip(source), short_side=64)
    for k, split in enumerate(('train', 'train', 'train', 'val')):
      os.makedirs(root / split / name, exist_ok=True)
      start = k * len(frames) // 4
      video.write_video(root / split / name / f'{name}{k}.mp4',
                        np.stack(frames[start:start + CLIP_FRAMES]), fps)


def converted_checkpoint(root):
  """A 4-class tiny model exported with the official key names, then converted by the CLI, as
  a user does with a released file."""
  model, params = real_footage.tiny_params()
  np.savez(root / 'released.npz', **weights.export_official({'params': params}))
  out = str(root / 'converted')
  assert convert.main(['--input', str(root / 'released.npz'), '--output', out, '--override',
                       'img_size=32,pretrain_img_size=32,num_heads=2,dtype=float32']) == 0
  return out, params


@pytest.mark.slow
def test_own_videos_prepare_finetune_evaluate(tmp_path):
  make_class_folders(tmp_path / 'videos')
  prep = str(tmp_path / 'prepared')
  for folder, split in (('train', 'train'), ('val', 'test')):
    prepare.main(['kinetics', '--videos', str(tmp_path / 'videos' / folder), '--split', split,
                  '--out', prep, '--workers', '1'])
  checkpoint, released = converted_checkpoint(tmp_path)

  config = tfx.override(own_videos.get_config(prep), {**TINY, 'init.checkpoint': checkpoint})
  assert config.model.num_classes == 2 and config.init.reset_head  # From PREP/train.json.
  assert config.data.data_dir == prep and config.data.label_keys == ('label',)
  results = train.train_and_evaluate(config, str(tmp_path / 'work'))
  assert results['num_videos'] == 2 and results['views_per_video'] == 1
  assert results['num_unreadable'] == 0 and results['top1'] in (0.0, 0.5, 1.0)

  params = tfx.final_params(str(tmp_path / 'work'))
  assert params[('head', 'kernel')].shape == (32, 2)  # The new 2-class head.
  # The body started from the checkpoint: 3 small AdamW steps move it far less than the noise
  # that sets it apart from a fresh initialisation.
  body = traverse_util.flatten_dict(jax.device_get(released))
  moved = max(float(np.abs(params[k] - body[k]).max()) for k in body if k[0] != 'head')
  assert moved < 0.01, moved


def test_own_videos_config_checks_classes(tmp_path):
  for split, classes in (('train', ['a', 'b', 'c']), ('test', ['a', 'c'])):
    (tmp_path / f'{split}.json').write_text(f'{{"class_names": {classes!r}}}'.replace("'", '"'))
  with pytest.raises(ValueError, match='give val/ a folder for every class'):
    own_videos.get_config(str(tmp_path))
  os.remove(tmp_path / 'test.json')
  config = own_videos.get_config(f'{tmp_path},motionformer_l')
  assert config.model.num_classes == 3 and config.model.num_frames == 32
  assert config.train.batch_size == 16 and config.train.base_lr == pytest.approx(3.75e-5 / 4)

"""Every released model's config builds, validates, and carries the official recipe."""
import glob
import importlib.util
import os
import subprocess
import sys

import pytest

from mformer_jax import config_lib
from mformer_jax.model import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ('motionformer', 'motionformer_l', 'motionformer_hr', 'joint', 'divided')


def _load(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'configs', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


# (frames, rate, crop) per dataset and variant: spec section 1.8 (K400 HR is 16x8, others 16x4).
EXPECTED = {
    ('k400', 'motionformer_hr'): (16, 8, 336), ('k600', 'motionformer_hr'): (16, 4, 336),
    ('ssv2', 'motionformer_hr'): (16, 4, 336), ('ek', 'motionformer_hr'): (16, 4, 336)}


def _name(dataset, variant):
  frames, rate, crop = EXPECTED.get((dataset, variant), (32, 3, 224) if variant == 'motionformer_l'
                                    else (16, 4, 224))
  arch = 'motionformer' if variant.startswith('motionformer') else variant
  return f'{dataset}_{arch}_{crop}_{frames}x{rate}', frames, rate, crop


@pytest.mark.parametrize('dataset', ['k400', 'k600', 'ssv2', 'ek'])
@pytest.mark.parametrize('variant', VARIANTS)
def test_released_config(dataset, variant):
  name, frames, rate, crop = _name(dataset, variant)
  config = _load('released', name)
  model = ModelConfig.from_config(config.model)       # strict: unknown keys would raise
  assert (model.num_frames, config.data.num_frames) == (frames, frames)
  assert config.data.sampling_rate == rate
  assert (model.img_size, config.data.crop_size) == (crop, crop)
  assert model.attention == {'joint': 'joint', 'divided': 'divided'}.get(variant, 'trajectory')
  assert model.trajectory_values == 'original' and model.drop_path == 0.2
  assert config.train.base_lr == (3.75e-5 if variant in ('motionformer_l', 'motionformer_hr') else 1e-4)
  assert config.train.weight_decay == 0.05 and config.train.label_smoothing == 0.2
  if dataset == 'ek':
    assert model.epic_kitchens and config.data.bgr
    assert tuple(config.train.lr_boundaries) == (30, 40) and config.train.num_epochs == 50
  else:
    assert model.num_classes == {'k400': 400, 'k600': 600, 'ssv2': 174}[dataset]
    assert tuple(config.train.lr_boundaries) == (20, 30) and config.train.num_epochs == 35
  assert config.data.random_flip == (dataset != 'ssv2')
  assert config.data.test_num_clips == (1 if dataset == 'ssv2' else 10)
  assert bool(config.data.rand_augment) == (dataset == 'ek' or (dataset == 'ssv2' and variant != 'joint'))
  assert config.data.random_resized_crop == (dataset == 'k400' and variant == 'motionformer_l')
  if variant == 'motionformer_hr':
    assert tuple(config.data.train_jitter_scales) == (384, 480)


def test_k400_base_is_mformer_b():
  config = _load('k400_base')
  assert config.to_dict() == _load('released', 'k400_motionformer_224_16x4').to_dict()


@pytest.mark.parametrize('name,match', [('k400_motionformer_224_16x8', 'recipe for this model is 16x4'),
                                        ('k400_motionformerxl_224_16x4', 'unknown released model')])
def test_bad_names_are_errors(name, match):
  with pytest.raises(ValueError, match=match):
    _load('released', name)


def _every_config():
  """(file, arg) of every config in configs/: each file's default, and every named variant."""
  names = [_name(d, v)[0] for d in ('k400', 'k600', 'ssv2', 'ek') for v in VARIANTS]
  return ([(os.path.basename(p)[:-3], None) for p in sorted(glob.glob(os.path.join(ROOT, 'configs',
                                                                                  '*.py')))]
          + [('released', n) for n in names]
          + [('single_frame', d) for d in ('k400', 'k600', 'ssv2', 'synthetic')]
          + [('motion_twins', a) for a in ('frames=1', 'attention=joint', 'attention=divided')])


@pytest.mark.parametrize('name,arg', _every_config())
def test_every_config_passes_finalize_unchanged(name, arg):
  config = _load(name, arg)
  before = config.to_dict()
  assert config_lib.finalize(config) is config
  assert config.to_dict() == before


@pytest.mark.parametrize('override,message', [
    ({'data.crop_size': 16}, 'config.data.crop_size=16 but config.model.img_size=32'),
    ({'model.img_size': 64}, 'config.data.crop_size=32 but config.model.img_size=64'),
    ({'data.num_frames': 4}, 'config.data.num_frames=4 but config.model.num_frames=8'),
    ({'data.single_frame': True},
     r'config.data.single_frame=True \(clips of 1 frame\) but config.model.num_frames=8')])
def test_finalize_refuses_a_clip_geometry_mismatch(override, message):
  config = _load('demo')
  for key, value in override.items():
    section, field = key.split('.')
    config[section][field] = value
  with pytest.raises(config_lib.ConfigError, match=f"^{message}: the pipeline's clips"):
    config_lib.finalize(config)


def test_finalize_derives_label_keys_from_the_model_heads():
  config = _load('demo')
  config.model.epic_kitchens = True
  assert config_lib.finalize(config).data.label_keys == ('verb', 'noun')
  config.model.epic_kitchens = False
  config.data.label_keys = ('verb', 'noun')
  assert config_lib.finalize(config).data.label_keys == ('label',)


def test_a_mismatch_through_main_is_one_line_and_status_2(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'mformer_jax.main', '--config=configs/demo.py',
                         f'--workdir={tmp_path}', '--config.data.crop_size=16'], cwd=ROOT,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT),
                        capture_output=True, text=True, timeout=180)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert errors == ['error: config.data.crop_size=16 but config.model.img_size=32: the '
                    "pipeline's clips are the model's input, so both must agree"], proc.stderr
  assert not os.listdir(tmp_path)  # refused before anything ran

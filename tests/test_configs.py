"""Every released model's config builds, validates, and carries the official recipe."""
import glob
import importlib.util
import os
import subprocess
import sys

import pytest

from mformer_jax import config_lib
from mformer_jax.data import config as data_config_lib
from mformer_jax.model import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ('motionformer', 'motionformer_l', 'motionformer_hr', 'joint', 'divided')


def _load(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'configs', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


# (frames, rate, crop) per dataset and variant: the official repository's configs/ (K400 HR is 16x8, others 16x4).
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
  # The official configs' TRAIN_JITTER_SCALES, derived from the crop (finalize writes them in).
  assert data_config_lib.train_jitter_scales(config.data) == (
      (384, 480) if variant == 'motionformer_hr' else (256, 320))


def test_k400_base_is_built_by_released(monkeypatch):
  from configs import released  # pylint: disable=g-import-not-at-top
  build, names = released.get_config, []
  monkeypatch.setattr(released, 'get_config', lambda arg='': names.append(arg) or build(arg))
  config = _load('k400_base')
  assert names == ['k400_motionformer_224_16x4']
  assert config.to_dict() == build('k400_motionformer_224_16x4').to_dict()


@pytest.mark.parametrize('name,arg,field,value', [
    ('released', '', 'experiment', 'kinetics400_motionformer'),
    ('released', 'ssv2_joint_224_16x4', 'experiment', 'ssv2_joint'),
    ('released', 'name=ek_divided_224_16x4', 'experiment', 'epic_kitchens_divided'),
    ('single_frame', 'ssv2', 'data.name', 'ssv2'),
    ('lra_listops', '', 'experiment', 'lra_listops_orthoformer'),
    ('lra_listops', 'nystrom,cpu', 'experiment', 'lra_listops_nystrom_cpu'),
    ('lra_listops', 'preset=lra,attention=exact', 'experiment', 'lra_listops_exact_lra'),
    ('own_videos', '/data/prep', 'data.data_dir', '/data/prep'),
    ('own_videos', '/data/run=1,motionformer_l', 'data.data_dir', '/data/run=1'),
    ('own_videos', ',motionformer_l', 'experiment', 'own_videos_motionformer_l'),
    ('own_videos', 'variant=joint', 'model.attention', 'joint'),
    ('motion_twins', 'frames=1,seed=3', 'seed', 3),
    ('motion_twins', 'speed=2,attention=divided', 'experiment', 'twin_motion_divided_f8_x2')])
def test_one_argument_convention(name, arg, field, value):
  node = _load(name, arg)
  for key in field.split('.'):
    node = node[key]
  assert node == value


@pytest.mark.parametrize('name,arg,message', [
    ('demo', 'x', "^demo.py:x: too many values; demo.py takes no argument$"),
    ('k400_base', 'steps=2', "^k400_base.py:steps=2: unknown option 'steps'; k400_base.py takes "
     "no argument$"),
    ('released', 'a,b', r"^released.py:a,b: too many values; released.py takes name \(or "
     r"name=value\) with names \['name'\]$"),
    ('single_frame', 'dataset=ssv2,k400', "^single_frame.py:dataset=ssv2,k400: repeated option "
     "'dataset'"),
    ('motion_twins', 'joint', '^motion_twins.py:joint: too many values; motion_twins.py takes '
     'name=value with names'),
    ('motion_twins', 'frames=one', "^motion_twins.py:frames=one: frames='one' is not a int"),
    ('lra_listops', 'exact,gpu', '^lra_listops.py:exact,gpu: expected one of exact, '),
    ('own_videos', 'PREP,motionformer_xl', "^variant 'motionformer_xl'; expected one of")])
def test_bad_config_arguments_are_config_errors(name, arg, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    _load(name, arg)


def test_parse_arg_types():
  defaults = {'on': False, 'rate': 1.0, 'n': 2, 'name': 'a'}
  assert config_lib.parse_arg('on=True,rate=3,n=4,name=b', defaults) == dict(
      on=True, rate=3.0, n=4, name='b')
  assert config_lib.parse_arg('on=0', {**defaults, 'on': True}) == {**defaults, 'on': False}
  with pytest.raises(config_lib.ConfigError, match="on='yes' is not a bool"):
    config_lib.parse_arg('on=yes', defaults)


@pytest.mark.filterwarnings('ignore:the load_module:DeprecationWarning')  # ml_collections' loader
def test_config_flags_pass_the_argument_after_the_colon():
  """The documented command form: ml_collections loads the file by path and hands it ARG."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=values)
  values(['prog', f'--config={ROOT}/configs/lra_listops.py:nystrom,cpu'])
  assert values.config.experiment == 'lra_listops_nystrom_cpu'
  assert values.config.model.num_landmarks == 32


@pytest.mark.parametrize('name,match', [('k400_motionformer_224_16x8', 'recipe for this model is 16x4'),
                                        ('k400_motionformerxl_224_16x4', 'unknown released model')])
def test_bad_names_are_errors(name, match):
  with pytest.raises(config_lib.ConfigError, match=match):
    _load('released', name)


def _every_config():
  """(file, arg) of every config in configs/: each file's default, and every named variant."""
  names = [_name(d, v)[0] for d in ('k400', 'k600', 'ssv2', 'ek') for v in VARIANTS]
  files = sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py')))
  return ([(os.path.basename(p)[:-3], None) for p in files if not p.endswith('__init__.py')]
          + [('released', n) for n in names]
          + [('single_frame', d) for d in ('k400', 'k600', 'ssv2', 'synthetic')]
          + [('motion_twins', a) for a in ('frames=1', 'attention=joint', 'attention=divided')])


@pytest.mark.parametrize('name,arg', _every_config())
def test_every_config_passes_finalize_unchanged(name, arg):
  """... but for data.train_jitter_scales left () to be derived from the crop."""
  config = _load(name, arg)
  before = config.to_dict()
  if before.get('data', {}).get('train_jitter_scales') == ():
    before['data']['train_jitter_scales'] = data_config_lib.train_jitter_scales(config.data)
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


@pytest.mark.slow
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

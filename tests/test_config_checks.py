"""Config values no run can mean are refused by config_lib.finalize in one line naming the field
(issue 32.4): a negative learning rate, a zero batch or save interval, a tuple flag given twice,
a model override that is not of its field's type."""
import re
import sys

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

import train_fixtures as tfx
from mformer_jax import config_lib
from mformer_jax.errors import ConfigError

# ml_collections loads config files with the deprecated load_module.
pytestmark = pytest.mark.filterwarnings('ignore:the load_module:DeprecationWarning')


@pytest.mark.parametrize('field,value,message', [
    ('train.base_lr', -1e-3, 'config.train.base_lr=-0.001: expected >= 0'),
    ('train.batch_size', 0, 'config.train.batch_size=0: expected > 0'),
    ('checkpoint.every_steps', 0, 'config.checkpoint.every_steps=0: expected > 0'),
    ('train.label_smoothing', 1.0, 'config.train.label_smoothing=1.0: expected in [0, 1)'),
    ('train.max_steps', 0, 'config.train.max_steps=0: expected -1 (no cap) or > 0'),
    ('eval.batch_size', -8, 'config.eval.batch_size=-8: expected > 0'),
    ('eval.step', -2, 'config.eval.step=-2: expected >= -1'),
    ('data.test_num_crops', 2, 'config.data.test_num_crops=2: expected 1 (centre) or 3'),
    ('data.max_bad_fraction', 1.5, 'config.data.max_bad_fraction=1.5: expected in [0, 1]'),
    ('data.segment_span', 0.0, 'config.data.segment_span=0.0: expected in (0, 1]'),
    ('model.depth', 0, 'config.model.depth=0: expected > 0'),
    ('model.drop_path', -0.1, 'config.model.drop_path=-0.1: expected in [0, 1)'),
    ('mode', 'evaluate', "config.mode='evaluate': expected one of train, eval, predict"),
    ('model.num_heads', 3, 'config.model.num_heads=3 does not divide config.model.embed_dim=32'),
    ('train.lr_boundaries', (1.5, 1.0),
     'config.train.lr_boundaries=(1.5, 1.0): expected ascending epochs >= 0'),
    ('data.train_jitter_scales', (40, 32),
     'config.data.train_jitter_scales=(40, 32): expected () (derived from the crop) or two '
     'short sides 0 < lo <= hi'),
])
def test_finalize_refuses_a_meaningless_value(field, value, message):
  config = tfx.config(**{field: value})
  with pytest.raises(ConfigError, match=re.escape(message)):
    config_lib.finalize(config)


def _numeric_fields(node, prefix=''):
  for key, value in node.items():
    if hasattr(value, 'items'):
      yield from _numeric_fields(value, f'{prefix}{key}.')
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      yield prefix + key


def test_every_numeric_field_has_a_rule_but_the_seeds():
  fields = set(_numeric_fields(config_lib.make_config('epic_kitchens')))
  assert fields - set(config_lib.VALUE_RULES) == {'seed', 'data.synthetic.seed'}
  assert set(config_lib.VALUE_RULES) - fields == set()


def test_the_limits_themselves_pass():
  config = tfx.config(**{'train.base_lr': 0.0, 'train.max_steps': -1, 'eval.step': -1,
                         'checkpoint.keep_best': 0, 'train.lr_boundaries': (1.0, 1.0),
                         'data.max_bad_fraction': 1.0, 'model.drop_path': 0.0})
  assert config_lib.finalize(config) is config


def test_a_value_of_the_wrong_type_is_named():
  # ConfigDict refuses most of these on assignment; a config file building its own dicts can
  # still hold one, and 8.0 frames or True as a batch mean nothing either.
  for field, value, kind in (('batch_size', 8.0, 'an integer > 0'),
                             ('batch_size', True, 'an integer > 0'),
                             ('base_lr', '1e-3', 'a number >= 0')):
    config = ml_collections.ConfigDict({'train': {field: value}})
    with pytest.raises(ConfigError, match=re.escape(f'config.train.{field}={value!r}: '
                                                    f'expected {kind}')):
      config_lib.check_values(config)


def _parse(argv):
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'test', flag_values=values, lock_config=True,
                                  sys_argv=argv)  # it reads the overrides from argv
  values(argv)
  return values


def test_a_tuple_flag_given_twice_is_refused():
  argv = ['prog', '--config=configs/demo.py', '--config.train.lr_boundaries=(13,15)',
          '--config.train.lr_boundaries=(1,2)']
  values = _parse(argv)
  # What absl would run without the check: the two tuples concatenated.
  assert tuple(values.config.train.lr_boundaries) == (13, 15, 1, 2)
  with pytest.raises(ConfigError, match=re.escape(
      '--config.train.lr_boundaries given 2 times (tuple flags would be concatenated); give the '
      "whole tuple once, e.g. --config.train.lr_boundaries='(1, 2)'")):
    config_lib.check_repeated_flags(argv, values)


def test_finalize_checks_the_command_line_it_came_from(monkeypatch):
  """Every command runs finalize: plan, analysis.cost and stride_sweep refuse it too."""
  argv = ['prog', '--config=configs/demo.py', '--config.train.lr_boundaries=(13,15)',
          '--config.train.lr_boundaries=(1,2)']
  values = _parse(argv)
  monkeypatch.setattr(sys, 'argv', argv)
  monkeypatch.setattr(flags, 'FLAGS', values)
  with pytest.raises(ConfigError, match='--config.train.lr_boundaries given 2 times'):
    config_lib.finalize(values.config)


def test_a_tuple_flag_once_and_a_scalar_twice_pass():
  argv = ['prog', '--config=configs/demo.py', '--config.train.lr_boundaries=(1,2)',
          '--config.train.batch_size=4', '--config.train.batch_size=8']
  values = _parse(argv)
  config_lib.check_repeated_flags(argv, values)  # a scalar: the last one wins (absl)
  assert values.config.train.batch_size == 8
  assert tuple(values.config.train.lr_boundaries) == (1, 2)


def test_model_overrides_are_typed_and_checked_by_the_model_fields():
  assert config_lib.model_overrides('num_heads=12,img_size=336,dtype=bfloat16',
                                    file='--override') == {
                                        'num_heads': 12, 'img_size': 336, 'dtype': 'bfloat16'}
  assert config_lib.model_overrides('', file='--override') == {}
  for text, message in (
      ('num_heads=four', "--override:num_heads=four: num_heads='four' is not a int"),
      ('num_heads=0', '--override: num_heads=0: expected > 0'),
      ('drop_path=1.5', '--override: drop_path=1.5: expected in [0, 1)'),
      ('heads=12', "--override:heads=12: unknown option 'heads'")):
    with pytest.raises(ConfigError, match=re.escape(message)):
      config_lib.model_overrides(text, file='--override')

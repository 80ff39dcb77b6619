"""Fixtures shared by several test files, built once per session; the helpers that tests import by
name stay in train_fixtures (tiny trainer configs), data_fixtures (dataset trees), real_footage
(camera clips, a tiny converted model) and torch_files (PyTorch file writers)."""
import collections

import pytest

import real_footage
import train_fixtures as tf_

Run = collections.namedtuple('Run', 'workdir results params')


@pytest.fixture(scope='session')
def trained(tmp_path_factory):
  """A finished run of train_fixtures.config() (8 steps, checkpoints 4 and 8): its workdir, its
  results and its final parameters (flat). Shared: a test that damages it works on a copy."""
  from mformer_jax import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('trained')
  results = train.train_and_evaluate(tf_.config(), str(workdir))
  return Run(workdir, results, tf_.final_params(workdir))


@pytest.fixture(scope='session')
def converted_tiny(tmp_path_factory):
  """real_footage.tiny_params() as a `python -m mformer_jax.convert` folder; its path."""
  return real_footage.converted_tiny(tmp_path_factory.mktemp('tiny') / 'converted')

"""Fixtures shared by several test files, built once per session; the helpers that tests import by
name stay in train_fixtures (tiny trainer configs), data_fixtures (dataset trees), real_footage
(camera clips, a tiny converted model) and torch_files (PyTorch file writers). Below them, the
fast tier's time budget."""
import collections
import re
import time

import pytest

import real_footage
import train_fixtures as tfx

Run = collections.namedtuple('Run', 'workdir results params')


@pytest.fixture(scope='session')
def trained(tmp_path_factory):
  """A finished run of train_fixtures.config() (8 steps, checkpoints 4 and 8): its workdir, its
  results and its final parameters (flat). Shared: a test that damages it works on a copy."""
  from mformer_jax import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('trained')
  results = train.train_and_evaluate(tfx.config(), str(workdir))
  return Run(workdir, results, tfx.final_params(workdir))


@pytest.fixture(scope='session')
def converted_tiny(tmp_path_factory):
  """real_footage.tiny_params() as a `python -m mformer_jax.convert` folder; its path."""
  return real_footage.converted_tiny(tmp_path_factory.mktemp('tiny') / 'converted')


# ---- The fast tier's time budget ------------------------------------------------------------
# When the fast tier runs (`-m "not slow"`), a test whose call phase passes the budget on both
# clocks, wall time and this process's CPU time (all threads), fails: it belongs in the slow tier
# (slow by kind: pyproject.toml's marker) or must get faster. Both clocks, because a busy machine
# stretches wall time but not CPU time, and XLA's threads stretch CPU time but not wall time: a
# test over both did that much work itself. 15 s is five times what a fast test should take
# (< ~3 s; the whole tier < 5 min on 2 cores), so a test near the line does not flake on a shared
# 2-core machine, while one that compiles a full-size model (tens of seconds) is caught.
# Fixtures (setup) are not counted: a session fixture is paid once, by whichever test comes first.
# `-o fast_budget_s=30` on a much slower CPU; 0 turns the check off.
_CPU_S = pytest.StashKey[float]()  # the call phase's CPU seconds


def pytest_addoption(parser):
  parser.addini('fast_budget_s', 'seconds (wall and CPU) a test may take in the fast tier',
                default='15')


def _budget(item) -> float:
  """The budget that applies to `item`, 0 where none does."""
  if item.get_closest_marker('slow') or not re.search(r'\bnot\s+slow\b',
                                                       item.config.option.markexpr or ''):
    return 0.0
  return float(item.config.getini('fast_budget_s'))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
  cpu = time.process_time()
  try:
    return (yield)
  finally:
    item.stash[_CPU_S] = time.process_time() - cpu


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
  report = yield
  budget = _budget(item) if call.when == 'call' and report.passed else 0.0
  cpu = item.stash.get(_CPU_S, 0.0)
  if budget > 0 and min(call.duration, cpu) > budget:
    report.outcome = 'failed'
    report.longrepr = (
        f'{item.nodeid} took {call.duration:.1f} s (wall), {cpu:.1f} s (CPU) in the fast tier, '
        f'over its budget of {budget:g} s (fast_budget_s, tests/conftest.py): mark it '
        '@pytest.mark.slow if it is slow by kind (subprocess, end-to-end, multi-device, '
        'notebook, a full-size model), else make it faster (smaller shapes, fewer steps)')
  return report

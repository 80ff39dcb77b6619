"""The fast tier's time budget (tests/conftest.py): a test not marked slow that passes the budget
on both clocks fails in the fast tier, with the message that says what to do; nothing else does."""
import pytest

import conftest

pytest_plugins = ['pytester']

TESTS = '''
import time
import pytest

def busy(seconds):  # CPU work: both clocks advance
  start = time.process_time()
  while time.process_time() - start < seconds:
    pass

def test_busy():
  busy(0.3)

@pytest.mark.slow
def test_busy_but_slow():
  busy(0.3)

def test_waits():  # wall time alone (a busy machine, a sleep): not the test's own work
  time.sleep(0.3)

def test_quick():
  pass
'''


@pytest.fixture
def suite(pytester):
  pytester.makeini('[pytest]\nfast_budget_s = 0.1\nmarkers =\n  slow: slow by kind\n')
  pytester.makepyfile(test_suite=TESTS)
  return lambda *args: pytester.inline_run('-p', 'no:cacheprovider', *args, plugins=[conftest])


def _outcomes(run):
  return {r.nodeid.split('::')[-1]: r.outcome for r in run.getreports('pytest_runtest_logreport')
          if r.when == 'call'}


def test_over_budget_fails_in_the_fast_tier(suite):
  run = suite('-m', 'not slow')
  assert _outcomes(run) == {'test_busy': 'failed', 'test_waits': 'passed', 'test_quick': 'passed'}
  (failed,) = run.getfailures()
  assert 'over its budget of 0.1 s (fast_budget_s' in str(failed.longrepr)
  assert 'mark it @pytest.mark.slow' in str(failed.longrepr)


def test_no_budget_outside_the_fast_tier(suite):
  assert set(_outcomes(suite()).values()) == {'passed'}
  assert set(_outcomes(suite('-m', 'slow')).values()) == {'passed'}


def test_budget_zero_turns_it_off(suite):
  assert set(_outcomes(suite('-m', 'not slow', '-o', 'fast_budget_s=0')).values()) == {'passed'}

"""Faults a long run meets, one test (at least) per kind, on the tiny model of train_fixtures:

environment faults (unknown config key, read-only workdir, a path through a file, gs:// without
credentials) -> one `error:` line, exit status 2; a second trainer on a workdir -> refused while
the first lives, taken over when it is gone.
"""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

import train_fixtures as tf_
from mformer_jax import workdir as workdir_lib


# ----------------------------------------------------------------------------------------------
# Environment faults: one `error:` line, exit status 2
# ----------------------------------------------------------------------------------------------
def _one_error_line(proc, *fragments):
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1, proc.stderr[-3000:]
  for f in fragments:
    assert f in errors[0], errors[0]
  return errors[0]


@pytest.mark.parametrize('flag,key', [('--config.no_such_key=1', 'config.no_such_key'),
                                      ('--config.train.no_such=1', 'config.train.no_such'),
                                      ('--config.train.batchsize=4', 'batch_size')])
def test_an_unknown_config_key_at_any_depth_is_one_line(tmp_path, flag, key):
  proc = subprocess.run([sys.executable, '-m', 'mformer_jax.main', '--config=configs/demo.py',
                         f'--workdir={tmp_path}', flag], cwd=tf_.ROOT, env=tf_.env(),
                        capture_output=True, text=True, timeout=120)
  _one_error_line(proc, key, 'no such key')
  assert not os.listdir(tmp_path)  # refused before anything ran


def test_a_workdir_through_a_file_is_one_line_before_compiling(tmp_path):
  (tmp_path / 'afile').write_text('')
  proc = tf_.run_main(tmp_path / 'afile' / 'w')
  _one_error_line(proc, f'{tmp_path / "afile"} is a file, not a directory')
  assert 'Parameters' not in proc.stderr  # nothing was built


def _mount_namespace_or_skip():
  """A private mount namespace (unshare), where a tmpfs can be full or read-only."""
  if shutil.which('unshare') is None or subprocess.run(
      ['unshare', '--user', '--map-root-user', '--mount', 'true'], capture_output=True).returncode:
    pytest.skip('needs unshare with user and mount namespaces (util-linux)')
  return ['unshare', '--user', '--map-root-user', '--mount']


def _in_tmpfs(mount, options, *commands, timeout=400):
  """Runs shell `commands` in a new mount namespace with a tmpfs on `mount`."""
  script = f'mount -t tmpfs -o {options} tmpfs {mount} && ' + ' && '.join(commands)
  return subprocess.run(_mount_namespace_or_skip() + ['bash', '-c', script], cwd=tf_.ROOT,
                        env=tf_.env(), capture_output=True, text=True, timeout=timeout)


def _shell(cmd):
  return ' '.join("'" + a.replace("'", "'\\''") + "'" for a in cmd)


def test_a_read_only_workdir_is_one_line(tmp_path):
  mount = tmp_path / 'ro'
  mount.mkdir()
  proc = _in_tmpfs(mount, 'ro,size=1m', _shell(tf_.main_cmd(mount / 'w')))
  _one_error_line(proc, f'{mount / "w"}', 'not writable (Read-only file system)')


def test_a_gs_workdir_without_credentials_is_one_line(tmp_path):
  proc = tf_.run_main('gs://mformer-jax-no-such-bucket-for-tests/w', timeout=180)
  _one_error_line(proc, 'gs://mformer-jax-no-such-bucket-for-tests/w', 'credentials')


# ----------------------------------------------------------------------------------------------
# Two trainers on one workdir
# ----------------------------------------------------------------------------------------------
_HOLD = """
import sys, time
from mformer_jax import workdir
lock = workdir.Lock(sys.argv[1])
print('locked', flush=True)
time.sleep(600)
"""


def test_a_second_trainer_is_refused_while_the_first_lives_and_takes_over_after(tmp_path):
  holder = subprocess.Popen([sys.executable, '-c', _HOLD, str(tmp_path)], cwd=tf_.ROOT,
                            env=tf_.env(), stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    owner = json.loads((tmp_path / workdir_lib.LOCK_NAME).read_text())
    assert owner['pid'] == holder.pid
    proc = tf_.run_main(tmp_path)
    _one_error_line(proc, f'{tmp_path} is in use by another trainer', f'pid {holder.pid}')
    assert not (tmp_path / 'checkpoints').exists()
    with pytest.raises(workdir_lib.WorkdirError, match=f'pid {holder.pid}'):
      workdir_lib.Lock(tmp_path)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  lock = workdir_lib.Lock(tmp_path)  # the owner is gone: taken over at once
  assert json.loads((tmp_path / workdir_lib.LOCK_NAME).read_text())['pid'] == os.getpid()
  lock.release()
  assert (tmp_path / workdir_lib.LOCK_NAME).read_text() == ''

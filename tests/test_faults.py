"""Faults a long run meets, one test (at least) per kind, on the tiny model of train_fixtures:

corrupt checkpoints (truncated orbax metadata, flipped bytes, truncated data, wrong checksum,
non-finite values) -> fallback to the newest good step, or strict stop; environment faults
(unknown config key, read-only workdir, a path through a file, a full disk, gs:// without
credentials) -> one `error:` line, exit status 2; a second trainer on a workdir -> refused while
the first lives, taken over when it is gone; a shard with a record that fails its CRC and one
whose frame does not decode -> skipped, counted and reported, or beyond the budget one line,
never a hang. (SIGTERM/SIGINT: tests/test_train.py; the pipeline's substitution and resume:
tests/test_data_pipeline.py.)
"""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import logging as absl_logging
from flax import traverse_util

import data_fixtures as fx
import train_fixtures as tfx
from mformer_jax import errors, train, weights
from mformer_jax.eval import evaluator
from mformer_jax.run import checkpoints, workdir as workdir_lib
from mformer_jax.data import layouts, prepare


def _copy(trained, tmp_path):
  """A copy of the trained workdir without its evaluation reports."""
  copy = tmp_path / 'copy'
  shutil.copytree(trained[0], copy)
  shutil.rmtree(copy / 'eval')
  return copy


def _data_file(step_dir):
  """The largest array data file of a step's parameters."""
  files = [p for p in (step_dir / 'params').rglob('*') if p.is_file() and p.parent.name == 'd']
  return max(files, key=lambda p: p.stat().st_size)


def _flip_bytes(step_dir):
  f = _data_file(step_dir)
  data = bytearray(f.read_bytes())
  for i in range(len(data) // 2, len(data) // 2 + 64):
    data[i] ^= 0xFF
  f.write_bytes(bytes(data))


def _truncate(f):
  data = f.read_bytes()
  f.write_bytes(data[:len(data) // 2])


CORRUPTIONS = {
    'truncated_metadata': lambda step: _truncate(step / 'params' / '_METADATA'),  # JSONDecodeError
    'flipped_bytes': _flip_bytes,       # silently different (NaN) weights without checksums
    'truncated_data': lambda step: _truncate(_data_file(step)),  # OUT_OF_RANGE, 300+ lines
    'garbled_meta': lambda step: (step / 'meta' / 'metadata').write_text('{"step": 8, "arr'),
}


def _process_hooks():
  return (sys.excepthook, sys.unraisablehook, list(logging.getLogger('asyncio').filters),
          list(absl_logging.get_absl_logger().filters))


@pytest.fixture
def quiet_orbax(monkeypatch):
  """checkpoints.quiet_orbax(), as a command calls it at its start; undone after the test."""
  for name in ('excepthook', 'unraisablehook'):
    monkeypatch.setattr(sys, name, getattr(sys, name))
  for log in (logging.getLogger('asyncio'), absl_logging.get_absl_logger()):
    monkeypatch.setattr(log, 'filters', list(log.filters))
  checkpoints.quiet_orbax()


@pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')  # orbax's spew
@pytest.mark.parametrize('kind', sorted(CORRUPTIONS))
def test_a_corrupt_latest_checkpoint_falls_back_to_the_newest_good_one(trained, tmp_path, kind,
                                                                       capfd, caplog, quiet_orbax):
  copy = _copy(trained, tmp_path)
  CORRUPTIONS[kind](copy / 'checkpoints' / '8')
  _, params = weights.load(str(copy))
  jax.tree.map(np.testing.assert_array_equal, params, weights.load(str(copy), step=4)[1])
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
  broken = [r.getMessage() for r in caplog.records
            if r.levelname == 'ERROR' and r.pathname.endswith('checkpoints.py')]
  assert len(broken) == 1 and 'checkpoint step 8' in broken[0], broken
  assert any('using checkpoint step 4' in r.getMessage() and 'step(s) 8 are broken'
             in r.getMessage() for r in caplog.records)
  assert 'Event loop is closed' not in capfd.readouterr().err  # orbax's abandoned reads, muted
  # The strict-minded stop, naming what is readable; nothing was moved or deleted.
  with pytest.raises(errors.CorruptCheckpointError,
                     match='checkpoint step 8 .*strict_restore=True.*readable steps: 4$'):
    weights.load(str(copy), strict=True)
  assert sorted(os.listdir(copy / 'checkpoints')) == ['4', '8']


def test_a_manager_leaves_the_process_hooks_alone(tmp_path, monkeypatch):
  """Process-wide hooks and log filters are the commands' to install (quiet_orbax), not a
  library call's."""
  before = _process_hooks()
  with checkpoints.manager(str(tmp_path), tfx.config().checkpoint) as mngr:
    checkpoints.save(mngr, {'params': {'w': jnp.zeros(2)}}, {'step': 1})
    checkpoints.finish(mngr)
  with checkpoints.manager(str(tmp_path), read_only=True) as mngr:
    checkpoints.read_meta(mngr, 1)
  assert _process_hooks() == before
  # What quiet_orbax installs, from a process without it (the hooks as Python sets them).
  monkeypatch.setattr(sys, 'excepthook', sys.__excepthook__)
  monkeypatch.setattr(sys, 'unraisablehook', sys.__unraisablehook__)
  for log in (logging.getLogger('asyncio'), absl_logging.get_absl_logger()):
    monkeypatch.setattr(log, 'filters', [f for f in log.filters if not getattr(
        f, 'mformer_abandoned', False) and f is not checkpoints._orbax_log])
  fresh = _process_hooks()
  checkpoints.quiet_orbax()
  installed = _process_hooks()
  assert installed[0] is not fresh[0] and installed[1] is not fresh[1]
  assert [len(f) for f in installed[2:]] == [len(f) + 1 for f in fresh[2:]]
  checkpoints.quiet_orbax()  # a second call adds nothing
  assert _process_hooks() == installed


@pytest.mark.slow
def test_flipped_bytes_never_reach_an_eval_report_and_resume_is_exact(trained, tmp_path):
  """The row that was silent: eval reported 23 % from NaN weights, resuming blamed the lr."""
  copy = _copy(trained, tmp_path)
  _flip_bytes(copy / 'checkpoints' / '8')
  results = evaluator.evaluate_checkpoint(tfx.config(mode='eval'), str(copy))
  assert results['report_dir'].endswith('step_4')
  assert os.listdir(copy / 'eval') == ['step_4']  # nothing written from the failed step 8
  # Resuming: from step 4, the broken step 8 kept aside (not deleted, not "best"), and the run
  # ends bitwise where the uninterrupted one did.
  again = train.train_and_evaluate(tfx.config(), str(copy))
  assert os.listdir(copy / checkpoints.BROKEN) == ['8']
  assert sorted(os.listdir(copy / 'checkpoints')) == ['4', '8']
  final = tfx.final_params(copy)
  assert all(np.array_equal(final[k], trained[2][k]) for k in final)
  assert again['top1'] == trained[1]['top1']


def test_a_wrong_checksum_or_non_finite_values_fail_the_step(tmp_path):
  state = {'params': {'w': jnp.arange(6.0).reshape(2, 3)}, 'step': jnp.ones((), jnp.int32)}
  shard = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), state)
  with checkpoints.manager(str(tmp_path), tfx.config().checkpoint) as mngr:
    checkpoints.save(mngr, state, {'step': 1})
    checkpoints.save(mngr, jax.tree.map(lambda x: x.at[()].set(1) if x.ndim == 0 else
                                          x.at[0, 0].set(jnp.nan), state), {'step': 2})
    mngr.wait_until_finished()
  meta_file = tmp_path / 'checkpoints' / '1' / 'meta' / 'metadata'
  meta = json.loads(meta_file.read_text())
  assert meta['arrays']['params']['w'][:2] == [[2, 3], 'float32']
  meta['arrays']['params']['w'][2] ^= 1  # one bit of the recorded checksum
  meta_file.write_text(json.dumps(meta))
  with checkpoints.manager(str(tmp_path), read_only=True) as mngr:
    with pytest.raises(errors.CorruptCheckpointError,
                       match=r'step 1 .* 1 params array\(s\) fail their checksum \(w\)'):
      checkpoints.restore(mngr, 1, state, shard)
    with pytest.raises(errors.CorruptCheckpointError,
                       match=r'step 2 .*non-finite values in 1 params array\(s\) \(w\)'):
      checkpoints.restore(mngr, 2, state, shard)
    with pytest.raises(errors.CorruptCheckpointError, match='no readable checkpoint'):
      checkpoints.restore_newest(mngr, lambda s: checkpoints.restore(mngr, s, state, shard))


def test_a_checkpoint_of_another_model_is_a_mismatch_not_corruption(trained, tmp_path):
  copy = _copy(trained, tmp_path)
  with pytest.raises(weights.CheckpointMismatchError,
                     match=r'(?s)step 8 in .* \(params\) does not fit the model:\n.*: '
                           r'checkpoint \(32,\) vs model \(64,\)'):
    evaluator.evaluate_checkpoint(tfx.config(**{'mode': 'eval', 'model.embed_dim': 64}), str(copy))
  assert sorted(os.listdir(copy / 'checkpoints')) == ['4', '8']


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


@pytest.mark.slow
@pytest.mark.parametrize('flag,key', [('--config.no_such_key=1', 'config.no_such_key'),
                                      ('--config.train.no_such=1', 'config.train.no_such'),
                                      ('--config.train.batchsize=4', 'batch_size')])
def test_an_unknown_config_key_at_any_depth_is_one_line(tmp_path, flag, key):
  proc = subprocess.run([sys.executable, '-m', 'mformer_jax.main', '--config=configs/demo.py',
                         f'--workdir={tmp_path}', flag], cwd=tfx.ROOT, env=tfx.env(),
                        capture_output=True, text=True, timeout=120)
  _one_error_line(proc, key, 'no such key')
  assert not os.listdir(tmp_path)  # refused before anything ran


def test_workdir_faults_are_input_errors_naming_the_cause(tmp_path):
  """What the entry points print as one `error:` line (the tests below run them): a path through
  a file, a bucket that cannot be reached, a read-only mount."""
  (tmp_path / 'afile').write_text('')
  with pytest.raises(errors.InputError,
                     match=f'{tmp_path / "afile"} is a file, not a directory$'):
    workdir_lib.prepare(tmp_path / 'afile' / 'w')
  with pytest.raises(errors.InputError, match='^cannot write to the workdir gs://mformer-'
                     'jax-no-such-bucket-for-tests/w: .*are credentials set up'):
    workdir_lib.prepare('gs://mformer-jax-no-such-bucket-for-tests/w')
  mount = tmp_path / 'ro'
  mount.mkdir()
  proc = _in_tmpfs(mount, 'ro,size=1m', _shell([sys.executable, '-c', 'import sys; from '
                                                'mformer_jax.run import workdir; workdir.prepare('
                                                'sys.argv[1])', str(mount / 'w')]))
  assert proc.stderr.strip().splitlines()[-1] == (
      f'mformer_jax.errors.InputError: cannot write to the workdir {mount / "w"}: it is not '
      'writable (Read-only file system)'), proc.stderr


@pytest.mark.slow
def test_a_workdir_through_a_file_is_one_line_before_compiling(tmp_path):
  (tmp_path / 'afile').write_text('')
  proc = tfx.run_main(tmp_path / 'afile' / 'w')
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
  return subprocess.run(_mount_namespace_or_skip() + ['bash', '-c', script], cwd=tfx.ROOT,
                        env=tfx.env(), capture_output=True, text=True, timeout=timeout)


def _shell(cmd):
  return ' '.join("'" + a.replace("'", "'\\''") + "'" for a in cmd)


@pytest.mark.slow
def test_a_read_only_workdir_is_one_line(tmp_path):
  mount = tmp_path / 'ro'
  mount.mkdir()
  proc = _in_tmpfs(mount, 'ro,size=1m', _shell(tfx.main_cmd(mount / 'w')))
  _one_error_line(proc, f'{mount / "w"}', 'not writable (Read-only file system)')


@pytest.mark.slow
def test_a_full_disk_during_a_save_is_one_line_and_the_rerun_resumes(trained, tmp_path):
  # As a filesystem counts it: whole blocks, directories included.
  step_bytes = sum(p.stat().st_blocks * 512 for p in (trained[0] / 'checkpoints' / '4').rglob('*'))
  mount = tmp_path / 'disk'
  mount.mkdir()
  work = mount / 'w'
  cmd = _shell(tfx.main_cmd(work))
  # Room for one checkpoint (and the logs), not two: step 4 is written, step 8 fails.
  size = (int(step_bytes * 1.6) // 4096 + 1) * 4096
  proc = _in_tmpfs(mount, f'size={size}', f'{{ {cmd} 2>{tmp_path}/full.err; echo $? > '
                   f'{tmp_path}/full.rc; }}', f'mount -o remount,size=64m {mount}',
                   f'{cmd} 2>{tmp_path}/rerun.err', f'ls {work}/checkpoints')
  full = subprocess.CompletedProcess([], int((tmp_path / 'full.rc').read_text()),
                                     stderr=(tmp_path / 'full.err').read_text())
  _one_error_line(full, 'the disk is full', 'intact (steps 4)', 'run the same command')
  assert proc.returncode == 0, (tmp_path / 'rerun.err').read_text()[-3000:]
  assert 'Resumed from' in (tmp_path / 'rerun.err').read_text()
  assert proc.stdout.split()[-2:] == ['4', '8']


@pytest.mark.slow
def test_a_gs_workdir_without_credentials_is_one_line(tmp_path):
  proc = tfx.run_main('gs://mformer-jax-no-such-bucket-for-tests/w', timeout=180)
  _one_error_line(proc, 'gs://mformer-jax-no-such-bucket-for-tests/w', 'credentials')


# ----------------------------------------------------------------------------------------------
# Two trainers on one workdir
# ----------------------------------------------------------------------------------------------
_HOLD = """
import sys, time
from mformer_jax.run import workdir
lock = workdir.Lock(sys.argv[1])
print('locked', flush=True)
time.sleep(600)
"""


def _holder(workdir):
  holder = subprocess.Popen([sys.executable, '-c', _HOLD, str(workdir)], cwd=tfx.ROOT,
                            env=tfx.env(), stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'locked'
  return holder


def test_a_second_trainer_is_refused_while_the_first_lives_and_takes_over_after(tmp_path):
  holder = _holder(tmp_path)
  try:
    owner = json.loads((tmp_path / workdir_lib.LOCK_NAME).read_text())
    assert owner['pid'] == holder.pid and owner['host'] and owner['started']
    with pytest.raises(errors.InputError, match=f'^{tmp_path} is in use by another '
                       f'trainer \\(host .*, pid {holder.pid}, started .*\\); wait for it'):
      workdir_lib.Lock(tmp_path)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  lock = workdir_lib.Lock(tmp_path)  # the owner is gone: taken over at once
  assert json.loads((tmp_path / workdir_lib.LOCK_NAME).read_text())['pid'] == os.getpid()
  lock.release()
  assert (tmp_path / workdir_lib.LOCK_NAME).read_text() == ''


@pytest.mark.slow
def test_the_trainer_refuses_a_locked_workdir_in_one_line(tmp_path):
  holder = _holder(tmp_path)
  try:
    proc = tfx.run_main(tmp_path)
    _one_error_line(proc, f'{tmp_path} is in use by another trainer', f'pid {holder.pid}')
    assert not (tmp_path / 'checkpoints').exists() and 'Parameters' not in proc.stderr
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()


# ----------------------------------------------------------------------------------------------
# A corrupt shard: skipped and counted within the budget, one line beyond, never a hang
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def corrupt_shards(tmp_path_factory):
  """A prepared split pair with train record 1 failing its CRC and test record 3 holding a
  frame that does not decode."""
  root = tmp_path_factory.mktemp('clips')
  fx.kinetics_tree(str(root / 'videos'))
  items, classes = layouts.kinetics(str(root / 'videos'))
  for split in ('train', 'test'):
    prepare.build(items, classes, out=str(root / 'out'), split=split, layout='kinetics',
                  per_shard=2)
  train_bad = fx.damage_record(str(root / 'out'), 'train', 1, 'flip')
  test_bad = fx.damage_record(str(root / 'out'), 'test', 3, 'jpeg')
  return str(root / 'out'), train_bad, test_bad


def _train_on(data, workdir, **overrides):
  cmd = [sys.executable, '-m', 'mformer_jax.main', f'--config=configs/own_videos.py:{data}',
         f'--workdir={workdir}'] + [f'--config.{k}={v}' for k, v in
                                    {**tfx.ON_CLIPS, **overrides}.items()]
  # The timeout is the point as much as the status: a dead input pipeline must never hang.
  return subprocess.run(cmd, cwd=tfx.ROOT, env=tfx.env(), capture_output=True, text=True,
                        timeout=400)


@pytest.mark.slow
def test_a_corrupt_shard_is_skipped_counted_and_reported(corrupt_shards, tmp_path):
  data, (train_shard, train_key), (test_shard, test_key) = corrupt_shards
  proc = _train_on(data, tmp_path / 'w', **{'data.max_bad_fraction': 0.2})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'skipped an unreadable train record: {train_shard} record 1 ({train_key}): fails its ' \
         'CRC' in proc.stderr
  assert '5 x 1 views, 1 unreadable' in proc.stdout  # the result table
  assert 'skipped training records  1 (listed in ' in proc.stdout
  report = json.loads((tmp_path / 'w' / 'eval' / 'step_3' / 'metrics.json').read_text())
  assert report['num_videos'] == 5 and report['num_unreadable'] == 1
  assert len(report['unreadable']) == 1 and report['unreadable'][0].startswith(
      f'{test_shard} record 1 ({test_key}): frame 0 does not decode')
  assert len(report['bad_train_records']) == 1 and report['num_bad_train_records'] == 1
  assert report['bad_train_records'][0].startswith(f'{train_shard} record 1 ({train_key}): fails')


@pytest.mark.slow
def test_a_corrupt_shard_beyond_the_budget_ends_the_run_in_one_line(corrupt_shards, tmp_path):
  data, (train_shard, _), _ = corrupt_shards
  proc = _train_on(data, tmp_path / 'w')  # the default budget: 1 %
  _one_error_line(proc, '1 of 6 train records (16.7 %) are unreadable, more than '
                  f'data.max_bad_fraction=0.01 allows: {train_shard} record 1')



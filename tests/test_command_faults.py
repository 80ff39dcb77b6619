"""Bad input to the commands is one `error:` line with exit status 2, never a traceback (issue 32,
items 4, 6 and 7): out-of-range values and repeated tuple flags, an --out or --output that is a
file, a train.lock that is not a lock file, an empty video folder, a bad mode."""
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import real_footage
import train_fixtures as tfx
from mformer_jax import config_lib, convert, train
from mformer_jax.errors import CheckpointMismatchError, InputError, MissingInputError
from mformer_jax.eval import evaluator, features
from mformer_jax.run import workdir


def test_convert_output_that_is_a_file_is_one_line(tmp_path, capsys):
  out = tmp_path / 'taken.txt'
  out.write_text('not a folder')
  # The input does not even exist: the output is checked before anything is read.
  assert convert.main(['--input', str(tmp_path / 'missing.npz'), '--output', str(out)]) == 2
  assert capsys.readouterr().err == (f'error: cannot write the checkpoint to {out}: {out} is a '
                                     'file, not a directory\n')
  assert out.read_text() == 'not a folder'
  assert convert.main(['--input', 'x.npz', '--output', str(out / 'below')]) == 2
  assert f'{out} is a file, not a directory' in capsys.readouterr().err


@pytest.mark.parametrize('override,message', [
    ('num_heads=four', "--override:num_heads=four: num_heads='four' is not a int"),
    ('num_heads=0', '--override: num_heads=0: expected > 0'),
])
def test_convert_override_is_typed_by_the_model_fields(tmp_path, capsys, override, message):
  assert convert.main(['--input', str(tmp_path / 'missing.npz'), '--output',
                       str(tmp_path / 'o'), '--override', override]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'error: {message}') and err.count('\n') == 1, err
  assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('content', ['[1, 2]', '"a string"', '7', 'null', '{"host": "h"', ''])
def test_a_lock_file_of_any_content_is_taken_over_or_named(tmp_path, content):
  (tmp_path / workdir.LOCK_NAME).write_text(content)
  lock = workdir.Lock(tmp_path)  # nobody holds it: taken over (was an AttributeError for lists)
  lock.release()
  (tmp_path / workdir.LOCK_NAME).write_text(content)
  fd = os.open(tmp_path / workdir.LOCK_NAME, os.O_RDWR)
  fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live holder that wrote no owner record
  try:
    with pytest.raises(InputError, match=re.escape(
        f'{tmp_path} is in use by another trainer (owner not yet recorded)')):
      workdir.Lock(tmp_path)
  finally:
    os.close(fd)


def test_a_lock_that_is_a_folder_is_one_line(tmp_path):
  (tmp_path / workdir.LOCK_NAME).mkdir()
  with pytest.raises(InputError, match=re.escape(
      f'{tmp_path / workdir.LOCK_NAME} is a folder, where the trainer keeps its lock file')):
    workdir.claim(tmp_path)


def test_features_refuses_an_empty_folder_or_list(tmp_path):
  (tmp_path / 'empty' / 'sub').mkdir(parents=True)
  (tmp_path / 'empty' / 'notes.txt').write_text('no video here')
  with pytest.raises(MissingInputError, match=re.escape(
      f'no video files in the folder {tmp_path / "empty"} (nor below it; looked for .avi, ')):
    features.video_list(str(tmp_path / 'empty'))
  (tmp_path / 'list.txt').write_text('# a comment only\n\n')
  with pytest.raises(MissingInputError, match=re.escape(
      f'the video list {tmp_path / "list.txt"} names no video')):
    features.video_list(str(tmp_path / 'list.txt'))


@pytest.mark.parametrize('kind', ['text', 'npy', 'folder', 'other_npz'])
def test_features_out_that_is_no_features_file_is_one_line(converted_tiny, tmp_path, kind):
  out = tmp_path / 'taken'
  if kind == 'text':
    out.write_text('precious notes')
  elif kind == 'npy':
    with open(out, 'wb') as f:
      np.save(f, np.arange(3))
  elif kind == 'folder':
    out.mkdir()
  else:
    with open(out, 'wb') as f:
      np.savez(f, x=np.arange(3))
  before = out.read_bytes() if out.is_file() else None
  cfg = tfx.config(**{'init.checkpoint': converted_tiny})
  with pytest.raises(InputError, match=re.escape(
      f'--out={out} exists and is not a features file of this command; use a new --out')):
    features.extract(cfg, str(tmp_path / 'work'),
                     [real_footage.clip('carphone_pristine.mp4')], str(out))
  assert (out.read_bytes() if out.is_file() else None) == before


def _one_error_line(proc, message):
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr and 'Compiling' not in proc.stderr, proc.stderr[-3000:]
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  errors = [l for l in lines if 'error:' in l]
  assert errors == [f'error: {message}'], proc.stderr[-3000:]
  return lines


@pytest.mark.slow
@pytest.mark.parametrize('flags,message', [
    (['--config.train.base_lr=-1e-3'], 'config.train.base_lr=-0.001: expected >= 0'),
    (['--config.train.batch_size=0'], 'config.train.batch_size=0: expected > 0'),
    (['--config.checkpoint.every_steps=0'], 'config.checkpoint.every_steps=0: expected > 0'),
    (['--config.train.lr_boundaries=(1,2)', '--config.train.lr_boundaries=(3,4)'],
     '--config.train.lr_boundaries given 2 times (tuple flags would be concatenated); give the '
     "whole tuple once, e.g. --config.train.lr_boundaries='(1, 2)'"),
    (['--config.mode=evaluate'], "config.mode='evaluate': expected one of train, eval, predict"),
])
def test_main_refuses_meaningless_values_in_one_line(tmp_path, flags, message):
  env = tfx.env(JAX_LOG_COMPILES='1')
  cmd = [c for c in tfx.main_cmd(str(tmp_path / 'work')) if 'lr_boundaries' not in c or
         len(flags) == 1] + flags
  proc = subprocess.run(cmd, cwd=tfx.ROOT, env=env, capture_output=True, text=True, timeout=240)
  lines = _one_error_line(proc, message)
  # Nothing but absl's log lines beside it (before: the whole flag help for a bad mode).
  assert [l for l in lines if not re.match(r'[IWEF]\d{4} ', l)] == [f'error: {message}'], lines
  assert not (tmp_path / 'work' / 'checkpoints').exists()


@pytest.mark.slow
def test_features_command_faults_are_one_line(converted_tiny, tmp_path):
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'notes.txt').write_text('precious notes')
  base = [sys.executable, '-m', 'mformer_jax.features', f'--workdir={tmp_path / "work"}',
          *tfx.flags(**{'init.checkpoint': converted_tiny})]
  run = lambda *a: subprocess.run(base + list(a), cwd=tfx.ROOT, env=tfx.env(),
                                  capture_output=True, text=True, timeout=240)
  proc = run(f'--videos={tmp_path / "empty"}', f'--out={tmp_path / "f.npz"}')
  _one_error_line(proc, f'no video files in the folder {tmp_path / "empty"} (nor below it; '
                  'looked for .avi, .m4v, .mkv, .mov, .mp4, .webm)')
  assert not (tmp_path / 'f.npz').exists()
  proc = run(f'--videos={real_footage.clip("carphone_pristine.mp4")}',
             f'--out={tmp_path / "notes.txt"}')
  _one_error_line(proc, f'--out={tmp_path / "notes.txt"} exists and is not a features file of '
                  'this command; use a new --out (nothing was overwritten)')
  assert (tmp_path / 'notes.txt').read_text() == 'precious notes'


def _tree(root):
  return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob('*'))


@pytest.mark.slow  # an evaluation end to end
def test_eval_of_a_workdir_it_must_not_write_to(converted_tiny, tmp_path):
  """eval.output_dir: the report goes there and nothing into the workdir (a finished run on a
  read-only mount; made read-only here too where the tests do not run as root)."""
  work = tmp_path / 'finished'
  shutil.copytree(converted_tiny, work)
  before = _tree(work)
  for p in [work, *work.rglob('*')] if os.geteuid() else ():  # root writes anyway
    p.chmod(p.stat().st_mode & ~0o222)
  cfg = config_lib.finalize(tfx.config(**{'eval.output_dir': str(tmp_path / 'reports')}))
  try:
    results = evaluator.evaluate_checkpoint(cfg, str(work))
  finally:
    for p in [work, *work.rglob('*')]:
      p.chmod(p.stat().st_mode | 0o200)
  assert results['report_dir'] == str(tmp_path / 'reports' / 'step_0')
  assert (tmp_path / 'reports' / 'step_0' / 'metrics.json').is_file()
  assert _tree(work) == before
  assert evaluator.reports_dir(tfx.config(), str(work)) == work / 'eval'  # the default


@pytest.mark.slow
def test_sigterm_during_eval_stops_as_a_preempted_trainer(converted_tiny, tmp_path):
  cmd = tfx.main_cmd(str(tmp_path / 'work'), **{'mode': 'eval', 'init.checkpoint': converted_tiny,
                                                'data.synthetic.num_test': 3000})
  proc = subprocess.Popen(cmd, cwd=tfx.ROOT, env=tfx.env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  seen = []
  for line in proc.stderr:  # the handlers are in place before this line
    seen.append(line)
    if 'eval on 1 devices' in line:
      break
  time.sleep(5)  # into the evaluation (3000 test clips take longer)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=240)
  err = ''.join(seen) + err
  assert proc.returncode == 75, err[-3000:]
  assert 'Traceback' not in err and 'SIGTERM received' not in err, err[-3000:]
  assert err.splitlines()[-1] == ('stopped (SIGTERM) before eval finished: nothing more is '
                                  'written; run the same command to start it again')
  assert out == ''


@pytest.mark.slow  # a trainer up to its restore
def test_a_refused_resume_leaves_the_runs_config(trained, tmp_path):
  work = tmp_path / 'run'
  shutil.copytree(trained.workdir, work)
  before = (work / 'config.json').read_text()
  wider = config_lib.finalize(tfx.config(**{'model.embed_dim': 48}))
  with pytest.raises(CheckpointMismatchError):
    train.train_and_evaluate(wider, str(work))
  assert (work / 'config.json').read_text() == before  # still the config of its checkpoints

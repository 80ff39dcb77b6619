"""The launch scripts: what they run resolves to a valid config (the clusters are faked)."""
import json
import os
import re
import stat
import subprocess
import sys

import ml_collections
import pytest

import train_fixtures as tfx
from mformer_jax.plan import libtpu_path as _libtpu_path
from mformer_jax.run import preemption

LAUNCH = os.path.join(tfx.ROOT, 'launch')


_RESOLVE = """
import sys
from absl import flags
from ml_collections import config_flags
config = config_flags.DEFINE_config_file('config', None, lock_config=True)
flags.DEFINE_string('workdir', None, '')
flags.DEFINE_bool('multihost', False, '')
flags.FLAGS(sys.argv)
print(config.value.to_json())
"""


def _resolve(args):
  """The config `python -m mformer_jax.main ARGS` would run with, parsed with main's flags
  (config_flags registers its overrides on the global flags, hence a fresh process)."""
  out = subprocess.run([sys.executable, '-c', _RESOLVE, *args], cwd=tfx.ROOT, env=tfx.env(),
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  return ml_collections.ConfigDict(json.loads(out.stdout))


def _documented_commands(script):
  """The `--config=... --flag=...` arguments of the usage example in a script's header."""
  text = open(os.path.join(LAUNCH, script)).read()
  example = re.search(r'(--config=\S+.*?)(?:\n#\s*\n|\n[^#])', text, re.S).group(1)
  return [a for a in re.sub(r'\\\n#\s*', ' ', example).split() if a.startswith('--')]


def _fake(bin_dir, name, body):
  path = bin_dir / name
  path.write_text('#!/usr/bin/env bash\n' + body)
  path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize('script', ['slurm.sh', 'tpu_pod.sh'])
def test_documented_command_resolves_to_a_valid_config(script):
  args = [a.replace('$BUCKET', 'bucket') for a in _documented_commands(script)]
  config = _resolve(args)
  assert config.experiment == 'kinetics400_motionformer'
  assert config.data.data_dir.endswith('k400_prepared') and config.init.imagenet


@pytest.mark.slow
def test_slurm_exports_the_distributed_variables_and_forwards_the_arguments(tmp_path):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  _fake(bin_dir, 'scontrol', 'echo node-a; echo node-b\n')
  # srun runs its command once per task; here once, as task 1 of 2, with python faked.
  _fake(bin_dir, 'srun', f'export SLURM_PROCID=1; cd {tmp_path}; "$@"\n')
  venv = tmp_path / '.venv' / 'bin'
  venv.mkdir(parents=True)
  _fake(venv, 'python', 'echo "$JAX_COORDINATOR_ADDRESS $JAX_NUM_PROCESSES $JAX_PROCESS_ID"; '
        'printf "%s\\n" "$@"\n')
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', SLURM_JOB_NODELIST='node-[a-b]',
             SLURM_NTASKS='2', SLURM_SUBMIT_DIR=str(tmp_path))
  args = ['--config=configs/k400_base.py', '--workdir=/shared/w',
          '--config.data.data_dir=/shared/k400_prepared']
  out = subprocess.run(['bash', os.path.join(LAUNCH, 'slurm.sh'), *args], env=env,
                       capture_output=True, text=True, timeout=60, check=True).stdout.split('\n')
  assert out[0] == 'node-a:12355 2 1'
  assert out[1:-1] == ['-m', 'mformer_jax.main', *args]
  assert _resolve([args[0], args[2]]).data.data_dir == '/shared/k400_prepared'


@pytest.mark.slow
@pytest.mark.parametrize('status', [0, 1, preemption.EXIT_STATUS])
def test_slurm_signals_before_the_limit_and_requeues_a_preempted_run(tmp_path, status):
  header = open(os.path.join(LAUNCH, 'slurm.sh')).read()
  assert '#SBATCH --signal=TERM@120\n' in header and '#SBATCH --requeue\n' in header
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  _fake(bin_dir, 'scontrol', f'if [ "$1" = requeue ]; then echo "$@" > {tmp_path}/requeued; '
        'else echo node-a; fi\n')
  _fake(bin_dir, 'srun', f'cd {tmp_path}; "$@"\n')
  venv = tmp_path / '.venv' / 'bin'
  venv.mkdir(parents=True)
  _fake(venv, 'python', f'exit {status}\n')
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', SLURM_JOB_NODELIST='node-a',
             SLURM_NTASKS='1', SLURM_SUBMIT_DIR=str(tmp_path), SLURM_JOB_ID='77')
  proc = subprocess.run(['bash', os.path.join(LAUNCH, 'slurm.sh'), '--workdir=/w'], env=env,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == status, proc.stderr
  requeued = tmp_path / 'requeued'
  assert (requeued.read_text().split() == ['requeue', '77'] if status == preemption.EXIT_STATUS
          else not requeued.exists())


@pytest.mark.slow
def test_tpu_pod_runs_main_with_multihost_on_every_worker(tmp_path):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  _fake(bin_dir, 'gcloud', 'printf "%s\\n" "$@"\n')
  # The plan check before `run` has its own test below.
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', TPU_NAME='pod', ZONE='z',
             MFORMER_SKIP_PLAN='1')
  out = subprocess.run(['bash', os.path.join(LAUNCH, 'tpu_pod.sh'), 'run',
                        '--config=configs/k400_base.py', '--workdir=gs://b/w'], env=env,
                       capture_output=True, text=True, timeout=60, check=True).stdout
  assert '--worker=all' in out
  command = out.split('--command=')[1]
  assert command.split()[-4:] == ['mformer_jax.main', '--multihost',
                                  '--config=configs/k400_base.py', '--workdir=gs://b/w']
  # The pod never installs torch: setup_env adds it only when asked (MFORMER_TORCH=cpu-index).
  pod = open(os.path.join(LAUNCH, 'tpu_pod.sh')).read()
  setup = open(os.path.join(LAUNCH, 'setup_env.sh')).read()
  assert 'MFORMER_TORCH' not in pod and '${MFORMER_TORCH:-off}' in setup


_no_libtpu = pytest.mark.skipif(
    _libtpu_path() is None,
    reason='libtpu not installed (launch/setup_env.sh adds it from requirements-tpu.txt)')


@_no_libtpu
@pytest.mark.slow
def test_tpu_pod_plans_for_its_accelerator_and_run_refuses_what_does_not_fit(tmp_path):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  calls = tmp_path / 'gcloud_calls'
  _fake(bin_dir, 'gcloud', f'printf "%s\\n" "$@" >> {calls}\n')
  env = dict(tfx.env(), PATH=f'{bin_dir}:{os.environ["PATH"]}', ACCELERATOR='v5litepod-4')
  pod = lambda *args, **extra: subprocess.run(
      ['bash', os.path.join(LAUNCH, 'tpu_pod.sh'), *args], env=dict(env, **extra),
      capture_output=True, text=True, timeout=300)

  # `plan` needs no pod (nor TPU_NAME): v5litepod-4 is compiled for as v5e:2x2 here.
  out = pod('plan', *tfx.flags(), '--batch_per_chip=2')
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'v5e:2x2: 4 x TPU v5 lite' in out.stdout and re.search(r'fits +yes', out.stdout)
  assert not calls.exists()

  # `run` plans the run's own global batch first: 60000 clips per chip cannot fit.
  run = ['run', *tfx.flags(**{'train.batch_size': 4 * 60000}), '--workdir=gs://b/w']
  out = pod(*run, TPU_NAME='pod', ZONE='z')
  assert out.returncode == 2 and not calls.exists()
  assert re.search(r'^error: does not fit: the compiler needs [\d.]+ GiB per chip', out.stderr,
                   re.M), out.stderr[-2000:]
  assert 'MFORMER_SKIP_PLAN=1 starts it anyway' in out.stderr
  out = pod(*run, TPU_NAME='pod', ZONE='z', MFORMER_SKIP_PLAN='1')
  assert out.returncode == 0 and 'mformer_jax.main' in calls.read_text()

  # A run that fits (8 clips over 4 chips) starts after its plan.
  calls.unlink()
  out = pod('run', *tfx.flags(), '--workdir=gs://b/w', TPU_NAME='pod', ZONE='z')
  assert out.returncode == 0, out.stderr[-2000:]
  assert re.search(r'fits +yes', out.stdout) and '--multihost' in calls.read_text()

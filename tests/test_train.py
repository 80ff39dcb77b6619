"""Trainer: recipe pieces, NaN guard, and a SIGKILLed or SIGTERMed run resuming to bitwise the same
result."""
import os
import re
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import train_fixtures as tfx
from mformer_jax import errors, train, weights


from mformer_jax.run import checkpoints, preemption
from mformer_jax.train import optim
def _recipe(**kw):
  t = ml_collections.ConfigDict(dict(
      base_lr=1e-4, lr_boundaries=(20.0, 30.0), lr_decay=0.1, warmup_epochs=0.0,
      weight_decay=0.05, decay_norms_and_biases=True, grad_clip_norm=0.0))
  t.update(kw)
  return t


def test_step_schedule_matches_official_epochs():
  spe = 10  # steps per epoch
  lr = optim.lr_schedule(_recipe(), spe)
  got = [float(lr(s)) for s in (0, 199, 200, 299, 300, 349)]
  np.testing.assert_allclose(got, [1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6], rtol=1e-6)
  warm = optim.lr_schedule(_recipe(warmup_epochs=1.0), spe)
  np.testing.assert_allclose([float(warm(s)) for s in (0, 4, 9, 10)],
                             [1e-5, 5e-5, 1e-4, 1e-4], rtol=1e-6)
  constant = optim.lr_schedule(_recipe(lr_boundaries=()), spe)  # no decay step at all
  np.testing.assert_allclose([float(constant(s)) for s in (0, 10**9)], [1e-4, 1e-4], rtol=1e-6)


def _plain_lr(step, base, boundaries, decay, warmup):
  """The step schedule in plain Python floats."""
  lr = base * decay ** sum(step >= b for b in boundaries)
  return lr * min(1.0, (step + 1) / warmup) if warmup else lr


def test_step_schedule_is_the_plain_python_schedule_at_every_step():
  # Dyadic numbers, so float32 holds every value exactly: equal, not close. A boundary inside
  # the warm-up, one given twice, one at step 0 and none at all.
  for boundaries, warmup in (((2, 6, 6), 4), ((0, 5), 0), ((), 8), ((3,), 1)):
    schedule = optim.step_schedule(0.75, boundaries, 0.5, warmup)
    got = np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(12)))
    assert got.dtype == np.float32
    assert got.tolist() == [_plain_lr(s, 0.75, boundaries, 0.5, warmup) for s in range(12)]
  # In epochs: the boundaries and the warm-up at round(epochs * steps_per_epoch).
  by_epochs = optim.lr_schedule(_recipe(base_lr=0.75, lr_decay=0.5, lr_boundaries=(0.5, 1.5, 1.5),
                                        warmup_epochs=1.0), 4)
  assert [float(by_epochs(s)) for s in range(12)] == [
      _plain_lr(s, 0.75, (2, 6, 6), 0.5, 4) for s in range(12)]
  # The recipe's own numbers, where float32 rounds: within one rounding of each operation.
  paper = optim.step_schedule(1e-4, (5, 9), 0.1, 4)
  np.testing.assert_allclose(np.asarray(jax.vmap(paper)(jnp.arange(12))),
                             [_plain_lr(s, 1e-4, (5, 9), 0.1, 4) for s in range(12)], rtol=3e-7)


def test_weight_decay_everywhere_or_matrices_only():
  params = {'cls_token': jnp.ones((1, 1, 4)), 'head': {'kernel': jnp.ones((4, 3)),
                                                        'bias': jnp.ones((3,))}}
  grads = jax.tree.map(jnp.zeros_like, params)
  for decay_all, decayed in ((True, {'cls_token', 'kernel', 'bias'}), (False, {'kernel'})):
    tx, _ = optim.make_optimizer(_recipe(decay_norms_and_biases=decay_all, base_lr=1.0), 1)
    updates, _ = tx.update(grads, tx.init(params), params)
    flat = {jax.tree_util.keystr(p).split("'")[-2]: float(u.ravel()[0])
            for p, u in jax.tree_util.tree_leaves_with_path(updates)}
    assert {k for k, u in flat.items() if u != 0} == decayed
    assert all(u == pytest.approx(-0.05) for k, u in flat.items() if k in decayed)


def test_label_smoothing_loss_is_timm_and_ek_loss_is_the_mean():
  logits = jax.random.normal(jax.random.key(0), (4, 5))
  labels = jnp.array([0, 1, 2, 3])
  loss, metrics = train.loss_and_metrics(logits, {'clip': jnp.zeros((4,)), 'label': labels}, 0.2)
  logp = jax.nn.log_softmax(logits)
  timm = 0.8 * -logp[jnp.arange(4), labels] + 0.2 * -logp.mean(-1)  # LabelSmoothingCrossEntropy
  assert float(loss) == pytest.approx(float(timm.mean()), rel=1e-6)
  assert float(metrics['accuracy'][0]) == float((logits.argmax(-1) == labels).sum())
  ek, m = train.loss_and_metrics({'verb': logits, 'noun': -logits},
                                 {'clip': jnp.zeros((4,)), 'verb': labels, 'noun': labels}, 0.2)
  noun, _ = train.loss_and_metrics(-logits, {'clip': jnp.zeros((4,)), 'label': labels}, 0.2)
  assert float(ek) == pytest.approx(0.5 * (float(loss) + float(noun)), rel=1e-6)
  assert set(m) == {'verb_accuracy', 'noun_accuracy', 'action_accuracy', 'loss'}


def test_steps_are_derived_from_the_dataset_size():
  lengths = train.schedule_lengths(tfx.config(), 32)
  assert lengths == {'steps_per_epoch': 4, 'total_steps': 8, 'eval_every_steps': 8}
  capped = train.schedule_lengths(tfx.config(**{'train.max_steps': 3}), 32)
  assert capped['total_steps'] == 3


@pytest.mark.slow
def test_nan_loss_stops_without_saving_it(tmp_path):
  # lr 1e30: step 1 is finite, its update makes every later loss non-finite.
  cfg = tfx.config(**{'train.base_lr': 1e30, 'checkpoint.every_steps': 1})
  with pytest.raises(errors.ConfigError, match='between steps 2 and 2.*last good '
                     'checkpoint is step 1'):
    train.train_and_evaluate(cfg, str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1']


# 96 steps with a checkpoint every 16; DropPath on, so the RNG must be restored too.
INTERRUPTED = {'data.synthetic.num_train': 64, 'train.num_epochs': 12.0, 'train.lr_boundaries':
               (6.0, 9.0), 'checkpoint.every_steps': 16, 'train.log_every_steps': 16,
               'model.drop_path': 0.2, 'data.synthetic.num_test': 8}


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  """(results, final params) of the INTERRUPTED run without interruption."""
  workdir = tmp_path_factory.mktemp('uninterrupted')
  results = train.train_and_evaluate(tfx.config(**INTERRUPTED), str(workdir))
  return results, tfx.final_params(workdir)


def _start_and_signal(workdir, sig):
  """Starts the INTERRUPTED run, sends `sig` right after its first checkpoint is committed."""
  proc = subprocess.Popen(tfx.main_cmd(workdir, **INTERRUPTED), cwd=tfx.ROOT, env=tfx.env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  ckpts = workdir / 'checkpoints'
  deadline = time.time() + 180
  while not (ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())):
    assert proc.poll() is None and time.time() < deadline, 'the run ended before its first save'
    time.sleep(0.005)
  proc.send_signal(sig)
  _, stderr = proc.communicate(timeout=120)
  steps = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  assert steps and steps[-1] < 96, f'not stopped mid-run: {steps}'
  return proc.returncode, stderr, steps


def _resumes_bitwise(workdir, uninterrupted):
  resumed = train.train_and_evaluate(tfx.config(**INTERRUPTED), str(workdir))
  a, b = tfx.final_params(workdir), uninterrupted[1]
  assert all(np.array_equal(a[k], b[k]) for k in a), tfx.max_abs_diff(a, b)
  assert resumed['top1'] == uninterrupted[0]['top1']


@pytest.mark.slow
def test_sigkill_and_resume_gives_bitwise_the_uninterrupted_result(tmp_path, uninterrupted):
  status, _, _ = _start_and_signal(tmp_path / 'killed', signal.SIGKILL)
  assert status == -signal.SIGKILL
  _resumes_bitwise(tmp_path / 'killed', uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_the_step_it_stopped_after_and_resumes_bitwise(tmp_path, uninterrupted):
  """SIGTERM (SLURM, Kubernetes, spot VMs): the step in progress finishes, is saved, and the
  exit says so with its own status; the same command continues bitwise."""
  status, stderr, steps = _start_and_signal(tmp_path / 'termed', signal.SIGTERM)
  assert status == preemption.EXIT_STATUS, stderr[-3000:]
  assert 'Traceback' not in stderr and 'error:' not in stderr
  stop = re.search(r'^preempted at step (\d+) \(SIGTERM\): checkpoint saved in (\S+); run the '
                   r'same command to continue$', stderr, re.M)
  assert stop, stderr[-3000:]
  assert steps[-1] == int(stop.group(1)) > 16  # after the periodic save: its own checkpoint
  _resumes_bitwise(tmp_path / 'termed', uninterrupted)


@pytest.mark.slow
def test_sigint_is_a_clean_stop_too(tmp_path):
  status, stderr, steps = _start_and_signal(tmp_path / 'interrupted', signal.SIGINT)
  assert status == preemption.EXIT_STATUS, stderr[-3000:]
  assert 'KeyboardInterrupt' not in stderr and 'Traceback' not in stderr
  assert f'preempted at step {steps[-1]} (SIGINT): checkpoint saved' in stderr


def test_checkpoints_keep_the_latest_and_the_best(tmp_path):
  ck = tfx.config(**{'checkpoint.keep': 2, 'checkpoint.keep_best': 1}).checkpoint
  state = {'params': {'w': jnp.ones(3)}, 'step': jnp.zeros((), jnp.int32)}
  with checkpoints.manager(str(tmp_path), ck) as mngr:
    for step, top1 in ((1, 0.9), (2, None), (3, 0.2), (4, None), (5, None)):
      checkpoints.save(mngr, state, {'step': step},
                         metrics=None if top1 is None else {'top1': top1})
      mngr.wait_until_finished()
    assert mngr.all_steps() == [1, 4, 5]  # best by top-1, then the latest two


FUSED_SMALL = {'model.scan_blocks': True, 'model.depth': 2, 'model.drop_path': 0.0,
               'data.synthetic.num_test': 8}


@pytest.mark.slow
def test_fused_update_trains_like_the_standard_step(tmp_path):
  """train.fused_update=True through the trainer: the same run (no dropout, 2 blocks stacked)
  as the standard jax.grad + optax step, within float32 rounding, and it evaluates alike."""
  fused_run = train.train_and_evaluate(tfx.config(**FUSED_SMALL, **{'train.fused_update': True}),
                                       str(tmp_path / 'fused'))
  standard = train.train_and_evaluate(tfx.config(**FUSED_SMALL), str(tmp_path / 'standard'))
  a, b = tfx.final_params(tmp_path / 'fused'), tfx.final_params(tmp_path / 'standard')
  assert ('blocks', 'mlp', 'fc1', 'kernel') in a and a.keys() == b.keys()
  assert tfx.max_abs_diff(a, b) < 1e-4        # lr-scaled Adam steps; params move ~1e-3 here
  assert fused_run['steps'] == standard['steps'] == 8
  assert fused_run['num_videos'] == standard['num_videos'] == 8
  assert abs(fused_run['top1'] - standard['top1']) <= 1 / 8  # at most one video flips


def test_fused_update_needs_stacked_blocks_and_no_clipping(tmp_path):
  with pytest.raises(errors.ConfigError, match='needs model.scan_blocks=True'):
    train.train_and_evaluate(tfx.config(**{'train.fused_update': True}), str(tmp_path / 'x'))
  with pytest.raises(errors.ConfigError, match='grad_clip_norm'):
    train.train_and_evaluate(tfx.config(**FUSED_SMALL, **{'train.fused_update': True,
                                                          'train.grad_clip_norm': 1.0}),
                             str(tmp_path / 'y'))


@pytest.mark.slow
def test_another_layout_cannot_resume_but_init_checkpoint_converts(tmp_path):
  fused = {**FUSED_SMALL, 'train.fused_update': True, 'train.max_steps': 2}
  train.train_and_evaluate(tfx.config(**fused), str(tmp_path / 'fused'))
  with pytest.raises(errors.ConfigError, match='written with model.scan_blocks=True and '
                     'train.fused_update=True'):   # resuming with another optimizer state layout
    train.train_and_evaluate(tfx.config(**FUSED_SMALL), str(tmp_path / 'fused'))
  # ... while starting a new run from its parameters converts the layout.
  trained = tfx.final_params(tmp_path / 'fused')
  fresh = train.train_and_evaluate(tfx.config(**{**FUSED_SMALL, 'model.scan_blocks': False,
                                                 'init.checkpoint': str(tmp_path / 'fused'),
                                                 'train.max_steps': 1}), str(tmp_path / 'z'))
  assert fresh['steps'] == 1
  z = weights.load_model(str(tmp_path / 'z'))[1]['params']
  assert 'blocks_1' in z and 'blocks' not in z
  # One step from the converted parameters: the stacked block 1 is where blocks_1 came from.
  moved = np.abs(z['blocks_1']['mlp']['fc1']['kernel']
                 - trained[('blocks', 'mlp', 'fc1', 'kernel')][1]).max()
  assert 0 < moved < 1e-2


@pytest.mark.slow
def test_fused_update_resumes_bitwise(tmp_path):
  """Stopping after 4 of 8 fused steps and resuming gives bitwise the uninterrupted run
  (optimizer state, step count and per-block RNG all come back)."""
  over = {**tfx.FUSED, 'model.depth': 2, 'model.drop_path': 0.2, 'data.synthetic.num_test': 8}
  train.train_and_evaluate(tfx.config(**over, **{'train.max_steps': 4}), str(tmp_path / 'split'))
  assert checkpoints.manager(str(tmp_path / 'split'), read_only=True).all_steps() == [4]
  train.train_and_evaluate(tfx.config(**over), str(tmp_path / 'split'))
  train.train_and_evaluate(tfx.config(**over), str(tmp_path / 'straight'))
  a, b = tfx.final_params(tmp_path / 'split'), tfx.final_params(tmp_path / 'straight')
  assert checkpoints.manager(str(tmp_path / 'split'), read_only=True).latest_step() == 8
  assert all(np.array_equal(a[k], b[k]) for k in a), tfx.max_abs_diff(a, b)

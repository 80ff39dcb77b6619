r"""Train and evaluate the LRA ListOps encoder: a small sibling of mformer_jax/train.py.

  python -m mformer_jax.lra.train --config=configs/lra_listops.py:orthoformer,cpu --workdir=W

One jitted step on one device, CLU metric writers (TensorBoard + log), the trainer's checkpoints
(checkpoints.py, with the evaluation history in their metadata); a restarted run resumes from
the latest checkpoint with the same parameters, optimizer state and data position (batches are a
function of (seed, step)), so it continues the uninterrupted run. Evaluates on validation and
test every `eval_every_steps`; reports the final test accuracy and the test accuracy at the best
validation accuracy (the LRA convention) in WORKDIR/results.json.

A loop of its own rather than train.train_and_evaluate: another task and model (token sequences
held in memory with integer labels, the Encoder, whole-split evaluation), where the trainer runs
Motionformer on the clip pipeline. The pieces are the trainer's: optim.adamw around
optim.step_schedule, train.check_finite (the NaN guard), train.summarize and the checkpoint
manager.
"""
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging
from clu import metric_writers, periodic_actions
from ml_collections import config_flags

from mformer_jax.run import checkpoints
from mformer_jax.train import optim
from mformer_jax import train as trainer
from mformer_jax.errors import InputError, UserError, exit_with
from mformer_jax.lra import listops
from mformer_jax.lra.model import Encoder


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def data_dir(config) -> str:
  d = config.data
  return d.dir or os.path.join('workdirs', 'lra',
                               f'listops_{d.min_length}-{d.max_length}_seed{d.seed}')


def load_data(config) -> dict:
  """{split: (tokens, labels)}; generates missing files if data.generate."""
  d, path = config.data, data_dir(config)
  sizes = {'train': d.num_train, 'val': d.num_val, 'test': d.num_test}
  if d.generate:
    listops.build(path, seed=d.seed, sizes=sizes, min_length=d.min_length, max_length=d.max_length)
  out = {s: listops.load_split(path, s, config.model.max_length) for s in sizes}
  for s, (tokens, _) in out.items():
    if len(tokens) < sizes[s]:
      raise InputError(f'{listops.split_path(path, s)} has {len(tokens)} expressions; the config '
                       f'asks for data.num_{s}={sizes[s]}')
  return {s: (tokens[:sizes[s]], labels[:sizes[s]]) for s, (tokens, labels) in out.items()}


def train_batch(data, seed: int, step: int, batch_size: int):
  """Batch `step`: a fresh permutation every pass over the data, a function of (seed, pass)."""
  tokens, labels = data
  per_epoch = len(tokens) // batch_size
  epoch, i = divmod(step, per_epoch)
  perm = np.random.default_rng([seed, epoch]).permutation(len(tokens))
  idx = np.sort(perm[i * batch_size:(i + 1) * batch_size])
  return tokens[idx], labels[idx]


# ----------------------------------------------------------------------------------------------
# Steps. Metrics are (sum, count) pairs, as in the main trainer.
# ----------------------------------------------------------------------------------------------
def loss_and_metrics(logits, labels):
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  n = labels.shape[0]
  correct = jnp.argmax(logits, -1) == labels
  return losses.mean(), {'loss': (losses.sum(), n), 'accuracy': (correct.sum(), n)}


def make_optimizer(t):
  """(optax transform, schedule): the recipe's AdamW and step schedule, given in steps."""
  schedule = optim.step_schedule(t.base_lr, t.lr_boundary_steps, t.lr_decay, t.warmup_steps)
  return optim.adamw(schedule, t.weight_decay, t.decay_norms_and_biases,
                     t.grad_clip_norm), schedule


def make_steps(model, tx, seed: int):
  base = jax.random.key(seed)

  @jax.jit
  def train_step(state, tokens, labels):
    rng = jax.random.fold_in(base, state['step'])
    rngs = dict(zip(('dropout', 'landmarks'), jax.random.split(rng)))

    def loss_fn(params):
      logits = model.apply({'params': params}, tokens, train=True, rngs=rngs)
      return loss_and_metrics(logits, labels)

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    return dict(params=params, opt_state=opt_state, step=state['step'] + 1), metrics

  @jax.jit
  def eval_step(params, tokens, labels):
    return loss_and_metrics(model.apply({'params': params}, tokens), labels)[1]

  return train_step, eval_step


def evaluate(eval_step, params, data, batch_size: int) -> dict:
  tokens, labels = data
  sums = {}
  for i in range(0, len(tokens), batch_size):
    m = eval_step(params, tokens[i:i + batch_size], labels[i:i + batch_size])
    for k, (s, c) in m.items():
      s0, c0 = sums.get(k, (0.0, 0))
      sums[k] = (s0 + float(s), c0 + int(c))
  return trainer.summarize(sums)


def majority_rate(labels) -> float:
  return float(np.bincount(labels, minlength=10).max() / len(labels))


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------
def train_and_evaluate(config, workdir: str) -> dict:
  os.makedirs(workdir, exist_ok=True)
  data = load_data(config)
  model = Encoder(**config.model)
  tx, schedule = make_optimizer(config.train)
  params = model.init(jax.random.key(config.seed), data['train'][0][:1])['params']
  state = dict(params=params, opt_state=tx.init(params), step=jnp.asarray(0, jnp.int32))
  mngr = checkpoints.manager(workdir)  # the latest checkpoint only
  on_device = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), state)
  start, restored = checkpoints.restore_newest(
      mngr, lambda step: checkpoints.restore(mngr, step, state, on_device), quarantine=True)
  history = {'evals': []}
  if start is not None:
    state, history = restored[0], restored[1]['history']
    logging.info('Resumed from step %d', start)
  train_step, eval_step = make_steps(model, tx, config.seed)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  num_steps = config.train.num_steps
  progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  bs = config.train.batch_size
  sums, acc_from, t0 = {}, int(state['step']), time.perf_counter()
  try:
    for step in range(acc_from + 1, num_steps + 1):
      tokens, labels = train_batch(data['train'], config.seed, step - 1, bs)
      state, metrics = train_step(state, tokens, labels)
      sums = jax.tree.map(lambda a, b: a + b, sums, metrics) if sums else metrics
      progress(step)
      eval_now = step % config.eval_every_steps == 0 or step == num_steps
      save_now = step % config.checkpoint_every_steps == 0 or step == num_steps
      if step % config.log_every_steps == 0 or eval_now or save_now:
        checkpoints.check(mngr)
        summary = trainer.summarize(jax.device_get(sums))
        trainer.check_finite(summary, acc_from + 1, step, mngr, hint='train.grad_clip_norm>0')
        writer.write_scalars(step, {**{f'train_{k}': v for k, v in summary.items()},
                                    'lr': float(schedule(step - 1))})
        sums, acc_from = {}, step
      if eval_now:
        res = {f'{s}_{k}': v for s in ('val', 'test') for k, v in
               evaluate(eval_step, state['params'], data[s], config.eval_batch_size).items()}
        writer.write_scalars(step, res)
        history['evals'].append({'step': step, **res})
      if save_now:
        checkpoints.save(mngr, state, {'step': step, 'history': history})
        with open(os.path.join(workdir, 'history.json'), 'w') as f:
          json.dump(history, f)
  finally:
    checkpoints.finish(mngr)
    mngr.close()
  writer.flush()
  if not history['evals']:
    raise InputError(f'{workdir} holds a finished run with no evaluations')
  best = max(history['evals'], key=lambda e: e['val_accuracy'])
  results = {
      'experiment': config.experiment, 'attention': config.model.attention, 'seed': config.seed,
      'steps': num_steps, 'final_test_accuracy': history['evals'][-1]['test_accuracy'],
      'final_val_accuracy': history['evals'][-1]['val_accuracy'],
      'best_val_accuracy': best['val_accuracy'], 'test_accuracy_at_best_val': best['test_accuracy'],
      'best_val_step': best['step'], 'test_majority_rate': majority_rate(data['test'][1]),
      'train_wall_s_this_session': time.perf_counter() - t0, 'data_dir': data_dir(config)}
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=1)
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  checkpoints.quiet_orbax()
  try:
    results = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  except UserError as e:  # missing/malformed data, bad config: one clear message
    exit_with(e)
  print(json.dumps(results, indent=1))


if __name__ == '__main__':
  # Flags only here: importing this module (tests) must not clash with mformer_jax.main's.
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Logs, checkpoints and results.json.')
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)

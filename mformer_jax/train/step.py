"""The training step: loss, optimizer, train state and the jitted update over a mesh.

    step_fn, tx, abstract_state, shardings = make_train_step(config, model, mesh, steps_per_epoch)
    state, metrics = step_fn(state, batch)      # metrics as (sum, count) pairs

Imports no input pipeline (no TensorFlow), so that whatever measures or compiles the step
runs this very one without it.
"""
import functools

import jax
import jax.numpy as jnp
import optax

from mformer_jax.errors import ConfigError
from mformer_jax.data import device_augment
from mformer_jax.model import head_prefix, init_variables, outputs_by_head
from mformer_jax.run import sharding
from mformer_jax.train import fused, optim


def loss_and_metrics(out, batch, label_smoothing: float):
  """Mean label-smoothed cross-entropy (EK: mean of the verb and noun losses) and metrics."""
  n = batch['clip'].shape[0]
  losses, metrics, all_correct = [], {}, True
  for head, logits in outputs_by_head(out).items():
    labels = batch[head]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    losses.append(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean())
    correct = jnp.argmax(logits, -1) == labels
    all_correct = all_correct & correct
    metrics[f'{head_prefix(head)}accuracy'] = (correct.sum(), n)
  if len(losses) > 1:
    metrics['action_accuracy'] = (all_correct.sum(), n)
  loss = sum(losses) / len(losses)
  metrics['loss'] = (loss * n, n)
  return loss, metrics


def make_optimizer(config, model, steps_per_epoch: int):
  """(optimizer, schedule): optax AdamW, or the same AdamW inside the backward pass."""
  if not config.train.fused_update:
    return optim.make_optimizer(config.train, steps_per_epoch)
  if not model.cfg.scan_blocks:
    raise ConfigError('train.fused_update=True needs model.scan_blocks=True')
  return optim.make_fused_optimizer(config.train, steps_per_epoch)


def create_train_state(params, tx, seed: int) -> dict:
  """{'params', 'opt_state', 'step', 'rng'}: what a checkpoint holds (with the step's data
  position implied by 'step')."""
  return {'params': params, 'opt_state': tx.init(params), 'step': jnp.zeros((), jnp.int32),
          'rng': jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1))}


def train_step(state, batch, *, model, tx, schedule, label_smoothing: float,
               fused_update: bool = False, bgr: bool = False):
  """One update: (state, batch) -> (new state, metrics as (sum, count) pairs).

  The batch's clips are the pipeline's uint8 crops (finished into model input here by
  `device_augment.model_input`: colour jitter, normalisation, `bgr` channel order) or float
  model input already.

  Bind the keywords with functools.partial and jit it (see `train_and_evaluate`).
  """
  # One key per step, independent of how the batch is split (threefry is partitionable).
  rng = jax.random.fold_in(jax.random.wrap_key_data(state['rng']), state['step'])
  drop_rng, landmark_rng = jax.random.split(rng)
  rngs = {'dropout': drop_rng, 'landmarks': landmark_rng}
  objective = functools.partial(loss_and_metrics, batch=batch, label_smoothing=label_smoothing)
  clip = device_augment.model_input(batch, bgr)
  if fused_update:
    params, opt_state, _, metrics, grad_norm = fused.train_step(
        model, tx, state['params'], state['opt_state'], clip, objective, rngs)
  else:
    def loss_fn(params):
      return objective(model.apply({'params': params}, clip, train=True, rngs=rngs))

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params, grad_norm = optax.apply_updates(state['params'], updates), optax.tree.norm(grads)
  metrics['grad_norm'] = (grad_norm, 1)
  metrics['learning_rate'] = (schedule(state['step']), 1)
  return {'params': params, 'opt_state': opt_state, 'step': state['step'] + 1,
          'rng': state['rng']}, metrics


def abstract_train_state(config, model, tx):
  """The state's shapes and dtypes, without computing anything."""
  return jax.eval_shape(lambda: create_train_state(
      init_variables(model, jax.random.key(config.seed))['params'], tx, config.seed))


def make_train_step(config, model, mesh, steps_per_epoch: int):
  """(step_fn, tx, abstract state, state shardings): the jitted update over `mesh` as the
  trainer runs it. One builder for `train_and_evaluate` and for `mformer_jax.plan`, which
  compiles this very step for a TPU slice, so the two cannot drift apart."""
  tx, schedule = make_optimizer(config, model, steps_per_epoch)
  abstract = abstract_train_state(config, model, tx)
  state_sh = sharding.state_shardings(abstract, mesh, fsdp=config.mesh.fsdp,
                                      fsdp_min_size=config.mesh.fsdp_min_size)
  step = functools.partial(train_step, model=model, tx=tx, schedule=schedule,
                           label_smoothing=config.train.label_smoothing,
                           fused_update=bool(config.train.fused_update), bgr=config.data.bgr)

  @functools.wraps(train_step)
  def step_on_mesh(state, batch):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return step(state, batch)

  step_fn = jax.jit(
      step_on_mesh, in_shardings=(state_sh, sharding.batch_sharded(mesh)),
      out_shardings=(state_sh, sharding.replicated(mesh)), donate_argnums=(0,))
  return step_fn, tx, abstract, state_sh

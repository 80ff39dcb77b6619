"""Motionformer training with periodic multi-view evaluation, big_vision style.

    python -m mformer_jax.main --config=configs/demo.py --workdir=/tmp/demo

One `jax.jit` step over a 1-axis device mesh ('data'): the global batch is split over all
devices of all hosts, parameters are replicated (or FSDP-sharded). Every host runs this same
code; host 0 writes logs and files, orbax coordinates checkpoint writes. A restarted run
resumes from the latest checkpoint with the same parameters, optimizer state, RNG and data
position, so it continues the exact sequence of the uninterrupted run.

The step itself is `train.step`; `train_and_evaluate` is the loop around it.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from clu import metric_writers, parameter_overview, periodic_actions

from mformer_jax import weights
from mformer_jax.data import pipeline
from mformer_jax.data.config import COLOUR, colour_on_device
from mformer_jax.errors import ConfigError
from mformer_jax.eval import evaluator as evaluator_lib
from mformer_jax.model import init_variables, make_model
from mformer_jax.run import checkpoints, preemption, sharding
from mformer_jax.run import workdir as workdir_lib
from mformer_jax.train import optim, throughput
from mformer_jax.train.step import abstract_train_state, create_train_state, make_train_step


class Preempted(RuntimeError):
  """The hosts were told to stop (SIGTERM, SIGINT, TPU maintenance); a checkpoint of the step
  they stopped after was written first. Entry points exit with preemption.EXIT_STATUS."""


def summarize(metrics) -> dict:
  """{name: mean} of (sum, count) metrics: pairs over the global batch, which add up exactly
  across steps and hosts however the batch is split."""
  return {k: float(s) / float(c) for k, (s, c) in metrics.items()}


def check_finite(summary: dict, first: int, last: int, mngr,
                 hint='train.grad_clip_norm>0 or model.dtype=float32') -> None:
  """The NaN guard, called before anything of steps first..last is saved: unless every metric
  summed over them is finite, a ConfigError (the recipe diverged: the message says what to
  change; nothing from that point on was checkpointed)."""
  if not all(np.isfinite(v) for v in summary.values()):
    raise ConfigError(
        f'non-finite loss/gradient between steps {first} and {last} ({summary}). '
        f'Stopped without saving; the last good checkpoint is step '
        f'{mngr.latest_step()} in {mngr.directory}. Try a lower train.base_lr, {hint}.')


def schedule_lengths(config, num_train: int) -> dict:
  """Every step count of the run, derived from the dataset size and the global batch."""
  train_cfg = config.train
  spe = optim.steps_per_epoch(num_train, train_cfg.batch_size)
  total = round(train_cfg.num_epochs * spe)
  if train_cfg.max_steps > 0:
    total = min(total, train_cfg.max_steps)
  eval_every = round(config.eval.every_epochs * spe) if config.eval.every_epochs > 0 else 0
  return dict(steps_per_epoch=spe, total_steps=total, eval_every_steps=eval_every or total)


def restore_or_create_state(config, model, tx, mngr, shardings):
  """(state, meta): the latest checkpoint in `mngr` with its metadata, or a new state from the
  config's initialisation (scratch, init.checkpoint or init.imagenet) with meta {'step': 0};
  placed into `shardings`.

  A checkpoint that cannot be read or fails its checks is skipped for the newest one that
  passes, and moved to WORKDIR/broken_checkpoints/ (checkpoints.restore_newest), unless
  checkpoint.strict_restore, which stops naming the readable steps instead."""
  def read(step):
    # The state's structure depends on these two; say so instead of failing inside orbax.
    saved = checkpoints.read_meta(mngr, step)
    layout = (saved.get('model', {}).get('scan_blocks', False), saved.get('fused_update', False))
    if layout != (model.cfg.scan_blocks, bool(config.train.fused_update)):
      raise ConfigError(
          f'{mngr.directory} was written with model.scan_blocks={layout[0]} and '
          f'train.fused_update={layout[1]}; resume it with the same settings (or start a new '
          f'workdir from its parameters with init.checkpoint, which converts the layout)')
    return checkpoints.restore(mngr, step, abstract_train_state(config, model, tx), shardings)

  start, restored = checkpoints.restore_newest(
      mngr, read, strict=config.checkpoint.strict_restore, quarantine=True)
  if start is None:
    params = jax.jit(lambda k: init_variables(model, k, random_tubelet=config.init.random_tubelet)
                     ['params'], out_shardings=shardings['params'])(jax.random.key(config.seed))
    init = config.init
    if init.checkpoint and init.imagenet:
      raise ConfigError('set init.checkpoint or init.imagenet, not both')
    if init.checkpoint or init.imagenet:
      _, loaded = weights.load(
          init.checkpoint or init.imagenet, model.cfg, like=sharding.to_host(params),
          imagenet=bool(init.imagenet), strict=config.checkpoint.strict_restore,
          dont_load=weights.HEAD_PATTERNS if init.reset_head else ())
      params = jax.device_put(loaded, shardings['params'])
    state = jax.jit(lambda p: create_train_state(p, tx, config.seed),
                    out_shardings=shardings)(params)
    return state, {'step': 0}
  logging.info('Resumed from %s at step %d', mngr.directory, start)
  return restored


# ----------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------
def train_and_evaluate(config, workdir: str) -> dict:
  """Trains (resuming if WORKDIR has a checkpoint), evaluates, returns a result summary.

  WORKDIR is checked writable and locked first (workdir.py: a second trainer is refused while
  this one runs); SIGTERM/SIGINT stop it after the current step with a checkpoint
  (preemption.py: `Preempted`).
  """
  lock = workdir_lib.claim(workdir)
  stop = preemption.Stop()
  try:
    return _train_and_evaluate(config, workdir, stop)
  finally:
    stop.release()
    if lock:
      lock.release()


def _open_run(config, workdir, num_train: int, lengths: dict):
  """Logs the schedule; the run's metric writer."""
  host0 = jax.process_index() == 0
  if host0:
    workdir.mkdir(parents=True, exist_ok=True)
  logging.info('%d training clips, global batch %d: %d steps/epoch, %d steps (%.2f epochs), '
               'eval every %d steps', num_train, config.train.batch_size,
               lengths['steps_per_epoch'], lengths['total_steps'],
               lengths['total_steps'] / lengths['steps_per_epoch'], lengths['eval_every_steps'])
  return metric_writers.create_default_writer(str(workdir), just_logging=not host0)


def _warn_if_slow(model_cfg) -> None:
  if model_cfg.dtype == 'bfloat16' and jax.default_backend() == 'cpu':
    logging.warning('model.dtype=bfloat16 on XLA:CPU runs this model about half as fast as '
                    'float32, even where the CPU has AMX (benchmarks/results/intel-spr-2core/): '
                    '--config.model.dtype=float32 is faster on a CPU.')


def _checkpoint_meta(config, model_cfg, step: int, lengths: dict) -> dict:
  """What a trainer's checkpoint records beside its arrays (a resume checks the last two)."""
  return {'step': step, 'total_steps': lengths['total_steps'],
          'epoch': step / lengths['steps_per_epoch'], 'model': dict(model_cfg.__dict__),
          'fused_update': bool(config.train.fused_update)}


def _check_and_log(mngr, writer, meter, acc, first: int, step: int, eval_s: float) -> None:
  """At a log point: a failed asynchronous save ends the run now; the NaN guard (nothing is
  saved unless every step since `first` was finite); the metrics summed since then and the
  throughput (eval_s: the seconds spent evaluating so far) to the writer."""
  checkpoints.check(mngr)
  summary = summarize(jax.device_get(acc))
  check_finite(summary, first, step, mngr)
  writer.write_scalars(step, {**{f'train/{k}': v for k, v in summary.items()},
                              **meter.scalars(step, eval_s)})


def _train_and_evaluate(config, workdir, stop) -> dict:
  workdir = workdir_lib.path(workdir)
  train_cfg, ck = config.train, config.checkpoint

  # ---- Data sizes first: a missing dataset fails here, before anything is compiled.
  num_train = pipeline.num_examples(config.data, 'train')
  lengths = schedule_lengths(config, num_train)
  total, every = lengths['total_steps'], lengths['eval_every_steps']
  local_batch = sharding.local_batch_size(train_cfg.batch_size, 'train.batch_size')
  writer = _open_run(config, workdir, num_train, lengths)

  # ---- Model, optimizer and sharded state.
  mesh, model = sharding.make_mesh(), make_model(config.model)
  _warn_if_slow(model.cfg)
  evaluator = evaluator_lib.Evaluator(config, model, mesh, workdir)  # checks the data fits the heads
  step_fn, tx, _, state_sh = make_train_step(config, model, mesh, lengths['steps_per_epoch'])
  meter = throughput.Meter(model.cfg, train_cfg.batch_size)  # clips/s, TFLOP/s, MFU in the logs
  mngr = checkpoints.manager(workdir, ck)
  state, meta = restore_or_create_state(config, model, tx, mngr, state_sh)
  if jax.process_index() == 0:  # only now: a resume refused for another config keeps the run's
    (workdir / 'config.json').write_text(config.to_json_best_effort(indent=1))
  start = meta['step']
  if meta.get('total_steps', total) != total:
    logging.warning('the schedule changed since the checkpoint: %d -> %d steps',
                    meta['total_steps'], total)
  parameter_overview.log_parameter_overview(state['params'], include_stats='global',
                                            jax_logging_process=0, msg='Parameters')

  # ---- The loop. Batch i of the (deterministic) input pipeline always feeds update i.
  keys = ('clip', *model.cfg.heads) + ((COLOUR,) if colour_on_device(config.data) else ())
  batches = pipeline.make_train_iterator(
      config.data, local_batch_size=local_batch, seed=config.seed, start_step=start,
      process_index=jax.process_index(), process_count=jax.process_count())
  evaluate = lambda step: evaluator.run(  # with the training records skipped so far
      state['params'], tag=f'step_{step}', writer=writer, step=step,
      bad_train_records=list(batches.bad.found.values()) if batches.bad else [])
  report = periodic_actions.ReportProgress(num_train_steps=total, writer=writer,
                                           every_steps=train_cfg.log_every_steps, every_secs=None)
  acc, acc_from, results, eval_s, t0 = None, start, {}, 0.0, None
  try:
    for step in range(start + 1, total + 1):
      batch = next(batches)
      state, metrics = step_fn(state, sharding.global_batch({k: batch[k] for k in keys}, mesh))
      acc = metrics if acc is None else jax.tree.map(jnp.add, acc, metrics)
      if step == start + 1:  # throughput excludes compilation (the first step) and evaluation
        jax.block_until_ready(metrics)
        t0 = time.perf_counter()
        meter.start(step)
      report(step)
      eval_now = step % every == 0 or step == total
      sync = step % train_cfg.log_every_steps == 0 or step % ck.every_steps == 0 or eval_now
      preempted = stop.requested(mngr, step, sync)  # agreed by all hosts, so all stop together
      if sync or preempted:
        _check_and_log(mngr, writer, meter, acc, acc_from + 1, step, eval_s)
        acc, acc_from = None, step
      if eval_now:
        tick = time.perf_counter()
        with report.timed('eval'):
          results = evaluate(step)
        eval_s += time.perf_counter() - tick
      if step % ck.every_steps == 0 or eval_now or preempted:
        checkpoints.save(mngr, state, _checkpoint_meta(config, model.cfg, step, lengths),
                         metrics={ck.best_metric: results[ck.best_metric]} if eval_now else None)
      if preempted and step < total:
        raise Preempted(f'preempted at step {step} ({preempted}): checkpoint saved in '
                        f'{mngr.directory}; run the same command to continue')
    train_s = time.perf_counter() - t0 - eval_s if t0 else 0.0
    results = results or evaluate(total)  # resumed a finished run: its final parameters again
    writer.flush()
  finally:
    checkpoints.finish(mngr)  # never leave a half-written checkpoint behind us
    mngr.close()

  timed = total - start - 1  # steps after the compiling one
  clips_per_s = timed * train_cfg.batch_size / train_s if timed > 0 and train_s > 0 else 0.0
  return {**results, 'steps': total, 'train_clips_per_s': clips_per_s,
          **meter.summary(clips_per_s), 'workdir': str(workdir)}

r"""Entry point: train (with periodic evaluation), eval (multi-view ensemble) or predict.

  python -m mformer_jax.main --config=configs/demo.py --workdir=/tmp/demo
  python -m mformer_jax.main --config=configs/released.py:k400_motionformer_224_16x4 --workdir=DIR \
      --config.data.data_dir=PREPARED --config.init.imagenet=vit_b16.pth
  python -m mformer_jax.main --config=configs/demo.py --workdir=/tmp/demo --config.mode=eval
  python -m mformer_jax.main --config=configs/demo.py --workdir=/tmp/demo --config.mode=predict \
      --config.video=clip.mp4 --config.predict_output=labelled.mp4 --config.predict_query=0,16,16

(predict_output, optional: the video with the top labels drawn; predict_query, optional: the
clip the model saw with that point's attention map instead; see overlay.py.)
Any config field can be overridden with --config.a.b=value; unknown fields are errors, and so
are overrides that leave the data and the model disagreeing (`config_lib.finalize`).
Multi-process runs (TPU pods, SLURM, the 2-process test) set JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID, or pass --multihost to let JAX discover its peers.
"""
import re
import signal
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags


def _define_flags():
  """The command's flags, defined when it runs (not on import: `result_table` and the rest stay
  importable beside other commands that define --config)."""
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Logs, checkpoints and evaluation reports.')
  flags.DEFINE_bool('multihost', False,
                    'Call jax.distributed.initialize() with auto-detection (TPU pods).')
  flags.mark_flags_as_required(['config', 'workdir'])


def result_table(results: dict, num_classes, wall_s: float) -> str:
  """The short summary printed at the end of a run."""
  rows = []
  for key in ('top1', 'top5', 'verb_top1', 'noun_top1', 'action_top1'):
    if key in results and not (key == 'top5' and 0 < num_classes <= 5):  # trivial then
      rows.append((key.replace('top', 'top-'), f'{100 * results[key]:.1f} %'))
  if num_classes:
    rows.append(('chance (top-1)', f'{100 / num_classes:.1f} %'))
  rows.append(('test videos', f"{results['num_videos']} x {results['views_per_video']} views"
               + (f", {results['num_unreadable']} unreadable" if results['num_unreadable'] else '')))
  if results.get('num_bad_train_records'):
    rows.append(('skipped training records', f"{results['num_bad_train_records']} (listed in "
                 f"{results.get('report_dir', 'the eval report')}/metrics.json)"))
  if results.get('train_clips_per_s'):
    rows.append(('training speed', f"{results['train_clips_per_s']:.1f} clips/s"))
  if results.get('train_model_tflops_per_device'):  # train.throughput: the reference FLOPs
    rows.append(('model TFLOP/s per device', f"{results['train_model_tflops_per_device']:.3g}"))
  if 'train_mfu' in results:
    rows.append(('MFU', f"{100 * results['train_mfu']:.1f} % of "
                        f"{results['train_peak_tflops']:.0f} TFLOP/s (dense bf16 peak)"))
  rows.append(('wall time', f'{wall_s / 60:.1f} min'))
  if 'workdir' in results:
    rows.append(('TensorBoard', f"tensorboard --logdir {results['workdir']}"))
  if 'report_dir' in results:
    rows.append(('confusion matrix', results['report_dir']))
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'  {k:<{width}}  {v}' for k, v in rows)


def _parse_flags(argv):
  """absl's flag parsing, with a bad flag as one `error:` line and exit status 2. A key the
  config does not have makes ml_collections raise AttributeError (three tracebacks) instead of
  a flags error; its message names the key. A tuple field given twice is refused
  (`config_lib.check_repeated_flags`)."""
  from mformer_jax import config_lib  # pylint: disable=g-import-not-at-top  (the configs import it)
  try:
    rest = flags.FLAGS(argv)
    config_lib.check_repeated_flags(argv, flags.FLAGS)
    return rest
  except (flags.Error, config_lib.ConfigError) as e:
    message = str(e)
  except (AttributeError, KeyError) as e:
    text, words = str(e), set(re.findall(r'\w+', str(e)))
    overrides = [a[2:].split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    bad = next((o for o in overrides if set(o.split('.')[1:]) & words), None)
    if bad is None:
      raise
    hint = re.search(r'Did you mean "([^"]+)"', text)
    message = (f'--{bad}: the config has no such key (unknown keys are errors'
               f'{"; did you mean " + repr(hint.group(1)) if hint else ""})')
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _stop_at_signals(mode: str) -> None:
  """SIGTERM / SIGINT in eval or predict mode: nothing to save, so stop at once, with the line and
  exit status of a preempted trainer (run.preemption) rather than a crash report or a
  KeyboardInterrupt traceback. (Training installs its own handlers: preemption.Stop.)"""

  def stop(signum, frame):
    del frame
    from mformer_jax.run import preemption  # pylint: disable=g-import-not-at-top
    print(f'stopped ({signal.Signals(signum).name}) before {mode} finished: nothing more is '
          'written; run the same command to start it again', file=sys.stderr, flush=True)
    sys.exit(preemption.EXIT_STATUS)

  for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, stop)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  start = time.perf_counter()
  if flags.FLAGS.config.mode != 'train':
    _stop_at_signals(flags.FLAGS.config.mode)
  # Before anything touches a device: TF (tf.data) must not claim accelerators, and
  # jax.distributed must be initialised before the first JAX computation.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  from mformer_jax.run import checkpoints, sharding  # pylint: disable=g-import-not-at-top
  sharding.initialize_distributed(force=flags.FLAGS.multihost)
  checkpoints.quiet_orbax()
  import jax  # pylint: disable=g-import-not-at-top
  import mformer_jax  # pylint: disable=g-import-not-at-top
  mformer_jax.check_jax_version(jax.__version__)
  from mformer_jax import config_lib, errors  # pylint: disable=g-import-not-at-top
  from mformer_jax.eval import evaluator, predict  # pylint: disable=g-import-not-at-top
  from mformer_jax import train  # pylint: disable=g-import-not-at-top
  from mformer_jax.run import preemption  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import ModelConfig, head_prefix  # pylint: disable=g-import-not-at-top

  config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
  logging.info('%s on %d devices (%d processes), workdir %s', config.mode, jax.device_count(),
               jax.process_count(), workdir)
  host0 = jax.process_index() == 0
  try:
    config_lib.finalize(config)
    if config.mode == 'train':
      results = train.train_and_evaluate(config, workdir)
    elif config.mode == 'eval':
      results = evaluator.evaluate_checkpoint(config, workdir)
    else:  # predict (config_lib.finalize refuses any other mode in one line)
      def show(result):  # the answer first, before any file is written
        for head, top in result.items():
          if host0:
            print(f'{config.video}: top-{len(top)} {head_prefix(head).rstrip("_")}')
            for name, p in top:
              print(f'  {p:6.3f}  {name}', flush=True)
      predict.predict(config, workdir, report=show)
      if host0 and config.predict_output:
        print(f'{config.video}: labelled video -> {config.predict_output}')
      return
  except train.Preempted as e:  # not a failure: the same command continues
    print(e, file=sys.stderr)
    sys.exit(preemption.EXIT_STATUS)
  except errors.UserError as e:  # expected failures: one clear message, not a traceback
    errors.exit_with(e)
  if host0:
    print(f'\n{config.experiment} ({config.mode}):\n'
          + result_table(results, ModelConfig.from_config(config.model).heads.get('label', 0),
                         time.perf_counter() - start), flush=True)


if __name__ == '__main__':
  _define_flags()
  app.run(main, flags_parser=_parse_flags)

r"""Training cost (appendix .1.5): what a config's full recipe costs on the devices at hand.

  python -m mformer_jax.analysis.cost --config=configs/k400_base.py [--config.x=y] \
      [--batch=1] [--steps=3] [--mfu [--peak_tflops=989]] [--out=cost.json]

Runs the trainer's own step (`train.step.make_train_step`) for a few steps at `--batch` clips per device (compile
excluded; random clips of the config's shape), then scales the measured time per clip to the
recipe: steps per epoch and total steps as the trainer derives them (training set size from the
prepared data when `data.data_dir` is set, else the dataset's nominal size), and device-hours =
total clips x seconds per clip / 3600. That assumes the time per clip holds at the recipe's
batch (throughput usually grows with batch, so on an accelerator this is an upper bound).
`--mfu` adds the model-FLOP utilisation of the measured step (`train.throughput`'s model FLOPs
per training clip, over `--peak_tflops` per device) and the ideal device-hours at 100 %.
The paper's GPU-hours are printed beside ours where the config corresponds.
"""
import json
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from mformer_jax import config_lib, errors
from mformer_jax.errors import ConfigError
from mformer_jax.model import init_variables, make_model
from mformer_jax.run import sharding
from mformer_jax.train import optim, throughput
from mformer_jax.train.step import create_train_state, make_train_step

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags; defined when run as a script, so that importing this module next to
  another absl command (tests import several) defines nothing."""
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
  flags.DEFINE_integer('batch', 1, 'Clips per device in the measured steps.')
  flags.DEFINE_integer('steps', 3, 'Measured steps (after one compiling step).')
  flags.DEFINE_bool('mfu', False, 'Report model-FLOP utilisation (needs --peak_tflops).')
  flags.DEFINE_float('peak_tflops', 0.0, 'Dense peak of one device, TFLOP/s, for --mfu '
                     "(0: the device's, where train.throughput.PEAK_TFLOPS knows it).")
  flags.DEFINE_string('out', '', 'Also write the report as JSON here.')


# Training-set sizes when no prepared data is at hand. SSv2 is the official train list; the
# others are nominal (YouTube attrition makes real copies smaller: prepare the data for exact).
NOMINAL_TRAIN = {'kinetics400': 240_000, 'kinetics600': 392_000, 'ssv2': 168_913,
                 'epic_kitchens': 67_217}

# Appendix .1.5 (GPU hours), keyed by (dataset, attention, approx, landmarks, frames, crop).
PAPER_GPU_HOURS = {
    ('kinetics400', 'trajectory', 'none', None, 16, 224): ('Mformer-B', 384),
    ('kinetics400', 'trajectory', 'none', None, 32, 224): ('Mformer-L', 1334),
    ('kinetics400', 'trajectory', 'none', None, 16, 336): ('Mformer-HR', 1376),
    ('kinetics400', 'trajectory', 'orthoformer', 16, 16, 224): ('Orthoformer, 16 prototypes', 384),
    ('kinetics400', 'trajectory', 'orthoformer', 64, 16, 224): ('Orthoformer, 64 prototypes', 800),
    ('kinetics400', 'trajectory', 'orthoformer', 128, 16, 224): ('Orthoformer, 128 prototypes',
                                                                  1216),
    ('kinetics400', 'divided', 'none', None, 16, 224): ('TimeSformer-B (its paper)', 416),
}


def paper_hours(config):
  """(name, GPU hours) of the paper's model this config corresponds to, or None."""
  m = config.model
  landmarks = m.num_landmarks if m.approx == 'orthoformer' else None
  return PAPER_GPU_HOURS.get((config.data.name, m.attention, m.approx, landmarks, m.num_frames,
                              m.img_size))


def num_train_examples(config) -> tuple[int, str]:
  """(training clips, where the number comes from)."""
  # Here, not at the top: the pipeline brings TensorFlow, which measuring a step does not need.
  from mformer_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  if config.data.source == 'synthetic' or config.data.data_dir:
    return pipeline.num_examples(config.data, 'train'), 'data'
  if config.data.name not in NOMINAL_TRAIN:
    raise ConfigError(f'no nominal size for {config.data.name!r}: set --config.data.data_dir')
  return NOMINAL_TRAIN[config.data.name], 'nominal'


def measure_step(config, batch_per_device: int, steps: int) -> dict:
  """Median seconds of the trainer's step (`train.step.make_train_step`: its shardings over all
  local devices, its optimizer) at `batch_per_device` random clips on every local device."""
  model = make_model(config.model)
  mesh = sharding.make_mesh()
  batch_size = batch_per_device * jax.device_count()
  step, tx, _, state_sh = make_train_step(config, model, mesh, steps_per_epoch=1000)
  c = config.model
  rng = np.random.default_rng(0)
  batch = {'clip': rng.uniform(-1, 1, (batch_size, c.num_frames, c.img_size, c.img_size, 3))
                      .astype(np.float32)}
  batch.update({head: rng.integers(0, n, batch_size) for head, n in model.cfg.heads.items()})
  batch = sharding.global_batch(batch, mesh)
  state = jax.jit(lambda k: create_train_state(init_variables(model, k)['params'], tx, config.seed),
                  out_shardings=state_sh)(jax.random.key(0))
  state, metrics = step(state, batch)                 # compiles
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return {'batch': batch_size, 'devices': jax.device_count(),
          'device': jax.devices()[0].device_kind, 'step_s': sorted(times)[len(times) // 2],
          'steps_timed': steps}


def estimate(config, measured: dict, num_train: int, *, peak_tflops: float = 0.0) -> dict:
  """The recipe's steps and device-hours from a measured step (pure arithmetic, tested)."""
  t = config.train
  spe = optim.steps_per_epoch(num_train, t.batch_size)
  total_steps = round(t.num_epochs * spe)
  clips = total_steps * t.batch_size
  # Device-seconds per clip: every device works for the whole step.
  per_clip = measured['step_s'] * measured['devices'] / measured['batch']
  out = {'train_clips': num_train, 'global_batch': t.batch_size, 'steps_per_epoch': spe,
         'epochs': t.num_epochs, 'total_steps': total_steps, 'device_s_per_clip': per_clip,
         'device_hours': clips * per_clip / 3600}
  if peak_tflops:
    train_flop_per_clip = throughput.model_flops_per_clip(config.model)
    out['train_gflop_per_clip'] = train_flop_per_clip / 1e9
    out['mfu'] = train_flop_per_clip / per_clip / (peak_tflops * 1e12)
    out['ideal_device_hours'] = clips * train_flop_per_clip / (peak_tflops * 1e12) / 3600
  return out


def report(config, measured, est, paper) -> str:
  rows = [('model', f'{config.experiment}: {config.model.attention} attention, '
                    f'{config.model.num_frames} x {config.model.img_size}, dtype '
                    f'{config.model.dtype}'),
          ('measured', f"{measured['step_s']:.3f} s/step at {measured['batch']} clips on "
                       f"{measured['devices']} x {measured['device']} (median of "
                       f"{measured['steps_timed']}, compile excluded)"),
          ('recipe', f"{est['train_clips']} clips ({est['source']}), global batch "
                     f"{est['global_batch']}: {est['steps_per_epoch']} steps/epoch x "
                     f"{est['epochs']:g} epochs = {est['total_steps']} steps"),
          ('cost', f"{est['device_hours']:.1f} device-hours ({est['device_s_per_clip']:.3f} "
                   'device-s per clip)')]
  if 'mfu' in est:
    rows.append(('utilisation', f"MFU {100 * est['mfu']:.1f} % ({est['train_gflop_per_clip']:.0f}"
                                f" GFLOP per training clip); at 100 %: "
                                f"{est['ideal_device_hours']:.1f} device-hours"))
  rows.append(('paper', f'{paper[0]}: {paper[1]} GPU-hours (appendix .1.5)' if paper else
               'no corresponding model in appendix .1.5'))
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'  {k:<{width}}  {v}' for k, v in rows)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = FLAGS.config
  try:
    peak = FLAGS.peak_tflops if FLAGS.peak_tflops > 0 else throughput.peak_tflops()
    if FLAGS.mfu and not peak:
      raise errors.ConfigError(f'--mfu needs --peak_tflops: no known dense peak for a '
                               f'{jax.devices()[0].device_kind!r} (train.throughput.PEAK_TFLOPS)')
    num_train, source = num_train_examples(config_lib.finalize(config))
  except errors.UserError as e:
    errors.exit_with(e)
  measured = measure_step(config, FLAGS.batch, FLAGS.steps)
  est = {**estimate(config, measured, num_train, peak_tflops=peak if FLAGS.mfu else 0.0),
         'source': source}
  paper = paper_hours(config)
  print(f'\nTraining cost ({config.experiment}):\n' + report(config, measured, est, paper),
        flush=True)
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'measured': measured, 'estimate': est,
                 'paper': dict(zip(('model', 'gpu_hours'), paper)) if paper else None}, f,
                indent=1)


if __name__ == '__main__':
  define_flags()
  app.run(main)

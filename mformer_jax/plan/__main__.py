"""`python -m mformer_jax.plan`: the command (the package's docstring says what it does)."""
import json
import re

from mformer_jax.plan import libtpu

# Before anything imports jax: it reads JAX_PLATFORMS on import, and finds libtpu through
# TPU_LIBRARY_PATH; no other process of this package points jax at libtpu.
LIBTPU = libtpu.environment()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mformer_jax import config_lib, errors  # noqa: E402
from mformer_jax.errors import ConfigError  # noqa: E402
from mformer_jax.plan import probe, report, slices  # noqa: E402
# pylint: enable=g-import-not-at-top,wrong-import-position


def _define_flags():
  """Defined when run as the command, not on import (tests import the package's modules)."""
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
  flags.DEFINE_string('topology', None, 'TPU slice, e.g. v5e:4x4, v4:2x2x4, v5p:2x4x4.')
  flags.DEFINE_string('accelerator', None,
                      "gcloud's accelerator type instead, e.g. v5litepod-16, v4-32.")
  flags.DEFINE_string('batch_per_chip', None,
                      "Clips (eval: views) per chip, or 'max' for the largest that fits; default "
                      "the paper's (train.batch_size / config_lib.PAPER_DEVICES).")
  flags.DEFINE_string('global_batch', None,
                      "Global batch instead (a multiple of the chips), or 'config': the config's "
                      'train.batch_size (eval: eval.batch_size), what a run would use.')
  flags.DEFINE_enum('mode', None, ['train', 'eval'],
                    "The training or evaluation step; default: eval if config.mode is 'eval'.")
  flags.DEFINE_string('out', None, 'Write the plan as JSON here.')
  flags.mark_flags_as_required(['config'])


def batch_per_chip(config, chips: int, mode: str, per_chip=None, global_batch=None):
  """--batch_per_chip / --global_batch -> clips per chip (or 'max'); default the paper's."""
  if global_batch is not None:
    if per_chip is not None:
      raise ConfigError('give --batch_per_chip or --global_batch, not both')
    if global_batch == 'config':
      global_batch = (config.train if mode == 'train' else config.eval).batch_size
    elif not re.fullmatch(r'[1-9]\d*', global_batch):
      raise ConfigError(f"--global_batch={global_batch!r}: a positive whole number or 'config'")
    if int(global_batch) % chips:
      raise ConfigError(f'global batch {global_batch} does not divide over the {chips} chips; '
                        'give a multiple of the chip count')
    return int(global_batch) // chips
  if per_chip == 'max':
    return 'max'
  if per_chip is None:
    if config.train.batch_size % config_lib.PAPER_DEVICES:
      raise ConfigError(f'train.batch_size={config.train.batch_size} is not a per-GPU batch of '
                        f"the paper's {config_lib.PAPER_DEVICES} GPUs; give --batch_per_chip")
    return config.train.batch_size // config_lib.PAPER_DEVICES
  if not re.fullmatch(r'[1-9]\d*', per_chip):
    raise ConfigError(f"--batch_per_chip={per_chip!r}: a positive whole number or 'max'")
  return int(per_chip)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  try:
    if (f.topology is None) == (f.accelerator is None):
      raise ConfigError('give one of --topology=v5e:4x4 or --accelerator=v5litepod-16')
    topology = (slices.check_topology(f.topology) if f.topology else
                slices.accelerator_topology(f.accelerator))
    libtpu.require(LIBTPU)
    devices = probe.topology_devices(topology)
    mode = f.mode or ('eval' if f.config.mode == 'eval' else 'train')
    batch = batch_per_chip(f.config, len(devices), mode, f.batch_per_chip, f.global_batch)
    config_lib.finalize(f.config)
    if batch == 'max':
      result = probe.search_max(f.config, topology, mode, devices)
    else:
      result = probe.plan(f.config, topology, batch, mode, devices)
    if f.out:
      with open(f.out, 'w') as out:
        json.dump(result, out, indent=1)
    print(report.table(result), flush=True)
    if not result['fits']:
      raise ConfigError(report.advice(result, f.config) if result['hbm_bytes_per_chip'] else
                        f"the compiler states no HBM limit for {result['device_kind']!r}; cannot "
                        'say it fits')
  except errors.UserError as e:
    errors.exit_with(e)


if __name__ == '__main__':
  _define_flags()
  app.run(main)

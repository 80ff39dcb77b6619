"""`python -m mformer_jax.convert`: an official checkpoint file -> a workdir checkpoint.

Writes DIR/checkpoints/0 (params + metadata with the model config and, for a released model,
its class names), which everything reading a workdir reads: `mf.load(DIR)`, `--config.init.checkpoint=DIR`, eval, predict, features.
    python -m mformer_jax.convert --input=k400_motionformer_224_16x4.pyth --output=/ckpts/k400_mf
    python -m mformer_jax.convert --input=k400_motionformer_224_16x4 --output=DIR  # downloaded
    python -m mformer_jax.convert --input=x.npz --output=DIR --override=num_heads=12,img_size=336
    python -m mformer_jax.convert --input=x.pth --output=DIR \
        --official_config=configs/K400/motionformer_224_16x4.yaml
"""
import argparse
import os
import sys

import jax
import numpy as np

from mformer_jax import config_lib, errors
from mformer_jax.errors import UserError
from mformer_jax.run import checkpoints, workdir
from mformer_jax.weights import labels, official, released


def main(argv=None):
  ap = argparse.ArgumentParser(prog='python -m mformer_jax.convert', description=__doc__.split('\n')[0])
  ap.add_argument('--input', required=True,
                  help='official .pyth/.pth or .npz state dict, or a released name (downloaded)')
  ap.add_argument('--output', required=True,
                  help='workdir for the checkpoint (OUTPUT/checkpoints/0; none there yet)')
  ap.add_argument('--override', default='', help='ModelConfig fields, e.g. num_heads=12,img_size=336')
  ap.add_argument('--export_npz', default='', help='also write the official-format state dict here')
  ap.add_argument('--official_config', default='',
                  help="official YAML config (their configs/); replaces the checkpoint's own cfg")
  args = ap.parse_args(argv)
  try:
    workdir.check_folder(args.output, 'write the checkpoint to')  # before reading anything
    fields = (official.config_from_official(official.read_official_config(args.official_config))
              if args.official_config else {})
    # Typed by ModelConfig's fields and range-checked (num_heads=four is one line, not a
    # TypeError at trace time).
    overrides = {**fields, **config_lib.model_overrides(args.override, file='--override')}
    model, variables = released.read(  # a released name: its cached download
        args.input, lambda path: official.read_official(path, overrides or None))
    cfg, params = model.cfg, variables['params']
    checkpoints.save_params(args.output, params, cfg, converted_from=(
        args.input if released.release_name(args.input) else os.path.abspath(args.input)),
                            class_names=labels.of_source(args.input, cfg.heads))
  except UserError as e:
    return errors.report(e)
  n = sum(x.size for x in jax.tree.leaves(params))
  print(f'converted {args.input}: {cfg.attention} attention, {cfg.num_frames} frames, '
        f'{n / 1e6:.2f}M parameters -> {args.output} (a workdir: checkpoints/0)')
  if args.export_npz:
    np.savez(args.export_npz, **official.export_official({'params': params}))
    print(f'exported official state dict -> {args.export_npz}')
  return 0


if __name__ == '__main__':
  checkpoints.quiet_orbax()
  sys.exit(main())

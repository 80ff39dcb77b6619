"""`python -m mformer_jax.export`: a trained or released model -> an inference artifact that runs
without this code, with a symbolic batch dimension (docs/export.md).

    python -m mformer_jax.export --source=k400_motionformer_224_16x4.pyth --format=stablehlo \
        --out=k400.stablehlo
    python -m mformer_jax.export --source=WORKDIR --format=savedmodel --out=k400_savedmodel
    python -m mformer_jax.export --source=CONVERTED_DIR --format=onnx --out=k400.onnx

The input is a float32 (B, T, S, S, 3) clip batch, normalised as mformer_jax.data.to_model_input
makes it; the outputs are `logits` (Epic-Kitchens: `logits_verb`, `logits_noun`) and the
pre-logits `features`.
"""
import argparse
import sys

from mformer_jax import errors
from mformer_jax.errors import UserError
from mformer_jax.serving import artifact


def main(argv=None):
  ap = argparse.ArgumentParser(prog='python -m mformer_jax.export',
                               description=__doc__.split('\n')[0])
  ap.add_argument('--source', required=True,
                  help='a workdir, a python -m mformer_jax.convert folder, or an official '
                       '.pyth/.pth/.npz file')
  ap.add_argument('--format', required=True, choices=artifact.FORMATS)
  ap.add_argument('--out', required=True,
                  help='the file to write (stablehlo, onnx) or the new folder (savedmodel)')
  ap.add_argument('--platforms', default='cpu',
                  help='stablehlo and savedmodel: where the artifact runs, comma-separated '
                       f'({", ".join(artifact.PLATFORMS)}); the ONNX graph runs anywhere')
  args = ap.parse_args(argv)
  try:
    written = artifact.write(args.source, args.format, args.out, args.platforms.split(','))
  except UserError as e:
    return errors.report(e, one_line=True)
  print(f'wrote {written.path} ({args.format}, {written.size_bytes / 2**20:.1f} MiB): input '
        f'clip (B, {written.cfg.num_frames}, {written.cfg.img_size}, {written.cfg.img_size}, 3) '
        f'float32; outputs {", ".join(written.outputs)}')
  return 0


if __name__ == '__main__':
  sys.exit(main())

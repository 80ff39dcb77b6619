r"""DAVIS-2017 semi-supervised label propagation with J&F (paper appendix Table 2): the command.

  python -m mformer_jax.analysis.davis --davis_root=DAVIS --checkpoint=CKPT --out=OUT
  python -m mformer_jax.analysis.davis --davis_root=DAVIS --vit=dino_vitbase16_pretrain.pth \
      --protocol=dino --out=OUT                                  # an image ViT, DINO's protocol
  python -m mformer_jax.analysis.davis --write_synthetic=8 --davis_root=TWIN   # offline twin
  python -m mformer_jax.analysis.davis --davis_root=TWIN --features=oracle --out=OUT

Frames go to the features at their own aspect ratio (--short_side, the long side floored to a
multiple of the patch size, or of 64 under --protocol=dino; --size_multiple sets it); --square
squeezes them instead. The protocol presets (`label_propagation.PROTOCOLS`) are videowalk's and
DINO's; --topk, --context, --radius, --temperature override them. Each model source keeps its
pixel convention: a Motionformer [-1, 1], an image ViT the ImageNet mean and std.

Writes OUT/<seq>/<frame>.png (palette ids, the official results layout), the official
global_results-<subset>.csv and per-sequence_results-<subset>.csv, OUT/overlays/<seq>.png
and OUT/results.json. The metrics are `davis_metrics.py`, the folder layout and the twin
`davis_layout.py`, the propagation `label_propagation.py`.
"""

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import jax
import numpy as np
from PIL import Image

from mformer_jax import config_lib, data, errors, weights
from mformer_jax.analysis import label_propagation as lp
from mformer_jax.analysis.davis_layout import (load_sequence, save_ids,
                                               save_overlay_strip, sequence_names,
                                               write_synthetic)
from mformer_jax.analysis.davis_metrics import VOID, evaluate_sequence, results_csvs, summarise
from mformer_jax.errors import ConfigError, UserError
from mformer_jax.model import init_variables, make_model
from mformer_jax.weights import vit


def _resize(frames, hw):
  if frames.shape[1:3] == tuple(hw):
    return frames
  return np.stack([np.array(Image.fromarray(f).resize(hw[::-1], Image.BILINEAR)) for f in frames])


def _overrides(text):
  """--model_override 'trajectory_impl=chunked,dtype=bfloat16' -> {field: value}, each value of
  its ModelConfig field's type (config_lib.model_overrides: an unknown field, a value that does
  not convert or is out of range is a ConfigError)."""
  return config_lib.model_overrides(text, file='--model_override')


def _load_model(args):
  """(model, variables, (pixel mean, std)) of the chosen model source; each keeps its own pixel
  convention (`data.to_model_input`), which --pixel_mean/--pixel_std override. Per-block
  parameters (scan_blocks=False): the per-block sown intermediates name the layers."""
  overrides = _overrides(args.model_override)
  if args.vit:
    model, variables = vit.load_timm_vit(args.vit, num_heads=args.vit_heads, overrides=overrides)
    pixels = (data.IMAGENET_MEAN, data.IMAGENET_STD)
  elif args.checkpoint:
    model, variables = weights.load_model(args.checkpoint, **overrides, scan_blocks=False)
    pixels = (data.PIXEL_MEAN, data.PIXEL_STD)
  else:  # an untrained model of the config: the baseline
    config = config_lib.load_config(args.init_config)
    model = make_model(dict(config.model.to_dict(), **overrides, scan_blocks=False))
    variables = init_variables(model, jax.random.key(args.seed),
                               random_tubelet=config.init.random_tubelet)
    pixels = (data.PIXEL_MEAN, data.PIXEL_STD)
  mean = _floats(args.pixel_mean, '--pixel_mean') or pixels[0]
  std = _floats(args.pixel_std, '--pixel_std') or pixels[1]
  return model, variables, (tuple(mean), tuple(std))


def _floats(text, flag):
  if not text:
    return None
  try:
    values = [float(v) for v in text.split(',')]
  except ValueError:
    values = []
  if len(values) != 3:
    raise ConfigError(f'{flag}={text!r}: expected three comma-separated numbers (R,G,B)')
  return values


def _feature_fn(args):
  """(fn(sequence, (H, W)) -> (T, gh, gw, D) features, cell size in pixels, pixel convention)."""
  if args.features == 'model':
    model, variables, (mean, std) = _load_model(args)
    def fn(seq, hw):
      return lp.model_features(model, variables, _resize(seq.frames, hw), layer=args.layer,
                               tubelets=args.tubelets, batch_size=args.batch_size, mean=mean,
                               std=std)
    return fn, model.cfg.patch_size, dict(pixel_mean=mean, pixel_std=std)
  def fn(seq, hw):
    if args.features == 'pixels':
      return lp.pixel_features(_resize(seq.frames, hw), args.stride)
    if len(seq.annotations) != len(seq.frames):
      raise errors.InputError(f'sequence {seq.name!r}: the oracle needs an annotation for every '
                              'frame')
    return lp.oracle_features(seq.annotations, seq.num_objects,
                              (hw[0] // args.stride, hw[1] // args.stride))
  return fn, args.stride, {}


def protocol_of(args):
  """The preset of --protocol with every propagation flag given on the command line on top."""
  flags = {k: getattr(args, k) for k in ('topk', 'context', 'radius', 'temperature')
           if getattr(args, k) is not None}
  return dataclasses.replace(lp.PROTOCOLS[args.protocol], **flags)


def size_multiple(args, protocol, cell):
  """The multiple the long side is floored to. --size_multiple as given (0: the patch size; the
  patch must divide it); else the protocol's (0: the patch size; DINO: 64) where the patch
  divides it, else the patch size. DINO's 64 rounds for its patches 8 and 16; for a patch that
  does not divide 64 (DINOv2's 14) a common multiple is far too coarse (lcm(14, 64) = 448
  floors DAVIS's 854 long side to 448, below its 480 short side), so the long side keeps every
  whole patch instead. results.json records the multiple used."""
  if args.size_multiple is not None:
    return args.size_multiple or cell
  multiple = protocol.size_multiple or cell
  return multiple if multiple % cell == 0 else cell


def _sequence(args, seq, hw, features, protocol, cell):
  """Propagates the first frame's labels through one sequence; writes its PNGs and overlay
  strip. Returns (predicted ids (T, H, W), its J and F or None when unscored, a log line)."""
  feats = features(seq, hw)
  first = lp.first_labels(seq.annotations[0], seq.num_objects, feats.shape[1:3], protocol)
  pred = lp.to_ids(lp.propagate(feats, first, protocol), seq.frames.shape[1:3], protocol, cell)
  pred[0] = np.where(seq.annotations[0] == VOID, 0, seq.annotations[0])  # the given frame
  out = pathlib.Path(args.out)
  for frame_name, ids in zip(seq.frame_names, pred):
    save_ids(ids, out / seq.name / f'{frame_name}.png')
  scored = len(seq.annotations) == len(seq.frames)
  save_overlay_strip(out / 'overlays' / f'{seq.name}.png', seq.frames, pred,
                     seq.annotations if scored else None, num=args.overlay_frames)
  line = (f'{seq.name}: {seq.num_objects} objects, {len(seq.frames)} frames at '
          f'{hw[1]}x{hw[0]} ({feats.shape[2]}x{feats.shape[1]} cells)')
  if not scored:
    return pred, None, line
  j, f = evaluate_sequence(seq.annotations, pred)
  return pred, (j, f), line + f', J {np.nanmean(j):.3f} F {np.nanmean(f):.3f}'


def run(args):
  names = sequence_names(args.davis_root, args.subset)
  if args.sequences:
    unknown = sorted(set(args.sequences.split(',')) - set(names))
    if unknown:
      raise errors.InputError(f'--sequences {unknown} are not in ImageSets/2017/{args.subset}.txt')
    names = args.sequences.split(',')
  protocol = protocol_of(args)
  features, cell, pixels = _feature_fn(args)
  multiple = size_multiple(args, protocol, cell)
  lp.input_size((cell, cell), args.short_side, cell, multiple, True)  # fail early
  per_sequence, sizes, start = {}, {}, time.time()
  for i, name in enumerate(names):
    seq = load_sequence(args.davis_root, name)
    sizes[name] = lp.input_size(seq.frames.shape[1:3], args.short_side, cell, multiple,
                                args.square)
    _, scores, line = _sequence(args, seq, sizes[name], features, protocol, cell)
    if scores is not None:
      per_sequence[name] = scores
    print(f'[{i + 1}/{len(names)}] {line} ({time.time() - start:.0f} s)', flush=True)
  out = pathlib.Path(args.out)
  if not per_sequence:
    print(f'no annotations beyond the first frame: predictions in {out}, nothing scored')
    return None
  summary = summarise(per_sequence)
  glob, per_object = results_csvs(summary)
  (out / f'global_results-{args.subset}.csv').write_text(glob)
  (out / f'per-sequence_results-{args.subset}.csv').write_text(per_object)
  settings = {k: v for k, v in vars(args).items() if k != 'write_synthetic'}
  settings.update(pixels)
  (out / 'results.json').write_text(json.dumps(
      dict(settings=settings, protocol=dict(name=args.protocol, **dataclasses.asdict(protocol)),
           size_multiple=multiple, input_sizes=sizes, **summary), indent=1, default=float))
  print(glob + per_object, end='')
  return summary


def parse_args(argv=None):
  p = argparse.ArgumentParser(prog='python -m mformer_jax.analysis.davis',
                              description=__doc__.split('\n')[0])
  p.add_argument('--davis_root', required=True, help='DAVIS-2017 folder (or where to write a twin)')
  p.add_argument('--write_synthetic', type=int, default=0,
                 help='write a synthetic DAVIS-layout twin of N sequences to --davis_root, exit')
  p.add_argument('--synthetic_frames', type=int, default=16)
  p.add_argument('--synthetic_size', type=int, default=64, help='scene side (the frame width)')
  p.add_argument('--synthetic_height', type=int, default=0,
                 help='keep the middle rows of each scene (0: square frames)')
  p.add_argument('--synthetic_objects', type=int, default=3)
  p.add_argument('--out', help='results folder')
  p.add_argument('--subset', default='val')
  p.add_argument('--sequences', default='', help='comma-separated subset of the sequences')
  p.add_argument('--features', default='model', choices=('model', 'oracle', 'pixels'),
                 help='model tokens; oracle = ground-truth labels (sanity check); pixels = RGB')
  p.add_argument('--checkpoint', default='', help='Motionformer: trainer workdir, convert folder, '
                 '.pyth/.npz')
  p.add_argument('--init_config', default='', help='untrained model of this config (baseline)')
  p.add_argument('--vit', default='', help='image ViT: a timm-format state dict (.pth/.npz)')
  p.add_argument('--vit_heads', type=int, default=0,
                 help='attention heads of --vit (0: embed dim / 64, the ViT convention)')
  p.add_argument('--pixel_mean', default='', help='R,G,B (default: the model source\'s own)')
  p.add_argument('--pixel_std', default='', help='R,G,B (default: the model source\'s own)')
  p.add_argument('--seed', type=int, default=0, help='initialisation of --init_config')
  p.add_argument('--model_override', default='',
                 help='model config fields, e.g. trajectory_impl=chunked,dtype=bfloat16')
  p.add_argument('--layer', type=int, default=-1,
                 help='block whose tokens are the features (-1: last, after the final norm)')
  p.add_argument('--tubelets', default='repeat', choices=('repeat', 'sliding'))
  p.add_argument('--short_side', type=int, default=480,
                 help='feature input short side (0: the frame\'s own, floored to the patch size); '
                 'the long side keeps the aspect ratio, floored to --size_multiple')
  p.add_argument('--size_multiple', type=int, default=None,
                 help='the long side is floored to a multiple of this (0: the patch size); '
                 "default: the protocol's (videowalk: the patch size, dino: 64, or the patch "
                 'size where it does not divide 64)')
  p.add_argument('--square', action='store_true',
                 help='squeeze frames to short_side x short_side instead')
  p.add_argument('--stride', type=int, default=8, help='cell size of oracle/pixels features')
  p.add_argument('--batch_size', type=int, default=4, help='clips per forward pass (>= 1)')
  p.add_argument('--protocol', default='videowalk', choices=('videowalk', 'dino'),
                 help='propagation preset; the four flags below override its values')
  p.add_argument('--topk', type=int, default=None)
  p.add_argument('--context', type=int, default=None, help='previous frames in the queue')
  p.add_argument('--radius', type=float, default=None, help='neighbourhood, in feature cells')
  p.add_argument('--temperature', type=float, default=None)
  p.add_argument('--overlay_frames', type=int, default=6)
  return p.parse_args(argv)


def check_args(args):
  """What argparse cannot say in one line: ValueError naming the conflict."""
  if args.write_synthetic:
    return
  if not args.out:
    raise ConfigError('--out is required')
  sources = [f for f in ('checkpoint', 'init_config', 'vit') if getattr(args, f)]
  if args.features == 'model' and len(sources) != 1:
    given = ' together with '.join(f'--{f}' for f in sources) or 'none of them'
    raise ConfigError('--features=model needs exactly one model source, --checkpoint '
                      '(Motionformer), --init_config (untrained) or --vit (image ViT); '
                      f'got {given}')
  if args.batch_size < 1:
    raise ConfigError(f'--batch_size={args.batch_size} must be >= 1')
  if args.size_multiple is not None and args.size_multiple < 0:
    raise ConfigError(f'--size_multiple={args.size_multiple} must be >= 0 (0: the patch size)')


def main(argv=None):
  args = parse_args(argv)
  try:
    check_args(args)
    if args.write_synthetic:
      names = write_synthetic(args.davis_root, args.write_synthetic, seed=args.seed,
                              num_frames=args.synthetic_frames, size=args.synthetic_size,
                              height=args.synthetic_height, num_objects=args.synthetic_objects)
      print(f'wrote {len(names)} sequences to {args.davis_root}')
      return 0
    run(args)
  except UserError as e:
    return errors.report(e, prog='davis', one_line=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())

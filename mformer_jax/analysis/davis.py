r"""DAVIS-2017 semi-supervised label propagation with J&F (paper appendix Table 2).

  python -m mformer_jax.analysis.davis --davis_root=DAVIS --checkpoint=CKPT --out=OUT
  python -m mformer_jax.analysis.davis --davis_root=DAVIS --vit=dino_vitbase16_pretrain.pth \
      --protocol=dino --out=OUT                                  # an image ViT, DINO's protocol
  python -m mformer_jax.analysis.davis --write_synthetic=8 --davis_root=TWIN   # offline twin
  python -m mformer_jax.analysis.davis --davis_root=TWIN --features=oracle --out=OUT

Frames go to the features at their own aspect ratio (--short_side, the long side floored to a
multiple of the patch size, or of 64 under --protocol=dino); --square squeezes them instead.
The protocol presets (`label_propagation.PROTOCOLS`) are videowalk's and DINO's; --topk,
--context, --radius, --temperature override them. Each model source keeps its pixel
convention: a Motionformer [-1, 1], an image ViT the ImageNet mean and std.

Writes OUT/<seq>/<frame>.png (palette ids, the official results layout), the official
global_results-<subset>.csv and per-sequence_results-<subset>.csv, OUT/overlays/<seq>.png
and OUT/results.json. This module holds the layout reader, the metrics and the CLI; the
propagation is `label_propagation.py`. The metrics follow the official `davis2017-evaluation`
tool (`db_eval_iou`, `db_eval_boundary`, `db_statistics`, its CSVs), rewritten in numpy and
checked against values of the official code on stored masks (tests/data/README.md).
"""

import argparse
import ast
import dataclasses
import json
import pathlib
import runpy
import sys
import time
import warnings

import numpy as np
from PIL import Image

from mformer_jax import errors
from mformer_jax.errors import ConfigError, MissingInputError, UserError

BOUND_TH = 0.008  # Boundary tolerance as a fraction of the image diagonal (official default).


def _frames(x, name):
  x = np.asarray(x).astype(bool)
  if x.ndim == 2:
    x = x[None]
  if x.ndim != 3:
    raise ValueError(f'{name} must be (T, H, W) or (H, W), got shape {x.shape}')
  return x


def jaccard(gt, pred):
  """Region similarity J per frame, (T, H, W) bool each -> (T,); an empty union scores 1."""
  gt, pred = _frames(gt, 'gt'), _frames(pred, 'pred')
  if gt.shape != pred.shape:
    raise ValueError(f'gt {gt.shape} and pred {pred.shape} differ in shape')
  inter = np.sum(gt & pred, axis=(-2, -1))
  union = np.sum(gt | pred, axis=(-2, -1))
  return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def boundary_map(seg):
  """1-pixel boundary of a (H, W) mask, as the official `seg2bmap` (Martin 2003): a pixel is on
  the boundary when it differs from its east, south or south-east neighbour; the last row only
  looks east, the last column only south, and the bottom-right corner is never a boundary."""
  seg = np.asarray(seg, bool)
  east, south, south_east = (np.zeros_like(seg) for _ in range(3))
  east[:, :-1] = seg[:, 1:]
  south[:-1, :] = seg[1:, :]
  south_east[:-1, :-1] = seg[1:, 1:]
  b = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
  b[-1, :] = seg[-1, :] ^ east[-1, :]
  b[:, -1] = seg[:, -1] ^ south[:, -1]
  b[-1, -1] = False
  return b


def disk_radius(shape, bound_th=BOUND_TH):
  """Tolerance in pixels: ceil(bound_th * diagonal), or bound_th itself when >= 1."""
  return bound_th if bound_th >= 1 else float(np.ceil(bound_th * np.linalg.norm(shape)))


def dilate_disk(mask, radius):
  """Binary dilation of (H, W) by the disk {dx^2 + dy^2 <= r^2} (zero outside the image).

  The disk is a stack of horizontal runs: dilate each row by every run's half-width once
  (a sliding window via cumulative sums), then OR the rows shifted by dy.
  """
  mask = np.asarray(mask, bool)
  h, w = mask.shape
  r = int(np.floor(radius))
  dys = np.arange(-r, r + 1)
  half = np.floor(np.sqrt(np.maximum(radius * radius - dys * dys, 0)) + 1e-9).astype(int)
  csum = np.concatenate([np.zeros((h, 1), np.int64), np.cumsum(mask, axis=1)], axis=1)
  cols = np.arange(w)
  rows_by_half = {}
  for k in np.unique(half):
    lo, hi = np.clip(cols - k, 0, w), np.clip(cols + k + 1, 0, w)
    rows_by_half[k] = (csum[:, hi] - csum[:, lo]) > 0
  out = np.zeros_like(mask)
  for dy, k in zip(dys, half):
    src = rows_by_half[k]  # out[y] |= src[y + dy]
    if dy >= 0:
      out[:h - dy] |= src[dy:]
    else:
      out[-dy:] |= src[:h + dy]
  return out


def _f_frame(gt, pred, bound_th):
  radius = disk_radius(pred.shape, bound_th)
  fg, gt_b = boundary_map(pred), boundary_map(gt)
  n_fg, n_gt = fg.sum(), gt_b.sum()
  if n_fg == 0 and n_gt == 0:
    return 1.0
  if n_fg == 0 or n_gt == 0:  # precision, recall = (1, 0) or (0, 1)
    return 0.0
  precision = np.sum(fg & dilate_disk(gt_b, radius)) / n_fg
  recall = np.sum(gt_b & dilate_disk(fg, radius)) / n_gt
  if precision + recall == 0:
    return 0.0
  return 2 * precision * recall / (precision + recall)


def f_measure(gt, pred, bound_th=BOUND_TH):
  """Boundary F-measure per frame, (T, H, W) bool each -> (T,), as `db_eval_boundary`."""
  gt, pred = _frames(gt, 'gt'), _frames(pred, 'pred')
  if gt.shape != pred.shape:
    raise ValueError(f'gt {gt.shape} and pred {pred.shape} differ in shape')
  return np.array([_f_frame(g, p, bound_th) for g, p in zip(gt, pred)], np.float64)


def statistics(per_frame):
  """(mean, recall, decay) of one object's per-frame values, as `db_statistics`: recall is the
  fraction of frames above 0.5, decay the mean of the first of 4 temporal bins minus the last
  (bin edges rounded from linspace and held in uint8, as the official code does)."""
  v = np.asarray(per_frame, np.float64)
  ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.uint8)
  bins = [v[ids[i]:ids[i + 1] + 1] for i in range(4)]
  with warnings.catch_warnings():  # nan for no frames, as the official code
    warnings.simplefilter('ignore', RuntimeWarning)
    return (float(np.nanmean(v)), float(np.nanmean(v > 0.5)),
            float(np.nanmean(bins[0]) - np.nanmean(bins[3])))


# ---------------------------------------------------------------------------------------------
# Evaluation of whole sequences, as the official semi-supervised evaluator.

VOID = 255
GLOBAL_COLUMNS = ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall', 'F-Decay')


def evaluate_sequence(gt, pred):
  """Per-object J and F of one sequence, each (K, T - 2).

  gt: (T, H, W) ids (0 background, 1..K objects, 255 void); pred: (T, H, W) predicted ids. As
  the official semi-supervised evaluation: void pixels count as background, the objects are
  those of the first frame, the first and last frames are not scored, and an object absent from
  every prediction scores as an empty mask.
  """
  gt, pred = np.asarray(gt), np.asarray(pred)
  if gt.shape != pred.shape:
    raise ValueError(f'ground truth {gt.shape} and prediction {pred.shape} differ in shape')
  gt = np.where(gt == VOID, 0, gt)
  num_objects = int(gt[0].max())
  if pred.max() > num_objects:
    raise ValueError(f'prediction holds id {pred.max()}, the first frame only {num_objects} objects')
  gt, pred = gt[1:-1], pred[1:-1]
  j = np.stack([jaccard(gt == k, pred == k) for k in range(1, num_objects + 1)])
  f = np.stack([f_measure(gt == k, pred == k) for k in range(1, num_objects + 1)])
  return j, f


def summarise(per_sequence):
  """{sequence: (J, F) per object and frame} -> the official global and per-object results.

  Every statistic is a mean over objects (not sequences); objects are named `<seq>_<k>`.
  """
  objects, stats = [], []
  for seq, (j, f) in per_sequence.items():
    for k, (jk, fk) in enumerate(zip(j, f)):
      objects.append(f'{seq}_{k + 1}')
      stats.append(statistics(jk) + statistics(fk))
  s = np.array(stats, np.float64).reshape(-1, 6)  # J mean/recall/decay, F mean/recall/decay
  jm, jr, jd, fm, fr, fd = s.mean(axis=0)
  return {
      'global': dict(zip(GLOBAL_COLUMNS, (float((jm + fm) / 2), jm, jr, jd, fm, fr, fd))),
      'objects': {name: {'J-Mean': row[0], 'J-Recall': row[1], 'J-Decay': row[2],
                         'F-Mean': row[3], 'F-Recall': row[4], 'F-Decay': row[5]}
                  for name, row in zip(objects, s)}}


def _csv_number(x):
  return '' if np.isnan(x) else f'{x:.3f}'  # pandas' float_format='%.3f', na_rep=''


def results_csvs(summary):
  """The text of the official `global_results-<set>.csv` and `per-sequence_results-<set>.csv`."""
  g = summary['global']
  glob = ','.join(GLOBAL_COLUMNS) + '\n' + ','.join(_csv_number(float(g[c])) for c in GLOBAL_COLUMNS)
  rows = ['Sequence,J-Mean,F-Mean'] + [
      f"{name},{_csv_number(float(o['J-Mean']))},{_csv_number(float(o['F-Mean']))}"
      for name, o in summary['objects'].items()]
  return glob + '\n', '\n'.join(rows) + '\n'


# ---------------------------------------------------------------------------------------------
# The DAVIS-2017 layout: JPEGImages/480p/<seq>/*.jpg, Annotations/480p/<seq>/*.png (palette ids),
# ImageSets/2017/<subset>.txt.


class LayoutError(UserError, ValueError):
  """A DAVIS folder that does not hold what the layout promises (one line, for the CLI)."""


@dataclasses.dataclass
class Sequence:
  name: str
  frame_names: list[str]  # '00000', ... (the results PNGs take these names)
  frames: np.ndarray  # (T, H, W, 3) uint8
  annotations: np.ndarray  # (T, H, W) uint8 ids (255 void), or (1, H, W): first frame only (test)

  @property
  def num_objects(self) -> int:
    first = self.annotations[0]
    return int(first[first != VOID].max(initial=0))


def _layout(root, resolution):
  root = pathlib.Path(root)
  return (root, root / 'JPEGImages' / resolution, root / 'Annotations' / resolution,
          root / 'ImageSets' / '2017')


def sequence_names(root, subset='val', resolution='480p'):
  """The sequences of ImageSets/2017/<subset>.txt, after checking the root's layout."""
  root, images, annotations, sets = _layout(root, resolution)
  if not root.is_dir():
    raise LayoutError(f'DAVIS root {root} is not a folder')
  for folder in (images, annotations, sets):
    if not folder.is_dir():
      raise LayoutError(
          f'{root} is not a DAVIS-2017 root: no {folder.relative_to(root)}/ (expected '
          f'JPEGImages/{resolution}/<seq>/*.jpg, Annotations/{resolution}/<seq>/*.png, '
          'ImageSets/2017/<subset>.txt)')
  listing = sets / f'{subset}.txt'
  if not listing.is_file():
    raise LayoutError(f'no sequence list {listing} (subsets there: '
                      f"{sorted(p.stem for p in sets.glob('*.txt'))})")
  names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
  if not names:
    raise LayoutError(f'{listing} lists no sequences')
  return names


def _read_ids(path, size):
  with Image.open(path) as im:
    if im.mode not in ('P', 'L'):
      raise LayoutError(f'annotation {path} is a {im.mode} image, not palette (P) or grey ids')
    ids = np.array(im)
  if ids.shape != size:
    raise LayoutError(f'annotation {path} is {ids.shape[1]}x{ids.shape[0]} but its frames are '
                      f'{size[1]}x{size[0]}')
  return ids


def load_sequence(root, name, resolution='480p'):
  """Frames and annotations of one sequence; LayoutError names what does not match."""
  root, images, annotations, _ = _layout(root, resolution)
  jpgs = sorted((images / name).glob('*.jpg'))
  if not jpgs:
    raise LayoutError(f'sequence {name!r}: no frames {images / name}/*.jpg')
  pngs = sorted((annotations / name).glob('*.png'))
  if not pngs:
    raise LayoutError(f'sequence {name!r}: no annotations {annotations / name}/*.png')
  frame_names = [p.stem for p in jpgs]
  ann_names = [p.stem for p in pngs]
  if ann_names != frame_names and ann_names != frame_names[:1]:
    extra = sorted(set(ann_names) - set(frame_names))
    missing = sorted(set(frame_names) - set(ann_names))
    raise LayoutError(
        f'sequence {name!r}: annotations do not match the frames (frames {len(frame_names)}, '
        f'annotations {len(ann_names)}; without a frame: {extra[:3]}, without an annotation: '
        f'{missing[:3]}); expected one PNG per frame or the first frame only')
  frames = []
  for p in jpgs:
    with Image.open(p) as im:
      frames.append(np.array(im.convert('RGB')))
  size = frames[0].shape[:2]
  if any(f.shape[:2] != size for f in frames):
    raise LayoutError(f'sequence {name!r}: frames of different sizes')
  seq = Sequence(name, frame_names, np.stack(frames), np.stack([_read_ids(p, size) for p in pngs]))
  if seq.num_objects == 0:
    raise LayoutError(f'sequence {name!r}: the first annotation {pngs[0]} holds no object')
  return seq


def palette():
  """The PASCAL VOC colour map that DAVIS PNGs use: bits of the id spread over R, G, B."""
  ids = np.arange(256)
  rgb = np.zeros((256, 3), np.int64)
  for bit in range(8):
    for channel in range(3):
      rgb[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
  return rgb.astype(np.uint8)


def save_ids(ids, path):
  """Ids (H, W) as an indexed PNG with the DAVIS palette (what the official evaluator reads)."""
  im = Image.fromarray(np.asarray(ids, np.uint8))
  im.putpalette(palette().reshape(-1).tolist())
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  im.save(path)


def write_synthetic(root, num_sequences, *, num_frames=16, size=64, height=0, num_objects=3,
                    seed=0, classes='move_right,move_left,move_down,move_up'):
  """A DAVIS-layout twin from `synthetic.render_segmentation` (the demo's motion classes);
  every object covers at least 1/64 of the first frame (one 8x8 cell at 64 px).

  height: keep the middle `height` rows of the size x size scenes (0: all), for frames wider
  than high like DAVIS's 854x480; a scene whose first frame loses an object's pixels below
  that 1/64 is replaced by the next unused scene (index + num_sequences)."""
  from mformer_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(root)
  height = height or size
  if not 0 < height <= size:
    raise ConfigError(f'synthetic height {height} must be in (0, {size}]')
  top, min_pixels = (size - height) // 2, height * size // 64
  names = [f'synth{i:03d}' for i in range(num_sequences)]
  for i, name in enumerate(names):
    for index in range(i, i + 100 * num_sequences, num_sequences):
      video, ids = synthetic.render_segmentation(
          index, num_frames=num_frames, size=size, num_objects=num_objects, seed=seed,
          classes=classes, min_pixels=size * size // 64)
      video, ids = video[:, top:top + height], ids[:, top:top + height]
      if all((ids[0] == k).sum() >= min_pixels for k in range(1, num_objects + 1)):
        break
    else:
      raise ConfigError(f'no scene keeps {num_objects} objects in {height} of {size} rows')
    for t in range(num_frames):
      jpg = root / 'JPEGImages' / '480p' / name / f'{t:05d}.jpg'
      jpg.parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(video[t]).save(jpg, quality=95)
      save_ids(ids[t], root / 'Annotations' / '480p' / name / f'{t:05d}.png')
  (root / 'ImageSets' / '2017').mkdir(parents=True, exist_ok=True)
  (root / 'ImageSets' / '2017' / 'val.txt').write_text('\n'.join(names) + '\n')
  return names


# ---------------------------------------------------------------------------------------------
# The command line.


def _resize(frames, hw):
  if frames.shape[1:3] == tuple(hw):
    return frames
  return np.stack([np.array(Image.fromarray(f).resize(hw[::-1], Image.BILINEAR)) for f in frames])


def overlay(frames, ids, alpha=0.6):
  """Frames (T, H, W, 3) with each object filled and outlined in a bright palette colour."""
  bright = np.minimum(palette().astype(np.float32) * 2, 255)
  out = np.where((ids > 0)[..., None], (1 - alpha) * frames + alpha * bright[ids], frames)
  # Outlines: pixels whose id differs from the one to the right or below.
  east = np.concatenate([ids[..., 1:], ids[..., -1:]], axis=-1)
  south = np.concatenate([ids[..., 1:, :], ids[..., -1:, :]], axis=-2)
  edge = (ids != east) | (ids != south)
  out = np.where(edge[..., None], bright[np.maximum(ids, np.maximum(east, south))], out)
  return np.round(out).astype(np.uint8)


def save_overlay_strip(path, frames, pred, gt=None, num=6):
  """A PNG strip of `num` evenly spaced frames: the prediction, above it the ground truth."""
  pick = np.unique(np.linspace(0, len(frames) - 1, num).round().astype(int))
  rows = [np.concatenate(list(overlay(frames[pick], pred[pick])), axis=1)]
  if gt is not None:
    rows.insert(0, np.concatenate(list(overlay(frames[pick], np.where(gt[pick] == VOID, 0,
                                                                         gt[pick]))), axis=1))
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def _overrides(text):
  """'trajectory_impl=chunked,dtype=bfloat16' -> {field: value} (numbers parsed)."""
  out = {}
  for item in filter(None, text.split(',')):
    key, sep, value = item.partition('=')
    if not sep:
      raise ConfigError(f'--model_override {item!r} is not key=value')
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def _load_model(args):
  """(model, variables, (pixel mean, std)) of the chosen model source; each keeps its own pixel
  convention (`data.to_model_input`), which --pixel_mean/--pixel_std override."""
  from mformer_jax import weights, data, model as model_lib  # pylint: disable=g-import-not-at-top
  from mformer_jax.weights import vit  # pylint: disable=g-import-not-at-top
  overrides = _overrides(args.model_override)
  if args.vit:
    model, variables = vit.load_timm_vit(args.vit, num_heads=args.vit_heads,
                                                  overrides=overrides)
    pixels = (data.IMAGENET_MEAN, data.IMAGENET_STD)
  elif args.checkpoint:
    # Per-block parameters: the per-block sown intermediates name the layers.
    model, variables = weights.load_model(args.checkpoint, **overrides, scan_blocks=False)
    pixels = (data.PIXEL_MEAN, data.PIXEL_STD)
  else:
    if not pathlib.Path(args.init_config).is_file():
      raise MissingInputError(f'--init_config {args.init_config} is not a file')
    config = runpy.run_path(args.init_config)['get_config']()
    model = model_lib.make_model(dict(config.model.to_dict(), **overrides, scan_blocks=False))
    import jax  # pylint: disable=g-import-not-at-top
    variables = model_lib.init_variables(model, jax.random.key(args.seed),
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
  from mformer_jax.analysis import label_propagation as lp  # pylint: disable=g-import-not-at-top
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
      raise LayoutError(f'sequence {seq.name!r}: the oracle needs an annotation for every frame')
    return lp.oracle_features(seq.annotations, seq.num_objects,
                              (hw[0] // args.stride, hw[1] // args.stride))
  return fn, args.stride, {}


def protocol_of(args):
  """The preset of --protocol with every propagation flag given on the command line on top."""
  from mformer_jax.analysis import label_propagation as lp  # pylint: disable=g-import-not-at-top
  flags = {k: getattr(args, k) for k in ('topk', 'context', 'radius', 'temperature')
           if getattr(args, k) is not None}
  return dataclasses.replace(lp.PROTOCOLS[args.protocol], **flags)


def run(args):
  from mformer_jax.analysis import label_propagation as lp  # pylint: disable=g-import-not-at-top
  names = sequence_names(args.davis_root, args.subset)
  if args.sequences:
    unknown = sorted(set(args.sequences.split(',')) - set(names))
    if unknown:
      raise LayoutError(f'--sequences {unknown} are not in ImageSets/2017/{args.subset}.txt')
    names = args.sequences.split(',')
  protocol = protocol_of(args)
  features, cell, pixels = _feature_fn(args)
  lp.input_size((cell, cell), args.short_side, cell, protocol.size_multiple, True)  # fail early
  out = pathlib.Path(args.out)
  per_sequence, sizes, start = {}, {}, time.time()
  for i, name in enumerate(names):
    seq = load_sequence(args.davis_root, name)
    hw = lp.input_size(seq.frames.shape[1:3], args.short_side, cell, protocol.size_multiple,
                       args.square)
    sizes[name] = hw
    feats = features(seq, hw)
    k = seq.num_objects
    first = lp.first_labels(seq.annotations[0], k, feats.shape[1:3], protocol)
    soft = lp.propagate(feats, first, protocol)
    pred = lp.to_ids(soft, seq.frames.shape[1:3], protocol, cell)
    pred[0] = np.where(seq.annotations[0] == VOID, 0, seq.annotations[0])  # the given frame
    for frame_name, ids in zip(seq.frame_names, pred):
      save_ids(ids, out / name / f'{frame_name}.png')
    scored = len(seq.annotations) == len(seq.frames)
    save_overlay_strip(out / 'overlays' / f'{name}.png', seq.frames, pred,
                       seq.annotations if scored else None, num=args.overlay_frames)
    line = (f'[{i + 1}/{len(names)}] {name}: {k} objects, {len(seq.frames)} frames at '
            f'{hw[1]}x{hw[0]} ({feats.shape[2]}x{feats.shape[1]} cells)')
    if scored:
      per_sequence[name] = evaluate_sequence(seq.annotations, pred)
      j, f = per_sequence[name]
      line += f', J {np.nanmean(j):.3f} F {np.nanmean(f):.3f}'
    print(f'{line} ({time.time() - start:.0f} s)', flush=True)
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
           input_sizes=sizes, **summary), indent=1, default=float))
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
                 'the long side keeps the aspect ratio, floored to the protocol\'s multiple')
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

"""The DAVIS-2017 folder layout: JPEGImages/480p/<seq>/*.jpg, Annotations/480p/<seq>/*.png
(palette ids), ImageSets/2017/<subset>.txt. Reading it (`sequence_names`, `load_sequence`),
writing ids the way the official evaluator reads them (`save_ids`), a synthetic twin of the
layout (`write_synthetic`) and the overlay strips of a run (`save_overlay_strip`)."""

import dataclasses
import pathlib

import numpy as np
from PIL import Image

from mformer_jax.analysis.davis_metrics import VOID
from mformer_jax.data import synthetic
from mformer_jax.errors import ConfigError, InputError


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
    raise InputError(f'DAVIS root {root} is not a folder')
  for folder in (images, annotations, sets):
    if not folder.is_dir():
      raise InputError(
          f'{root} is not a DAVIS-2017 root: no {folder.relative_to(root)}/ (expected '
          f'JPEGImages/{resolution}/<seq>/*.jpg, Annotations/{resolution}/<seq>/*.png, '
          'ImageSets/2017/<subset>.txt)')
  listing = sets / f'{subset}.txt'
  if not listing.is_file():
    raise InputError(f'no sequence list {listing} (subsets there: '
                     f"{sorted(p.stem for p in sets.glob('*.txt'))})")
  names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
  if not names:
    raise InputError(f'{listing} lists no sequences')
  return names


def _read_ids(path, size):
  with Image.open(path) as im:
    if im.mode not in ('P', 'L'):
      raise InputError(f'annotation {path} is a {im.mode} image, not palette (P) or grey ids')
    ids = np.array(im)
  if ids.shape != size:
    raise InputError(f'annotation {path} is {ids.shape[1]}x{ids.shape[0]} but its frames are '
                     f'{size[1]}x{size[0]}')
  return ids


def load_sequence(root, name, resolution='480p'):
  """Frames and annotations of one sequence; an InputError names what does not match."""
  root, images, annotations, _ = _layout(root, resolution)
  jpgs = sorted((images / name).glob('*.jpg'))
  if not jpgs:
    raise InputError(f'sequence {name!r}: no frames {images / name}/*.jpg')
  pngs = sorted((annotations / name).glob('*.png'))
  if not pngs:
    raise InputError(f'sequence {name!r}: no annotations {annotations / name}/*.png')
  frame_names = [p.stem for p in jpgs]
  ann_names = [p.stem for p in pngs]
  if ann_names != frame_names and ann_names != frame_names[:1]:
    extra = sorted(set(ann_names) - set(frame_names))
    missing = sorted(set(frame_names) - set(ann_names))
    raise InputError(
        f'sequence {name!r}: annotations do not match the frames (frames {len(frame_names)}, '
        f'annotations {len(ann_names)}; without a frame: {extra[:3]}, without an annotation: '
        f'{missing[:3]}); expected one PNG per frame or the first frame only')
  frames = []
  for p in jpgs:
    with Image.open(p) as im:
      frames.append(np.array(im.convert('RGB')))
  size = frames[0].shape[:2]
  if any(f.shape[:2] != size for f in frames):
    raise InputError(f'sequence {name!r}: frames of different sizes')
  seq = Sequence(name, frame_names, np.stack(frames), np.stack([_read_ids(p, size) for p in pngs]))
  if seq.num_objects == 0:
    raise InputError(f'sequence {name!r}: the first annotation {pngs[0]} holds no object')
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

"""Readers for the dataset layouts users have, and the per-item loader the workers run.

Each reader returns (items, class_names); an item is one training example (a Kinetics/SSv2 video
or an EK narration segment). Missing files are still returned as items: the loader raises for
them, so they land in the skip report with a reason instead of vanishing silently.
"""

import csv
import dataclasses
import datetime
import json
import os
import pathlib
import time

from mformer_jax.data import video

VIDEO_EXTS = ('.mp4', '.webm', '.mkv', '.avi', '.mov', '.m4v')
SSV2_FILES = {'train': 'something-something-v2-train.json',
              'test': 'something-something-v2-validation.json'}
EPIC_FILES = {'train': 'EPIC_100_train.csv', 'test': 'EPIC_100_validation.csv'}


@dataclasses.dataclass(frozen=True)
class Item:
  key: str  # Unique example id (file stem, SSv2 id, EK narration_id).
  source: str  # Video file, or the EK `rgb_frames/<video_id>` folder.
  labels: dict  # {'label': int} or, for EK, {'verb': int, 'noun': int}.
  first_frame: int = 0  # EK: frame number of the segment's first frame.
  num_frames: int = 0  # EK: segment length in frames (from the timestamps).
  fps: float = 0.0  # EK: 50 or 60; videos: read from the file.


def _video_files(root):
  return sorted(p for p in pathlib.Path(root).rglob('*') if p.suffix.lower() in VIDEO_EXTS)


def kinetics(videos, csv_path=''):
  """Kinetics-400/600 from class folders (`videos/<class>/<file>`), the official CSV
  (`label,youtube_id,time_start,time_end,split`; files named `<id>_<start:06>_<end:06>.*`
  anywhere under `videos`) or a PySlowFast `path label` list (paths relative to `videos`)."""
  if not csv_path:
    classes = sorted(d.name for d in pathlib.Path(videos).iterdir() if d.is_dir())
    items = [Item(f.stem, str(f), {'label': i}) for i, c in enumerate(classes)
             for f in _video_files(pathlib.Path(videos) / c)]
    return items, classes
  with open(csv_path) as f:
    first = f.readline()
    f.seek(0)
    if first.startswith('label,youtube_id'):
      rows = list(csv.DictReader(f))
      classes = sorted({r['label'] for r in rows})
      found = {p.stem: p for p in _video_files(videos)}
      items = []
      for r in rows:
        stem = f"{r['youtube_id']}_{int(r['time_start']):06d}_{int(r['time_end']):06d}"
        path = found.get(stem, pathlib.Path(videos) / f'{stem}.mp4')  # Missing -> reported.
        items.append(Item(stem, str(path), {'label': classes.index(r['label'])}))
      return items, classes
    rows = [line.split() for line in f if line.strip()]
  items = [Item(pathlib.Path(p).stem, os.path.join(videos, p), {'label': int(y)}) for p, y in rows]
  return items, [str(i) for i in range(max(int(y) for _, y in rows) + 1)]


def ssv2(videos, annotations, split):
  """SSv2: `<id>.webm` files plus the labels/train/validation JSON files in `annotations`."""
  with open(os.path.join(annotations, 'something-something-v2-labels.json')) as f:
    template_to_id = {k: int(v) for k, v in json.load(f).items()}
  with open(os.path.join(annotations, SSV2_FILES[split])) as f:
    entries = json.load(f)
  items = [Item(e['id'], os.path.join(videos, f"{e['id']}.webm"),
                {'label': template_to_id[e['template'].replace('[', '').replace(']', '')]})
           for e in entries]
  return items, sorted(template_to_id, key=template_to_id.get)


def _timestamp_seconds(stamp):
  """`HH:MM:SS.ff` with the fraction read as hundredths, as the official loader does."""
  t = time.strptime(stamp.split('.')[0], '%H:%M:%S')
  whole = datetime.timedelta(hours=t.tm_hour, minutes=t.tm_min, seconds=t.tm_sec)
  return whole.total_seconds() + (float(stamp.split('.')[1]) / 100 if '.' in stamp else 0.0)


def _class_keys(path, count, prefix):
  if not os.path.exists(path):
    return [f'{prefix}_{i}' for i in range(count)]
  with open(path) as f:
    return [r['key'] for r in sorted(csv.DictReader(f), key=lambda r: int(r['id']))]


def epic_kitchens(frames, annotations, split):
  """EK-100: `frames/<participant>/rgb_frames/<video_id>/frame_%010d.jpg` plus the
  `EPIC_100_{train,validation}.csv` files. Segment frames follow the official loader: fps 50 for
  3-digit (EK-100) video suffixes else 60, start/stop = round(timestamp * fps)."""
  with open(os.path.join(annotations, EPIC_FILES[split])) as f:
    rows = list(csv.DictReader(f))
  items = []
  for r in rows:
    fps = 50.0 if len(r['video_id'].split('_')[1]) == 3 else 60.0
    start = int(round(_timestamp_seconds(r['start_timestamp']) * fps))
    stop = int(round(_timestamp_seconds(r['stop_timestamp']) * fps))
    folder = os.path.join(frames, r['participant_id'], 'rgb_frames', r['video_id'])
    labels = {'verb': int(r.get('verb_class') or -1), 'noun': int(r.get('noun_class') or -1)}
    items.append(Item(r['narration_id'], folder, labels, start, max(stop - start, 1), fps))
  verbs = _class_keys(os.path.join(annotations, 'EPIC_100_verb_classes.csv'), 97, 'verb')
  nouns = _class_keys(os.path.join(annotations, 'EPIC_100_noun_classes.csv'), 300, 'noun')
  return items, {'verb': verbs, 'noun': nouns}


def load(item, short_side=0, quality=90):
  """JPEG bytes of every frame of an item, plus fps and size. Raises VideoError."""
  if item.fps:  # EK frame folder: copy the JPEGs, re-encode only to resize.
    jpegs = []
    for k in range(item.num_frames):
      # Frame numbers are 1-based; a segment starting at 0 s reuses frame 1.
      path = os.path.join(item.source, f'frame_{max(item.first_frame + k, 1):010d}.jpg')
      try:
        with open(path, 'rb') as f:
          data = f.read()
        data, (height, width) = video.resize_jpeg(data, short_side, quality)
      except OSError as e:
        raise video.VideoError(f'unreadable frame {path}: {e}') from e
      jpegs.append(data)
    return jpegs, item.fps, height, width
  if not os.path.exists(item.source):
    raise video.VideoError('missing file')
  if os.path.getsize(item.source) == 0:
    raise video.VideoError('empty file')
  frames, fps = video.read_video(item.source, short_side)
  height, width = frames[0].shape[:2]
  return [video.encode_jpeg(f, quality) for f in frames], fps, height, width

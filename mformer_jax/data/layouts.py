"""Readers for the dataset layouts users have, and the per-item loader the workers run.

Each reader returns (items, class_names); an item is one training example (a Kinetics/SSv2 video
or an EK narration segment). Missing files are still returned as items: the loader raises for
them, so they land in the skip report with a reason instead of vanishing silently. An index file
that is not in the layout (a missing column or key, a field that is no number) is an InputError
naming the file and the line; an unreadable one is the OSError / decode error open() or the
parser raised.
"""

import csv
import dataclasses
import datetime
import json
import os
import pathlib
import time

from mformer_jax.errors import InputError
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


def _int(text, where):
  """int(text) of a field of the user's file; `where` names the file and line."""
  try:
    return int(text)
  except (TypeError, ValueError):  # None: the row is shorter than the header
    raise InputError(f'{where}: {text!r} is not an integer') from None


def _csv_rows(f, path, columns):
  """The rows of an open CSV file with a header row holding `columns`, as dicts."""
  reader = csv.DictReader(f)
  missing = [c for c in columns if c not in (reader.fieldnames or ())]
  if missing:
    raise InputError(f'{path} has no column {", ".join(missing)} (its header: '
                     f'{",".join(reader.fieldnames or ())})')
  rows = list(reader)
  for line, r in enumerate(rows, 2):
    if any(r[c] is None for c in columns):
      raise InputError(f'{path}:{line}: the row has fewer fields than the header')
  return rows


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
      rows = _csv_rows(f, csv_path, ('label', 'youtube_id', 'time_start', 'time_end'))
      classes = sorted({r['label'] for r in rows})
      found = {p.stem: p for p in _video_files(videos)}
      items = []
      for line, r in enumerate(rows, 2):
        start, end = (_int(r[k], f'{csv_path}:{line}') for k in ('time_start', 'time_end'))
        stem = f"{r['youtube_id']}_{start:06d}_{end:06d}"
        path = found.get(stem, pathlib.Path(videos) / f'{stem}.mp4')  # Missing -> reported.
        items.append(Item(stem, str(path), {'label': classes.index(r['label'])}))
      return items, classes
    rows = [(f'{csv_path}:{n}', line.split()) for n, line in enumerate(f, 1) if line.strip()]
  if not rows:
    raise InputError(f'{csv_path} lists no videos')
  items = []
  for where, fields in rows:
    if len(fields) != 2:
      raise InputError(f'{where}: expected "path label" (a PySlowFast list), got {fields}')
    items.append(Item(pathlib.Path(fields[0]).stem, os.path.join(videos, fields[0]),
                      {'label': _int(fields[1], where)}))
  return items, [str(i) for i in range(max(i.labels['label'] for i in items) + 1)]


def ssv2(videos, annotations, split):
  """SSv2: `<id>.webm` files plus the labels/train/validation JSON files in `annotations`."""
  labels = os.path.join(annotations, 'something-something-v2-labels.json')
  with open(labels) as f:
    table = json.load(f)
  if not isinstance(table, dict):
    raise InputError(f'{labels}: expected {{template: class id}}, got a {type(table).__name__}')
  template_to_id = {k: _int(v, f'{labels} ({k})') for k, v in table.items()}
  path = os.path.join(annotations, SSV2_FILES[split])
  with open(path) as f:
    entries = json.load(f)
  items = []
  if not isinstance(entries, list):
    raise InputError(f'{path}: expected a list of videos, got a {type(entries).__name__}')
  for n, e in enumerate(entries):
    if not isinstance(e, dict) or not {'id', 'template'} <= set(e):
      raise InputError(f'{path}: entry {n} is not {{"id": ..., "template": ...}}: {e!r:.80}')
    template = str(e['template']).replace('[', '').replace(']', '')
    if template not in template_to_id:
      raise InputError(f'{path}: entry {n} ({e["id"]}) has the template {template!r}, which '
                       f'{labels} does not list')
    items.append(Item(str(e['id']), os.path.join(videos, f"{e['id']}.webm"),
                      {'label': template_to_id[template]}))
  return items, sorted(template_to_id, key=template_to_id.get)


def _timestamp_seconds(stamp, where):
  """`HH:MM:SS.ff` with the fraction read as hundredths, as the official loader does."""
  try:
    t = time.strptime(stamp.split('.')[0], '%H:%M:%S')
    hundredths = float(stamp.split('.')[1]) if '.' in stamp else 0.0
  except ValueError:
    raise InputError(f'{where}: {stamp!r} is not a HH:MM:SS.ff timestamp') from None
  whole = datetime.timedelta(hours=t.tm_hour, minutes=t.tm_min, seconds=t.tm_sec)
  return whole.total_seconds() + hundredths / 100


def _class_keys(path, count, prefix):
  if not os.path.exists(path):
    return [f'{prefix}_{i}' for i in range(count)]
  with open(path) as f:
    rows = _csv_rows(f, path, ('id', 'key'))
  return [r['key'] for r in sorted(rows, key=lambda r: _int(r['id'], f'{path} ({r["key"]})'))]


def epic_kitchens(frames, annotations, split):
  """EK-100: `frames/<participant>/rgb_frames/<video_id>/frame_%010d.jpg` plus the
  `EPIC_100_{train,validation}.csv` files. Segment frames follow the official loader: fps 50 for
  3-digit (EK-100) video suffixes else 60, start/stop = round(timestamp * fps)."""
  path = os.path.join(annotations, EPIC_FILES[split])
  with open(path) as f:
    rows = _csv_rows(f, path, ('narration_id', 'participant_id', 'video_id', 'start_timestamp',
                               'stop_timestamp'))
  items = []
  for line, r in enumerate(rows, 2):
    where = f'{path}:{line}'
    if '_' not in r['video_id']:
      raise InputError(f'{where}: video_id {r["video_id"]!r} is not <participant>_<number>')
    fps = 50.0 if len(r['video_id'].split('_')[1]) == 3 else 60.0
    start = int(round(_timestamp_seconds(r['start_timestamp'], where) * fps))
    stop = int(round(_timestamp_seconds(r['stop_timestamp'], where) * fps))
    folder = os.path.join(frames, r['participant_id'], 'rgb_frames', r['video_id'])
    labels = {k: _int(r.get(f'{k}_class') or -1, where) for k in ('verb', 'noun')}
    items.append(Item(r['narration_id'], folder, labels, start, max(stop - start, 1), fps))
  verbs = _class_keys(os.path.join(annotations, 'EPIC_100_verb_classes.csv'), 97, 'verb')
  nouns = _class_keys(os.path.join(annotations, 'EPIC_100_noun_classes.csv'), 300, 'noun')
  return items, {'verb': verbs, 'noun': nouns}


def load(item, short_side=0, quality=90):
  """JPEG bytes of every frame of an item, plus fps and size. Raises InputError."""
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
        raise InputError(f'unreadable frame {path}: {e}') from e
      jpegs.append(data)
    return jpegs, item.fps, height, width
  if not os.path.exists(item.source):
    raise InputError('missing file')
  if os.path.getsize(item.source) == 0:
    raise InputError('empty file')
  frames, fps = video.read_video(item.source, short_side)
  height, width = frames[0].shape[:2]
  return [video.encode_jpeg(f, quality) for f in frames], fps, height, width

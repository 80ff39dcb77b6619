"""Tiny dataset trees shaped like the real layouts, encoded on the fly with PyAV/PIL.

Every frame carries its own index, its position and its video: red = 8 * index + 4 (uniform),
green = a left-to-right ramp, blue = a per-video tag (uniform). Decoded clips therefore reveal
which video and frames were sampled and which crop/flip was applied to each frame.
"""

import csv
import json
import os

import numpy as np

from mformer_jax.data import video

H, W = 48, 64


def coded_frames(num, tag=0, height=H, width=W):
  t = np.arange(num)[:, None, None]
  red = np.broadcast_to(8 * t + 4, (num, height, width))
  green = np.broadcast_to(np.linspace(0, 255, width)[None, None], (num, height, width))
  blue = np.full((num, height, width), 30 * tag + 15)
  return np.stack([red, green, blue], -1).round().astype(np.uint8)


def _channel_mean(clip, channel):
  clip = np.asarray(clip, np.float64)[..., channel]
  return (clip if clip.max() > 1.5 else (clip + 1) * 127.5).mean((-1, -2))


def frame_codes(clip, channel=0):
  """Frame indices of decoded (..., T, H, W, 3) clips, uint8 or normalised to [-1, 1]."""
  return np.round((_channel_mean(clip, channel) - 4) / 8).astype(int)


def video_tags(clip, channel=2):
  """The per-video tag of (..., T, H, W, 3) clips, from the first frame."""
  return np.round((_channel_mean(clip, channel)[..., 0] - 15) / 30).astype(int)


def write_bad_files(folder):
  """A corrupt, a truncated and an empty .mp4; returns their paths."""
  os.makedirs(folder, exist_ok=True)
  good = os.path.join(folder, 'good_tmp.mp4')
  video.write_video(good, coded_frames(20))
  data = open(good, 'rb').read()
  os.remove(good)
  paths = {name: os.path.join(folder, f'{name}.mp4') for name in ('corrupt', 'truncated', 'empty')}
  contents = {'corrupt': np.random.default_rng(0).bytes(4000), 'truncated': data[:len(data) // 3],
              'empty': b''}
  for name, path in paths.items():
    with open(path, 'wb') as f:
      f.write(contents[name])
  return paths


def kinetics_tree(root, lengths=((24, 30), (31, 25), (20, 30)), classes=('abseiling', 'zumba')):
  """`root/<class>/<id>_<start>_<end>.mp4` (h264) with the given (frames, fps) per class,
  plus an official-style CSV naming one video that does not exist. Returns metadata."""
  videos = []
  for c, name in enumerate(classes):
    os.makedirs(os.path.join(root, name), exist_ok=True)
    for k, (num, fps) in enumerate(lengths):
      stem = f'{name[:3]}{k:08d}_{k:06d}_{k + 10:06d}'
      tag = len(videos)
      video.write_video(os.path.join(root, name, stem + '.mp4'), coded_frames(num, tag), fps)
      videos.append(dict(stem=stem, label=c, name=name, num=num, fps=fps, start=k, tag=tag))
  csv_path = os.path.join(os.path.dirname(root), 'kinetics_val.csv')
  with open(csv_path, 'w') as f:
    f.write('label,youtube_id,time_start,time_end,split\n')
    for v in videos:
      f.write(f"{v['name']},{v['stem'][:11]},{v['start']},{v['start'] + 10},val\n")
    f.write('zumba,missingvid01,0,10,val\n')
  return videos, csv_path


def ssv2_tree(root, lengths=(25, 30, 18)):
  """`root/videos/<id>.webm` (vp9, 12 fps) plus the three label JSON files in `root/labels`."""
  os.makedirs(os.path.join(root, 'videos'), exist_ok=True)
  os.makedirs(os.path.join(root, 'labels'), exist_ok=True)
  templates = ['Pushing something from left to right', 'Pushing something from right to left']
  with open(os.path.join(root, 'labels', 'something-something-v2-labels.json'), 'w') as f:
    json.dump({t: str(i) for i, t in enumerate(templates)}, f)
  entries = []
  for k, num in enumerate(lengths):
    vid = str(1000 + k)
    video.write_video(os.path.join(root, 'videos', vid + '.webm'), coded_frames(num, k), 12,
                      codec='libvpx-vp9')
    template = templates[k % 2].replace('something', '[something]')
    entries.append(dict(id=vid, label='x', template=template, placeholders=['x']))
  for split in ('train', 'validation'):
    with open(os.path.join(root, 'labels', f'something-something-v2-{split}.json'), 'w') as f:
      json.dump(entries, f)
  return entries


def epic_tree(root, num_frames=200):
  """`root/frames/P01/rgb_frames/P01_101/frame_%010d.jpg` (50 fps) plus EPIC_100 CSVs, with one
  narration pointing past the last frame (unreadable -> skipped)."""
  folder = os.path.join(root, 'frames', 'P01', 'rgb_frames', 'P01_101')
  os.makedirs(folder, exist_ok=True)
  frames = coded_frames(num_frames % 31 + 31)  # Codes repeat every 31 frames.
  for n in range(1, num_frames + 1):
    with open(os.path.join(folder, f'frame_{n:010d}.jpg'), 'wb') as f:
      f.write(video.encode_jpeg(frames[(n - 1) % 31], quality=95))
  anno = os.path.join(root, 'annotations')
  os.makedirs(anno, exist_ok=True)
  rows = [('P01_101_0', '00:00:00.20', '00:00:01.50', 3, 7),
          ('P01_101_1', '00:00:01.00', '00:00:02.00', 5, 11),
          ('P01_101_2', '00:00:03.00', '00:00:05.00', 1, 2)]  # Frames 150-250: past the end.
  for split in ('train', 'validation'):
    with open(os.path.join(anno, f'EPIC_100_{split}.csv'), 'w', newline='') as f:
      w = csv.writer(f)
      w.writerow(['narration_id', 'participant_id', 'video_id', 'narration_timestamp',
                  'start_timestamp', 'stop_timestamp', 'start_frame', 'stop_frame', 'narration',
                  'verb', 'verb_class', 'noun', 'noun_class', 'all_nouns', 'all_noun_classes'])
      for nid, start, stop, verb, noun in rows:
        w.writerow([nid, 'P01', 'P01_101', start, start, stop, 0, 0, 'x', 'v', verb, 'n', noun,
                    '[]', '[]'])
  return rows


def damage_record(prepared, split, example, how):
  """Damages the record of `example` in a prepared split, in place; returns (shard name, video
  key). how: 'flip' (a flipped bit, as a failing disk or copy leaves it: the CRC no longer
  matches) or 'jpeg' (every frame replaced by bytes that are no JPEG, whichever a clip samples,
  in a well-formed record of the same length, CRCs recomputed)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  index = np.load(os.path.join(prepared, f'{split}.index.npz'))
  with open(os.path.join(prepared, f'{split}.json')) as f:
    name = json.load(f)['shards'][index['shard'][example]]
  shard = os.path.join(prepared, name)
  offset, length = int(index['offset'][example]), int(index['length'][example])
  with open(shard, 'rb') as f:
    data = bytearray(f.read())
  original = bytes(data[offset:offset + length])
  if how == 'flip':
    data[offset + length // 2] ^= 0x40
    with open(shard, 'wb') as f:
      f.write(bytes(data))
  else:
    record = tf.train.SequenceExample.FromString(original)
    for frame in record.feature_lists.feature_list['image/encoded'].feature:
      frame.bytes_list.value[0] = b'\xff\xd8' + bytes(len(frame.bytes_list.value[0]) - 2)
    records = [r.numpy() for r in tf.data.TFRecordDataset(shard)]
    with tf.io.TFRecordWriter(shard) as w:
      for r in records:
        w.write(record.SerializeToString() if r == original else r)
  return name, str(index['key'][example])


def cut_shard(prepared, split, example):
  """Cuts the shard holding `example` of a prepared split just before that record starts (as an
  interrupted copy leaves it); returns (shard name, video key)."""
  index = np.load(os.path.join(prepared, f'{split}.index.npz'))
  with open(os.path.join(prepared, f'{split}.json')) as f:
    name = json.load(f)['shards'][index['shard'][example]]
  os.truncate(os.path.join(prepared, name), int(index['offset'][example]) - 12)
  return name, str(index['key'][example])


def prepared_kinetics(root, per_shard=2):
  """`kinetics_tree` in root/videos prepared into root/out, both splits from the same 6 videos
  (3 shards of 2 each by default); returns (out folder, the tree's metadata)."""
  from mformer_jax.data import layouts, prepare  # pylint: disable=g-import-not-at-top
  videos, _ = kinetics_tree(os.path.join(root, 'videos'))
  items, classes = layouts.kinetics(os.path.join(root, 'videos'))
  for split in ('train', 'test'):
    prepare.build(items, classes, out=os.path.join(root, 'out'), split=split, layout='kinetics',
                  per_shard=per_shard)
  return os.path.join(root, 'out'), videos

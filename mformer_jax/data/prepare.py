r"""Prepares Kinetics / SSv2 / EPIC-KITCHENS-100 into shards training can sample cheaply.

  python -m mformer_jax.data.prepare kinetics --videos K400/train --split train --out OUT \
      --short-side 320
  python -m mformer_jax.data.prepare ssv2 --videos SSV2/videos --annotations SSV2/labels \
      --split train --out OUT
  python -m mformer_jax.data.prepare epic_kitchens --frames EPIC-KITCHENS \
      --annotations epic-kitchens-100-annotations --split train --out OUT

Output in OUT (split is 'train' or 'test'; SSv2/EK 'test' is their validation set):
  {split}-KKKKK-of-NNNNN.tfrecord  tf.train.SequenceExamples: one JPEG per stored frame in the
      feature list 'image/encoded' (native fps, so training decodes only the frames it samples);
      context video/{id,source,fps,num_frames,height,width,first_frame}, clip/<label>/index.
  {split}-KKKKK-of-NNNNN.json      per-shard sidecar (record offsets, labels, fps, frame counts,
      skipped files). Written last: its presence marks the shard done, which makes runs resumable.
  {split}.index.npz, {split}.json  merged per-example index and summary (classes, skip report).

Unreadable, corrupt, truncated, empty or missing inputs are skipped and listed in {split}.json.

Across machines: `--num-tasks N --task-index I` (e.g. a SLURM array's $SLURM_ARRAY_TASK_ID, a
TPU pod host's index) writes only the shards k with k % N == I, into one shared OUT. Shards are
a pure function of the item list, so N tasks write exactly the bytes one task would. The task
that finds every shard done writes the merged index; rerunning the command without the task
flags does too (it resumes: nothing is redone).
"""

import argparse
import collections
import concurrent.futures
import csv
import hashlib
import json
import multiprocessing
import os

import numpy as np
import tqdm

from mformer_jax.data import layouts
from mformer_jax.errors import ConfigError, InputError, UserError, exit_with

LAYOUTS = ('kinetics', 'ssv2', 'epic_kitchens')


def _load_one(args):
  """Worker: never raises, so one bad file cannot abort the build."""
  item, short_side, quality = args
  try:
    return item, layouts.load(item, short_side, quality), None
  except Exception as e:  # pylint: disable=broad-except
    return item, None, str(e) or type(e).__name__


def _ordered_map(fn, args, workers):
  """Like map() over worker processes, ordered, with a bounded number of results in flight."""
  if workers <= 1:
    yield from map(fn, args)
    return
  # spawn: the parent may have TensorFlow loaded, which must not be forked.
  ctx = multiprocessing.get_context('spawn')
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
    window = collections.deque()
    for a in args:
      window.append(pool.submit(fn, a))
      if len(window) >= 4 * workers:
        yield window.popleft().result()
    while window:
      yield window.popleft().result()


def _sequence_example(item, jpegs, fps, height, width):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  def ints(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
  def raw(v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
  context = {'video/id': raw(item.key.encode()), 'video/source': raw(item.source.encode()),
             'video/fps': tf.train.Feature(float_list=tf.train.FloatList(value=[fps])),
             'video/num_frames': ints(len(jpegs)), 'video/height': ints(height),
             'video/width': ints(width), 'video/first_frame': ints(item.first_frame)}
  context.update({f'clip/{k}/index': ints(v) for k, v in item.labels.items()})
  frames = tf.train.FeatureList(feature=[raw(j) for j in jpegs])
  return tf.train.SequenceExample(
      context=tf.train.Features(feature=context),
      feature_lists=tf.train.FeatureLists(feature_list={'image/encoded': frames}),
  ).SerializeToString()


def _write_json(path, obj):
  with open(path + '.tmp', 'w') as f:
    json.dump(obj, f)
  os.replace(path + '.tmp', path)  # Atomic: a crash never leaves a half-written sidecar.


class _ShardWriter:
  """Writes one shard to a temporary name and records where every record starts."""

  def __init__(self, path):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.path, self.tmp = path, path + '.tmp'
    self.writer = tf.io.TFRecordWriter(self.tmp)
    self.pos, self.examples, self.skipped = 0, [], []

  def add(self, item, loaded, error):
    if error is not None:
      # EK segments share a frame folder, so name the narration too.
      self.skipped.append([f'{item.source}#{item.key}' if item.fps else item.source, error])
      return
    jpegs, fps, height, width = loaded
    record = _sequence_example(item, jpegs, fps, height, width)
    self.writer.write(record)
    # TFRecord framing: uint64 length, uint32 crc, data, uint32 crc.
    self.examples.append(dict(key=item.key, offset=self.pos + 12, length=len(record),
                              num_frames=len(jpegs), fps=fps, labels=item.labels))
    self.pos += 16 + len(record)

  def close(self):
    self.writer.close()
    os.replace(self.tmp, self.path + '.tfrecord')
    _write_json(self.path + '.json', dict(examples=self.examples, skipped=self.skipped))


def _check_plan(out, split, items, per_shard):
  """Resuming into a folder made from a different item list would mix datasets: refuse."""
  digest = hashlib.sha1('\n'.join(i.key for i in items).encode()).hexdigest()
  plan = dict(num_items=len(items), per_shard=per_shard, keys_sha1=digest)
  path = os.path.join(out, f'{split}.plan.json')
  if os.path.exists(path):
    with open(path) as f:
      if json.load(f) != plan:
        raise InputError(f'{out} holds a {split!r} split prepared from other inputs or '
                         f'--videos-per-shard; use a new --out.')
  else:
    _write_json(path, plan)


def build(items, class_names, *, out, split, layout, short_side=0, quality=90, workers=1,
          per_shard=256, num_tasks=1, task_index=0):
  """Writes this task's shards not yet done, then (once every shard is done) the merged index;
  returns the summary dict, or None while other tasks' shards are missing."""
  if not 0 <= task_index < num_tasks:
    raise ConfigError(f'task index {task_index} is not in [0, {num_tasks})')
  os.makedirs(out, exist_ok=True)
  _check_plan(out, split, items, per_shard)  # Tasks given different item lists stop here.
  num_shards = max(1, -(-len(items) // per_shard))
  names = [os.path.join(out, f'{split}-{k:05d}-of-{num_shards:05d}') for k in range(num_shards)]
  mine = [k for k in range(num_shards) if k % num_tasks == task_index]
  pending = [k for k in mine if not os.path.exists(names[k] + '.json')]
  todo = [(k, i) for k in pending for i in range(k * per_shard,
                                                 min((k + 1) * per_shard, len(items)))]
  args = ((items[i], short_side, quality) for _, i in todo)
  writers = {}
  total = sum(min(per_shard, len(items) - k * per_shard) for k in mine)
  task = f' task {task_index}/{num_tasks}' if num_tasks > 1 else ''
  with tqdm.tqdm(total=total, initial=total - len(todo), unit='video',
                 desc=f'{layout} {split}{task}') as bar:
    for (k, i), (item, loaded, error) in zip(todo, _ordered_map(_load_one, args, workers)):
      if k not in writers:
        writers[k] = _ShardWriter(names[k])
      writers[k].add(item, loaded, error)
      bar.update()
      if i == min((k + 1) * per_shard, len(items)) - 1:
        writers.pop(k).close()
  for k in pending:  # Shards with no items at all (an empty input list).
    if not os.path.exists(names[k] + '.json'):
      _ShardWriter(names[k]).close()
  missing = [k for k in range(num_shards) if not os.path.exists(names[k] + '.json')]
  if missing:
    print(f'{layout} {split}{task}: done; {len(missing)} of {num_shards} shards are left to '
          'other tasks. The last task to finish writes the index (or rerun without '
          '--task-index).')
    return None
  return _merge(out, split, layout, names, class_names)


def _merge(out, split, layout, names, class_names):
  index = collections.defaultdict(list)
  skipped = []
  for k, name in enumerate(names):
    with open(name + '.json') as f:
      shard = json.load(f)
    skipped += shard['skipped']
    for e in shard['examples']:
      index['shard'].append(k)
      for field in ('offset', 'length', 'num_frames', 'fps'):
        index[field].append(e[field])
      for label, value in e['labels'].items():
        index[label].append(value)
      index['key'].append(e['key'])
  arrays = {'shard': np.int32, 'offset': np.int64, 'length': np.int64, 'num_frames': np.int32,
            'fps': np.float64, 'label': np.int32, 'verb': np.int32, 'noun': np.int32, 'key': str}
  path = os.path.join(out, f'{split}.index.npz')
  with open(path + '.tmp', 'wb') as f:  # Atomic, as two tasks finishing together may both merge.
    np.savez(f, **{k: np.asarray(v, arrays[k]) for k, v in index.items()})
  os.replace(path + '.tmp', path)
  summary = dict(layout=layout, split=split, num_examples=len(index['key']),
                 num_skipped=len(skipped), skipped=skipped, class_names=class_names,
                 shards=[os.path.basename(n) + '.tfrecord' for n in names])
  _write_json(os.path.join(out, f'{split}.json'), summary)
  print(f'{layout} {split}: {summary["num_examples"]} examples in {len(names)} shards, '
        f'{len(skipped)} skipped (listed in {os.path.join(out, split + ".json")}).')
  for source, reason in skipped[:20]:
    print(f'  skipped {source}: {reason}')
  return summary


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('layout', choices=LAYOUTS)
  p.add_argument('--out', required=True, help='Output folder (= config.data.data_dir).')
  p.add_argument('--split', required=True, choices=('train', 'test'))
  p.add_argument('--videos', help='kinetics: class folders or files; ssv2: the .webm folder.')
  p.add_argument('--csv', default='', help='kinetics: official CSV or PySlowFast "path label".')
  p.add_argument('--annotations', help='ssv2: folder with the *.json; EK: with EPIC_100_*.csv.')
  p.add_argument('--frames', help='EK: root holding <participant>/rgb_frames/<video_id>/.')
  p.add_argument('--short-side', type=int, default=0, help='Resize short side (0 = keep).')
  p.add_argument('--jpeg-quality', type=int, default=90)
  p.add_argument('--workers', type=int, default=os.cpu_count())
  p.add_argument('--videos-per-shard', type=int, default=256)
  p.add_argument('--num-tasks', '--num_tasks', type=int, default=1,
                 help='Machines sharing the work (same command, same --out on shared storage).')
  p.add_argument('--task-index', '--task_index', type=int, default=0,
                 help='This machine, in [0, num-tasks): writes shards k = task-index mod num-tasks.')
  args = p.parse_args(argv)
  if not 0 <= args.task_index < args.num_tasks:
    p.error(f'--task-index {args.task_index} is not in [0, --num-tasks={args.num_tasks})')
  try:
    items, classes = read_layout(args)
    build(items, classes, out=args.out, split=args.split, layout=args.layout,
          short_side=args.short_side, quality=args.jpeg_quality, workers=args.workers,
          per_shard=args.videos_per_shard, num_tasks=args.num_tasks, task_index=args.task_index)
  except UserError as e:
    exit_with(e)


# The flags each layout reads its index files from.
LAYOUT_FLAGS = {'kinetics': ('videos',), 'ssv2': ('videos', 'annotations'),
                'epic_kitchens': ('frames', 'annotations')}


def read_layout(args):
  """(items, class names) of the layout the flags name. A file that cannot be opened or decoded
  is one line here; the readers raise InputError for a file not in the layout. Anything else
  they raise is a bug and keeps its traceback."""
  missing = [f'--{f}' for f in LAYOUT_FLAGS[args.layout] if not getattr(args, f)]
  if missing:
    raise ConfigError(f'{args.layout} reads its videos and labels from {" and ".join(missing)}: '
                      'give the folder')
  try:
    if args.layout == 'kinetics':
      return layouts.kinetics(args.videos, args.csv)
    if args.layout == 'ssv2':
      return layouts.ssv2(args.videos, args.annotations, args.split)
    return layouts.epic_kitchens(args.frames, args.annotations, args.split)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
    raise InputError(f'not a {args.layout} layout: {type(e).__name__}: {e}') from e


if __name__ == '__main__':
  main()

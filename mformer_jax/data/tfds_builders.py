r"""TensorFlow Datasets builders: the synthetic motion set and prepared video folders.

Importing this module registers two builders with TFDS:

  synthetic_motion  generated from `synthetic.render` (no files, no network); configs `motion`
                    and `appearance` at the renderer's defaults, or any `SyntheticMotionConfig`.
  prepared_videos   a manual-dir builder over the output folder of
                    `python -m mformer_jax.data.prepare` (configs `kinetics`, `ssv2`,
                    `epic_kitchens`); the stored JPEG bytes are copied, never re-encoded.

  import tensorflow_datasets as tfds
  from mformer_jax.data import tfds_builders  # registers the builders
  ds = tfds.load('synthetic_motion/motion', split='train', data_dir=DIR)
  ds = tfds.load('prepared_videos/kinetics', split='test', data_dir=DIR,
                 download_and_prepare_kwargs=dict(download_config=tfds.download.DownloadConfig(
                     manual_dir=PREPARED_OUT)))

Training reads `synthetic_motion` through TFDS with `--config.data.source=tfds` (random access
by index from ArrayRecord files, see `pipeline.py`); why the video datasets keep reading the
prepared shards directly is in mformer_jax/data/README.md.
"""

import dataclasses
import hashlib
import inspect
import io
import json
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mformer_jax.errors import InputError, MissingInputError
from mformer_jax.data import synthetic


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """TFDS 4.9's `code_path` imports `importlib_resources` (a backport only pinned for Python
  < 3.9) for packages installed from source; the file of the class is all it needs."""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return tfds.core.Path(inspect.getfile(cls))


@dataclasses.dataclass(eq=False)
class SyntheticMotionConfig(tfds.core.BuilderConfig):
  """Arguments of `synthetic.render` plus the split sizes."""
  num_frames: int = 8
  size: int = 32
  variant: str = 'motion'
  classes: str = ''
  seed: int = 0
  num_distractors: int = 1
  background_speed: float = 0.15
  num_train: int = 4096
  num_test: int = 512
  with_masks: bool = False

  def render_kwargs(self):
    return dict(num_frames=self.num_frames, size=self.size, variant=self.variant,
                seed=self.seed, classes=self.classes, num_distractors=self.num_distractors,
                background_speed=self.background_speed, with_masks=self.with_masks)


def synthetic_config(data_cfg):
  """The `SyntheticMotionConfig` of a training `config.data` block, named by its parameters,
  so different settings never share (or overwrite) one another's files."""
  s = data_cfg.synthetic
  params = dict(num_frames=data_cfg.num_frames, size=data_cfg.crop_size, variant=s.variant,
                classes=s.classes, seed=s.seed, num_distractors=s.num_distractors,
                background_speed=float(s.background_speed), num_train=s.num_train,
                num_test=s.num_test)
  digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
  name = f'{s.variant}_{data_cfg.num_frames}x{data_cfg.crop_size}_{digest}'
  return SyntheticMotionConfig(name=name, description=json.dumps(params), **params)


class SyntheticMotion(_Builder):
  """The synthetic motion dataset (mformer_jax.data.synthetic): class = how an object moves."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Rendered by mformer_jax.data.synthetic.render.'}
  BUILDER_CONFIGS = [
      SyntheticMotionConfig(name='motion', description='Class = the motion (every frame alike).'),
      SyntheticMotionConfig(name='appearance', variant='appearance',
                            description='Twin: class = the object (one frame suffices).'),
  ]
  _CHUNK = 64  # Videos rendered at once.

  def _info(self):
    c = self.builder_config
    features = dict(
        clip=tfds.features.Video((c.num_frames, c.size, c.size, 3), encoding_format='png'),
        label=tfds.features.ClassLabel(names=synthetic.class_names(c.variant, c.classes)),
        index=tfds.features.Scalar(np.int64, doc='Index for synthetic.render(split=...).'),
        centers=tfds.features.Tensor(shape=(c.num_frames, 2), dtype=np.float32,
                                     doc='Main object centre (row, col) in pixels.'))
    if c.with_masks:
      features['masks'] = tfds.features.Tensor(shape=(c.num_frames, c.size, c.size),
                                               dtype=np.bool_, encoding='zlib')
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features), supervised_keys=('clip', 'label'),
        description=synthetic.__doc__,
        disable_shuffling=True)  # Example i of a split is video i of `synthetic.render`.

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    c = self.builder_config
    return {'train': self._generate_examples('train', c.num_train),
            'test': self._generate_examples('test', c.num_test)}

  def _generate_examples(self, split, num):
    c = self.builder_config
    for start in range(0, num, self._CHUNK):
      data = synthetic.generate(min(self._CHUNK, num - start), start=start, split=split,
                                **c.render_kwargs())
      for i, label in enumerate(data.labels):
        example = dict(clip=data.videos[i], label=int(label), index=start + i,
                       centers=data.centers[i])
        if c.with_masks:
          example['masks'] = data.masks[i]
        yield start + i, example


def synthetic_source(data_cfg, split):
  """Random access (`src[i]`, `src.__getitems__`) to a split of the training config's TFDS
  build in `data_cfg.data_dir` (TFDS's default dir if ''), building it on first use. ArrayRecord
  files, since the training order is a permutation of indices (see pipeline.py)."""
  builder = SyntheticMotion(config=synthetic_config(data_cfg), data_dir=data_cfg.data_dir or None)
  builder.download_and_prepare(file_format='array_record')
  try:
    return builder.as_data_source(split)
  except NotImplementedError as e:  # The same config was built as TFRecord (e.g. by tfds.load).
    raise InputError(f'{builder.data_dir} holds a TFRecord build of this dataset; training '
                     'reads ArrayRecord: use another data.data_dir') from e


@dataclasses.dataclass(eq=False)
class PreparedConfig(tfds.core.BuilderConfig):
  label_keys: tuple = ('label',)


class PreparedVideos(_Builder):
  """A folder written by `python -m mformer_jax.data.prepare` (the manual dir), as TFDS."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Copies the prepared shards (one JPEG per stored frame).'}
  BUILDER_CONFIGS = [
      PreparedConfig(name='kinetics', description='Kinetics-400/600 (or class folders).'),
      PreparedConfig(name='ssv2', description='Something-Something V2.'),
      PreparedConfig(name='epic_kitchens', label_keys=('verb', 'noun'),
                     description='EPIC-KITCHENS-100 narrations (verb, noun).'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  manual_dir is the --out folder of `python -m mformer_jax.data.prepare <layout> ... --split
  train` and `--split test` (see mformer_jax/data/README.md): it holds train.json, test.json and the
  train-*/test-*.tfrecord shards.
  """

  def _info(self):
    # Class names are only known from the manual dir's summaries; set in _split_generators.
    labels = {k: tfds.features.ClassLabel() for k in self.builder_config.label_keys}
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(dict(
            video=tfds.features.Video((None, None, None, 3), encoding_format='jpeg'),
            id=tfds.features.Text(), fps=tfds.features.Scalar(np.float32),
            first_frame=tfds.features.Scalar(np.int64), **labels)),
        description='Videos prepared by mformer_jax.data.prepare; one JPEG per stored frame.')

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    splits = [s for s in ('train', 'test') if os.path.exists(os.path.join(root, f'{s}.json'))]
    if not splits:
      raise MissingInputError(f'{root} holds no prepared split (train.json / test.json); '
                              f'prepare it first:{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    summaries = {s: json.load(open(os.path.join(root, f'{s}.json'))) for s in splits}
    names = summaries[splits[0]]['class_names']
    names = names if isinstance(names, dict) else {'label': names}
    for k in self.builder_config.label_keys:
      if k not in names:
        raise InputError(f'{root} has class names for {sorted(names)}, not for {k!r}: '
                         f'use the config that matches its layout')
      self.info.features[k].names = names[k]
    return {s: self._generate_examples(root, summaries[s]) for s in splits}

  def _generate_examples(self, root, summary):
    keys = self.builder_config.label_keys
    for shard in summary['shards']:
      for record in tf.data.TFRecordDataset(os.path.join(root, shard)).as_numpy_iterator():
        context, lists = tf.io.parse_single_sequence_example(
            record, context_features={
                'video/id': tf.io.FixedLenFeature([], tf.string),
                'video/fps': tf.io.FixedLenFeature([], tf.float32),
                'video/first_frame': tf.io.FixedLenFeature([], tf.int64),
                **{f'clip/{k}/index': tf.io.FixedLenFeature([], tf.int64) for k in keys}},
            sequence_features={'image/encoded': tf.io.FixedLenSequenceFeature([], tf.string)})
        key = context['video/id'].numpy().decode()
        # File objects are stored byte for byte (no JPEG re-encoding).
        frames = [io.BytesIO(j) for j in lists['image/encoded'].numpy()]
        yield key, dict(video=frames, id=key, fps=float(context['video/fps']),
                        first_frame=int(context['video/first_frame']),
                        **{k: int(context[f'clip/{k}/index']) for k in keys})

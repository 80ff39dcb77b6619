"""`config.data` blocks with the official Motionformer defaults per dataset.

What differs between datasets is a field here (sampler, frame offset, label keys, source,
augmentations), so a new dataset is a config, not an edit of the pipeline. The class count is
the model's (`config.model.num_classes`), seeded by `num_classes`.
"""

import ml_collections

from mformer_jax.errors import ConfigError

DATASETS = ('kinetics400', 'kinetics600', 'ssv2', 'epic_kitchens', 'synthetic_motion')
_NUM_CLASSES = {'kinetics400': 400, 'kinetics600': 600, 'ssv2': 174, 'epic_kitchens': 97}
RAND_AUGMENT = {'ssv2': 'rand-m20-mstd0.5-inc1', 'epic_kitchens': 'rand-m15-mstd0.5-inc1'}


def clip_frames(cfg) -> int:
  """Frames per clip the model gets: data.num_frames, or 1 for the single-frame model (here, not
  in the pipeline, so that config_lib.finalize checks it without TensorFlow)."""
  return 1 if cfg.single_frame else cfg.num_frames


COLOUR = 'colour'  # the training batch's key of the colour jitter's draws: (batch, 7) float32


def colour_on_device(cfg) -> bool:
  """Whether training batches carry colour-jitter draws for the training step to apply
  (`device_augment`): the real datasets' jitter; synthetic_motion clips are used as rendered."""
  return bool(cfg.color_jitter) and cfg.source == 'prepared'


def train_jitter_scales(cfg) -> tuple:
  """The short sides training resizes to, U[lo, hi]: data.train_jitter_scales, or when it is ()
  (the default) the official U[256, 320] at a 224 crop scaled with data.crop_size (the official
  336 configs, K400 16x8 and SSv2 16x4, set exactly that: [384, 480]). synthetic_motion clips are
  rendered at the crop: (crop, crop). config_lib.finalize writes the result into the config."""
  if cfg.train_jitter_scales:
    return tuple(cfg.train_jitter_scales)
  if cfg.name == 'synthetic_motion':
    return (cfg.crop_size, cfg.crop_size)
  return (round(256 * cfg.crop_size / 224), round(320 * cfg.crop_size / 224))


def data_config(dataset: str, *, num_frames: int, sampling_rate: int,
                crop_size: int) -> ml_collections.ConfigDict:
  """Every field has a concrete default so `--config.data.x=y` overrides always type-check."""
  if dataset not in DATASETS:
    raise ConfigError(f'Unknown dataset {dataset!r}; expected one of {DATASETS}.')
  synthetic = dataset == 'synthetic_motion'
  c = ml_collections.ConfigDict()
  c.name = dataset
  # prepared: shards of `python -m mformer_jax.data.prepare`; synthetic: rendered in memory;
  # tfds: synthetic_motion read from its TensorFlow Datasets build (data/tfds_builders.py).
  c.source = 'synthetic' if synthetic else 'prepared'
  c.data_dir = ''  # prepared: the --out folder of prepare; tfds: the TFDS data_dir ('' = default).
  # What each example is labelled with; Epic-Kitchens has a verb and a noun per clip. In an
  # experiment config, config_lib.finalize re-derives it from the model's heads.
  c.label_keys = ('verb', 'noun') if dataset == 'epic_kitchens' else ('label',)
  # linspace: a clip of num_frames x sampling_rate on the 30 fps timeline (Kinetics, EK);
  # segment: one frame from each of num_frames equal segments of the video (SSv2).
  c.sampler = 'segment' if dataset == 'ssv2' else 'linspace'
  c.frame_offset = int(dataset == 'epic_kitchens')  # EK frame files are numbered from 1
  c.num_frames = num_frames
  c.sampling_rate = sampling_rate  # linspace sampler only.
  # segment sampler: the fraction of the video its num_frames segments cover (random position in
  # training, centred at test); 1 = the whole video (official). The stride sweep's "S / k".
  c.segment_span = 1.0
  # Single-frame model (appendix Table 1): the clip's frames are sampled as above, then one is
  # kept: a random one in training, the middle one of each view at test. Clips are (1, S, S, 3).
  c.single_frame = False
  c.crop_size = crop_size
  c.target_fps = 30.0  # Sampling happens on a 30 fps-equivalent timeline, as official.
  # Short-side scale jitter (lo, hi); () = derived from the final crop (`train_jitter_scales`).
  c.train_jitter_scales = ()
  c.inverse_uniform_scale = dataset == 'ssv2'  # Official INV_UNIFORM_SAMPLE for SSv2.
  c.test_num_clips = 1 if dataset in ('ssv2', 'synthetic_motion') else 10
  c.test_num_crops = 1 if synthetic else 3
  # SSv2 labels say left/right; the synthetic classes say left/right and clockwise.
  c.random_flip = dataset not in ('ssv2', 'synthetic_motion')
  c.random_resized_crop = False  # True in the official K400 32x3 config.
  c.bgr = dataset == 'epic_kitchens'  # The released EK models were trained on BGR input.
  c.color_jitter = dataset in ('kinetics400', 'kinetics600')
  c.color_jitter_strength = 0.4
  c.rand_augment = RAND_AUGMENT.get(dataset, '')
  c.num_parallel_calls = 0  # 0 = tf.data.AUTOTUNE.
  # Records that fail their CRC, do not parse or hold a frame that does not decode are skipped,
  # counted and reported, up to this fraction of a host's share of a split; beyond, an error.
  c.max_bad_fraction = 0.01
  c.prefetch = 2  # Batches.
  # synthetic_motion clips are rendered at exactly num_frames x crop_size and used as they are:
  # the spatial/colour augmentations above apply to the real datasets only.
  c.synthetic = ml_collections.ConfigDict(dict(
      variant='motion',  # 'motion' (class = how it moves) or 'appearance' (class = what it is).
      classes='',  # Comma-separated subset of synthetic.MOTION_CLASSES; '' = all.
      num_train=4096,
      num_test=512,
      seed=0,
      num_distractors=1,
      background_speed=0.15,  # Max background shift over a clip, in image widths.
      speed=1.0,  # Every velocity x speed (synthetic.render): the stride sweep's twin.
  ))
  return c


def num_classes(dataset: str) -> int:
  """Classes of the single head (Epic-Kitchens: verbs; its nouns are `ModelConfig.num_nouns`)."""
  if dataset == 'synthetic_motion':
    from mformer_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    return len(synthetic.MOTION_CLASSES)
  return _NUM_CLASSES[dataset]

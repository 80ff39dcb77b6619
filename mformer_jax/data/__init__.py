"""Video input: dataset preparation, tf.data pipelines, the synthetic motion dataset.

Importing this package is cheap (no TensorFlow): the trainer imports `config` early and the
preparation workers import `video`/`layouts` only.
"""

from mformer_jax.errors import ConfigError, MissingInputError

# The exact preparation commands, kept in sync with mformer_jax/data/README.md (the dataset
# preparation guide). Placeholders in caps.
PREPARE_COMMANDS = {
    'kinetics400': ('python -m mformer_jax.data.prepare kinetics --videos K400/train --split train '
                    '--out OUT --short-side 320  (and --videos K400/val --split test)'),
    'kinetics600': ('python -m mformer_jax.data.prepare kinetics --videos K600/train --split train '
                    '--out OUT --short-side 320  (and --videos K600/val --split test)'),
    'ssv2': ('python -m mformer_jax.data.prepare ssv2 --videos SSV2/20bn-something-something-v2 '
             '--annotations SSV2/labels --split train --out OUT  (and --split test)'),
    'epic_kitchens': ('python -m mformer_jax.data.prepare epic_kitchens --frames EPIC-KITCHENS '
                      '--annotations epic-kitchens-100-annotations --split train --out OUT  '
                      '(and --split test)'),
}

# Pixel conventions of the model sources. The Motionformer's (official DATA.MEAN = DATA.STD = 0.5)
# maps [0, 255] to [-1, 1]; the pipelines (numpy here, TF `augment.normalise`) and every analysis
# go through `pixel_affine`, the one home of the arithmetic and of the colour order.
# Image ViTs (timm, DINO) were trained on the ImageNet mean and std.
PIXEL_MEAN = (0.5, 0.5, 0.5)
PIXEL_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Luma weights of the colour jitter's contrast and saturation (ITU-R BT.601, as torchvision).
GREY_WEIGHTS = (0.299, 0.587, 0.114)


def pixel_affine(mean=PIXEL_MEAN, std=PIXEL_STD):
  """(scale, shift), float32 (3,) each, RGB order: model input = frames / scale - shift.

  frames / (255 std) - mean / std rather than (frames / 255 - mean) / std, so that the
  Motionformer's convention is exactly frames / 127.5 - 1 in float32 (the division the official
  pipeline and ours have always done)."""
  import numpy as np  # pylint: disable=g-import-not-at-top  (keeps the package import light)
  mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
  if mean.shape != (3,) or std.shape != (3,) or (std <= 0).any():
    raise ConfigError(f'pixel mean {mean.tolist()} / std {std.tolist()}: expected 3 values each, '
                      'std > 0')
  return (255.0 * std).astype(np.float32), (mean / std).astype(np.float32)


def to_model_input(frames, bgr=False, mean=PIXEL_MEAN, std=PIXEL_STD):
  """[0, 255] RGB frames (..., 3) -> float32 model input: normalised by `pixel_affine`, then the
  channels reversed for a model trained on BGR (config.data.bgr: the released EK models).

  numpy in, numpy out; a jax array (also inside jit) stays a jax array."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  scale, shift = pixel_affine(mean, std)
  x = frames.astype(np.float32) if hasattr(frames, 'astype') else np.asarray(frames, np.float32)
  x = x / scale - shift
  return x[..., ::-1] if bgr else x


def to_display_rgb(model_input, bgr=False, mean=PIXEL_MEAN, std=PIXEL_STD):
  """The inverse of `to_model_input`, for showing what the model saw: uint8 RGB (..., 3)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  scale, shift = pixel_affine(mean, std)
  x = np.asarray(model_input, np.float32)
  x = x[..., ::-1] if bgr else x
  return np.clip(np.round((x + shift) * scale), 0, 255).astype(np.uint8)


def dataset_not_found(name: str, data_dir: str, split: str) -> MissingInputError:
  """The error of a real dataset requested where `data_dir` holds no prepared split: how to
  prepare it."""
  cmd = PREPARE_COMMANDS.get(name, 'see mformer_jax/data/README.md')
  where = repr(data_dir) if data_dir else 'config.data.data_dir (not set)'
  return MissingInputError(
      f'{name}: no prepared {split!r} split in {where}. Prepare it once with\n  {cmd}\n'
      f'then pass --config.data.data_dir=OUT (details: mformer_jax/data/README.md). '
      f'Or use --config.data.name=synthetic_motion, which needs no files.')

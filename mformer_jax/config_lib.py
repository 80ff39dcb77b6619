"""The config every file in configs/ builds on: `make_config`, `finalize` and `parse_arg`.

Released models (the Motionformer reference spec, sections 1.8 and 6):

| variant          | frames x rate          | crop | attention  | base LR  | global batch |
| ---------------- | ---------------------- | ---- | ---------- | -------- | ------------ |
| motionformer     | 16 x 4                 | 224  | trajectory | 1e-4     | 256          |
| motionformer_l   | 32 x 3                 | 224  | trajectory | 3.75e-5  | 64           |
| motionformer_hr  | 16 x 8 (K400) / 16 x 4 | 336  | trajectory | 3.75e-5  | 64           |
| joint, divided   | 16 x 4                 | 224  | joint / divided | 1e-4 | 256          |

Global batches follow the maintainer's statement (8 nodes x 8 GPUs: 4 clips/GPU for B models,
int(12/8) = 1 clip/GPU for L/HR); the yaml files' NUM_SHARDS=4 would halve them.

The argument of a config file: every file in configs/ defines `get_config(arg: str = '')`, and
`--config=configs/FILE.py:ARG` passes it ARG ('' without `:ARG`). ARG is a comma-separated list
of options read by `parse_arg`: `key=value` sets a named option, a bare value sets the file's
next positional option; each file's docstring lists its options and their defaults, e.g.

  released.py:k400_motionformer_224_16x4      name
  single_frame.py:ssv2                        dataset
  lra_listops.py:nystrom,cpu                  attention, preset
  own_videos.py:PREP,motionformer_l           prepared, variant
  motion_twins.py:frames=1,variant=appearance named only
  demo.py, k400_base.py                       none

Any field is then overridden by `--config.FIELD=VALUE`; `import configs.FILE` works from the
repository root (configs/ is a package).
"""
import collections
import dataclasses
import importlib.util
import os
import re
import sys

import ml_collections
from absl import flags

from mformer_jax import errors
from mformer_jax.data import config as data_config_lib
from mformer_jax.model import ModelConfig

DATASETS = data_config_lib.DATASETS
# The paper's machines: the global batches below are these many GPUs x the clips per GPU.
PAPER_DEVICES = 8 * 8
VARIANTS = ('motionformer', 'motionformer_l', 'motionformer_hr', 'joint', 'divided', 'space',
            'orthoformer')


def model_config(variant: str) -> ml_collections.ConfigDict:
  """`ModelConfig`'s defaults (Mformer-B: ViT-B/16, 2x16x16 tubelets) with the training
  choices on top; the variant picks frames, crop and attention."""
  m = ml_collections.ConfigDict(dataclasses.asdict(ModelConfig()))
  # Training differs from the reference defaults in the paper's mixed precision. The attention
  # kernel stays 'auto' (ModelConfig.trajectory_kernel: the exact memory-lean one where it
  # applies; on GPU prefer trajectory_impl='frames' with attention_backend='cudnn').
  m.dtype = 'bfloat16'
  if variant == 'motionformer_l':
    m.num_frames = 32
  elif variant == 'motionformer_hr':
    m.img_size = 336
  elif variant in ('joint', 'divided', 'space'):
    m.attention = variant
  elif variant == 'orthoformer':
    m.approx = 'orthoformer'
  return m


ConfigError = errors.ConfigError  # the error of every check below (one line, exit status 2)


def _convert(value: str, default):
  if isinstance(default, bool):  # bool('False') is True
    if value not in ('True', 'False', '1', '0'):
      raise ValueError(value)
    return value in ('True', '1')
  return type(default)(value)


def parse_arg(arg: str, defaults: dict, positional: tuple = (), *, file: str = 'config') -> dict:
  """`defaults` updated from a config file's argument (the convention of this module's docstring).

  `key=value` sets option `key` (a key from `defaults`); a bare item sets the next name of
  `positional` (an empty one keeps its default, so `,x` sets only the second). Values take the
  type of their default (bool: True/False/1/0). An unknown key, an option set twice, a bare item
  past `positional` or a value that does not convert is a ConfigError naming `file`'s options.
  """
  opts, given, bare = dict(defaults), set(), iter(positional)
  names = ', '.join(positional) + ' (or name=value)' if positional else 'name=value'
  usage = f'{file} takes {names} with names {sorted(defaults)}' if defaults else (
      f'{file} takes no argument')
  for item in arg.split(',') if arg else ():
    key, eq, value = item.partition('=')
    if not (eq and key.isidentifier()):  # a bare value (a folder may hold '=')
      key, value = next(bare, None), item
      if key is None:
        raise ConfigError(f'{file}:{arg}: too many values; {usage}')
      if not value:
        continue
    if key not in defaults or key in given:
      raise ConfigError(f'{file}:{arg}: {"unknown" if key not in defaults else "repeated"} '
                        f'option {key!r}; {usage}')
    try:
      opts[key] = _convert(value, defaults[key])
    except ValueError:
      raise ConfigError(f'{file}:{arg}: {key}={value!r} is not a '
                        f'{type(defaults[key]).__name__}; {usage}') from None
    given.add(key)
  return opts


MODES = ('train', 'eval', 'predict')


def _rule(types, test, what):
  return types, test, what


def _at_least(lo, types=(int, float)):
  return _rule(types, lambda v: v >= lo, f'>= {lo}')


def _above(lo, types=(int, float)):
  return _rule(types, lambda v: v > lo, f'> {lo}')


_FRACTION = _rule((int, float), lambda v: 0 <= v < 1, 'in [0, 1)')
_COUNT = _above(0, (int,))
# The values a numeric field may take, wherever the others are meaningless (a zero batch, a
# negative learning rate: gradient ascent): {field: (types, test, what the test says)}. Checked
# by `check_values` (run by `finalize`) and, for the model's fields, by `model_overrides`.
# Every numeric field is here but the seeds (any integer is one).
VALUE_RULES = {
    'train.batch_size': _COUNT, 'train.num_epochs': _above(0), 'train.base_lr': _at_least(0),
    'train.lr_decay': _above(0), 'train.warmup_epochs': _at_least(0),
    'train.weight_decay': _at_least(0), 'train.label_smoothing': _FRACTION,
    'train.grad_clip_norm': _at_least(0), 'train.log_every_steps': _COUNT,
    'train.max_steps': _rule((int,), lambda v: v == -1 or v > 0, '-1 (no cap) or > 0'),
    'checkpoint.every_steps': _COUNT, 'checkpoint.keep': _COUNT,
    'checkpoint.keep_best': _at_least(0, (int,)),
    'eval.batch_size': _COUNT, 'eval.every_epochs': _at_least(0),
    'eval.step': _at_least(-1, (int,)), 'mesh.fsdp_min_size': _at_least(0, (int,)),
    'data.num_frames': _COUNT, 'data.sampling_rate': _COUNT, 'data.crop_size': _COUNT,
    'data.frame_offset': _at_least(0, (int,)),
    'data.segment_span': _rule((int, float), lambda v: 0 < v <= 1, 'in (0, 1]'),
    'data.target_fps': _above(0), 'data.test_num_clips': _COUNT,
    'data.test_num_crops': _rule((int,), lambda v: v in (1, 3), '1 (centre) or 3'),
    'data.color_jitter_strength': _at_least(0), 'data.num_parallel_calls': _at_least(0, (int,)),
    'data.max_bad_fraction': _rule((int, float), lambda v: 0 <= v <= 1, 'in [0, 1]'),
    'data.prefetch': _at_least(0, (int,)), 'data.synthetic.num_train': _COUNT,
    'data.synthetic.num_test': _COUNT, 'data.synthetic.num_distractors': _at_least(0, (int,)),
    'data.synthetic.background_speed': _at_least(0), 'data.synthetic.speed': _above(0),
    **{f'model.{f}': _COUNT for f in (
        'num_classes', 'num_verbs', 'num_nouns', 'num_frames', 'img_size', 'patch_size',
        'tubelet_size', 'pretrain_img_size', 'embed_dim', 'depth', 'num_heads', 'num_landmarks',
        'performer_features')},
    'model.mlp_ratio': _above(0), 'model.nystrom_iters': _at_least(0, (int,)),
    'model.layer_scale': _at_least(0),  # LayerScale's initial gamma; 0 = none
    'model.query_chunk': _at_least(0, (int,)),
    **{f'model.{f}': _FRACTION for f in ('dropout', 'attn_dropout', 'drop_path', 'head_dropout')},
}


def _check(field: str, value) -> None:
  types, test, what = VALUE_RULES[field]
  if isinstance(value, bool) or not isinstance(value, types):
    kind = 'an integer' if types == (int,) else 'a number'
    raise ConfigError(f'config.{field}={value!r}: expected {kind} {what}')
  if not test(value):
    raise ConfigError(f'config.{field}={value!r}: expected {what}')


def _get(config, field: str):
  node = config
  for key in field.split('.'):
    if not hasattr(node, 'get') or key not in node:
      return None
    node = node[key]
  return node


def check_values(config) -> None:
  """ConfigError (one line naming the field) for a value no run can mean: VALUE_RULES, the mode,
  the heads dividing the width, ascending LR boundaries, a jitter range. Fields a config does not
  have are skipped."""
  for field in VALUE_RULES:
    value = _get(config, field)
    if value is not None:
      _check(field, value)
  if config.get('mode') is not None and config.mode not in MODES:
    raise ConfigError(f'config.mode={config.mode!r}: expected one of {", ".join(MODES)}')
  model = config.get('model')
  if model is not None and model.embed_dim % model.num_heads:
    raise ConfigError(f'config.model.num_heads={model.num_heads} does not divide '
                      f'config.model.embed_dim={model.embed_dim}')
  bounds = tuple(_get(config, 'train.lr_boundaries') or ())
  if any(isinstance(b, bool) or not isinstance(b, (int, float)) or b < 0 for b in bounds) or (
      list(bounds) != sorted(bounds)):
    raise ConfigError(f'config.train.lr_boundaries={bounds}: expected ascending epochs >= 0, '
                      "given once, e.g. --config.train.lr_boundaries='(20, 30)'")
  jitter = tuple(_get(config, 'data.train_jitter_scales') or ())
  if jitter and not (len(jitter) == 2 and all(isinstance(j, int) and not isinstance(j, bool)
                                             for j in jitter) and 0 < jitter[0] <= jitter[1]):
    raise ConfigError(f'config.data.train_jitter_scales={jitter}: expected () (derived from the '
                      'crop) or two short sides 0 < lo <= hi')


def model_overrides(text: str, *, file: str) -> dict:
  """'num_heads=12,img_size=336' -> {field: value} for the fields given, each of its ModelConfig
  field's type (`parse_arg`) and within VALUE_RULES: convert's --override, analysis.davis's
  --model_override. Anything else is a ConfigError naming `file`."""
  values = parse_arg(text, dataclasses.asdict(ModelConfig()), file=file)
  given = {key: values[key] for key in (item.partition('=')[0] for item in text.split(',') if item)}
  for key, value in given.items():
    if f'model.{key}' in VALUE_RULES:
      try:
        _check(f'model.{key}', value)
      except ConfigError as e:
        raise ConfigError(f'{file}: {str(e).removeprefix("config.model.")}') from None
  return given


def check_repeated_flags(argv, flag_values) -> None:
  """ConfigError for a tuple field of --config given more than once: absl parses tuple fields as
  multi flags, which concatenate (`--config.train.lr_boundaries=(13,15)` then `=(1,2)` would
  train with (13, 15, 1, 2)). Other repeated flags keep absl's rule: the last one wins."""
  counts = collections.Counter(re.match(r'--([^=]+)', a).group(1) for a in argv[1:]
                               if a.startswith('--config.'))
  for name, count in counts.items():
    if count > 1 and name in flag_values and isinstance(flag_values[name], flags.MultiFlag):
      raise ConfigError(f'--{name} given {count} times (tuple flags would be concatenated); '
                        f"give the whole tuple once, e.g. --{name}='(1, 2)'")


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The one step every entry point runs on its config after the --config overrides (main,
  features, plan, analysis.cost, analysis.stride_sweep); returns the config.

  The clip geometry is set on both sides, data.num_frames / crop_size for the pipeline and
  model.num_frames / img_size for the model, and every config sets both: a disagreement (an
  override of one side) is refused, not derived, as either side may be the one meant.
  data.train_jitter_scales left at () is derived from the final crop
  (`data.config.train_jitter_scales`), so a crop set on the command line brings its jitter.
  data.label_keys is derived from `ModelConfig.heads` (the one place that decides the heads),
  replacing any value: the pipeline yields exactly the labels the model predicts. Every value
  is checked first (`check_values`: a ConfigError naming the field), and so is the command
  line (`check_repeated_flags`). Configs without a video model (configs/lra_listops.py) pass
  unchanged.
  """
  check_repeated_flags(sys.argv, flags.FLAGS)  # the command's flags, where it has --config
  data, model = config.get('data'), config.get('model')
  if data is None or model is None or 'crop_size' not in data:
    return config
  check_values(config)
  frames = ('data.single_frame=True (clips of 1 frame)' if data.single_frame else
            f'data.num_frames={data.num_frames}')
  for a, va, b, vb in (
      (f'data.crop_size={data.crop_size}', data.crop_size,
       f'model.img_size={model.img_size}', model.img_size),
      (frames, data_config_lib.clip_frames(data),
       f'model.num_frames={model.num_frames}', model.num_frames)):
    if va != vb:
      raise ConfigError(f'config.{a} but config.{b}: the pipeline\'s clips are the model\'s '
                        'input, so both must agree')
  data.train_jitter_scales = data_config_lib.train_jitter_scales(data)
  data.label_keys = tuple(ModelConfig.from_config(model).heads)
  return config


def load_config(spec: str, *, final: bool = True) -> ml_collections.ConfigDict:
  """The config `--config=SPEC` gives, for code that is not an absl command: SPEC is
  'path/to/file.py' or 'path/to/file.py:ARG' (ARG goes to its get_config), finalized unless
  `final=False` (to override fields first, then `finalize`)."""
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise errors.MissingInputError(f'no config file {path}')
  name = os.path.splitext(os.path.basename(path))[0]
  module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path))
  module.__spec__.loader.exec_module(module)
  config = module.get_config(arg)
  return finalize(config) if final else config


def make_config(dataset: str, variant: str = 'motionformer') -> ml_collections.ConfigDict:
  if dataset not in DATASETS:
    raise ConfigError(f'dataset {dataset!r}; expected one of {DATASETS}')
  if variant not in VARIANTS:
    raise ConfigError(f'variant {variant!r}; expected one of {VARIANTS}')
  config = ml_collections.ConfigDict()
  config.experiment = f'{dataset}_{variant}'
  config.mode = 'train'           # train | eval | predict
  config.video = ''               # predict: the video file
  # predict: also write config.video with the top labels drawn on it (.mp4/.webm/.gif; '' = print
  # only), and with predict_query=FRAME,X,Y (pixels of the model's centre view) the clip the
  # model saw with that point's last-layer attention map overlaid instead (overlay.py).
  config.predict_output = ''
  config.predict_query = ''
  config.seed = 0

  config.model = model_config(variant)
  frames, rate = config.model.num_frames, 4
  if variant == 'motionformer_l':
    rate = 3
  elif variant == 'motionformer_hr' and dataset == 'kinetics400':
    rate = 8
  config.data = data_config_lib.data_config(dataset, num_frames=frames, sampling_rate=rate,
                                            crop_size=config.model.img_size)
  config.model.epic_kitchens = dataset == 'epic_kitchens'
  config.model.num_classes = data_config_lib.num_classes(dataset)
  if dataset == 'ssv2' and variant == 'joint':
    config.data.rand_augment = ''   # the official SSv2 joint config has RandAugment off
  if dataset == 'kinetics400' and variant == 'motionformer_l':
    config.data.random_resized_crop = True

  big = variant in ('motionformer_l', 'motionformer_hr')
  epic = dataset == 'epic_kitchens'
  t = config.train = ml_collections.ConfigDict()
  t.batch_size = PAPER_DEVICES * (1 if big else 4)  # global, over all hosts and devices
  t.num_epochs = 50.0 if epic else 35.0       # steps = num_epochs * (training clips // batch)
  t.base_lr = 3.75e-5 if big else 1e-4
  t.lr_boundaries = (30.0, 40.0) if epic else (20.0, 30.0)  # epochs; x lr_decay at each
  t.lr_decay = 0.1
  t.warmup_epochs = 0.0                       # linear from 0 (official: none)
  t.weight_decay = 0.05
  t.decay_norms_and_biases = True             # official: decay on every parameter
  t.label_smoothing = 0.2
  t.grad_clip_norm = 0.0                      # 0 = off (official)
  # AdamW inside the backward pass, block by block (fused.py): one block's gradient live at a
  # time. Needs model.scan_blocks=True and grad_clip_norm=0.
  t.fused_update = False
  t.log_every_steps = 50
  t.max_steps = -1                            # >0 caps the run (smoke tests)

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 1000        # also after every evaluation and at the end
  config.checkpoint.keep = 3                  # the latest N
  config.checkpoint.keep_best = 1             # plus the N best by best_metric (0 = off)
  config.checkpoint.best_metric = 'action_top1' if epic else 'top1'
  # A newest checkpoint that cannot be read or fails its checksum: False = warn and use the
  # newest one that passes (a trainer moves the broken one to WORKDIR/broken_checkpoints/);
  # True = stop (exit status 2) naming the readable steps.
  config.checkpoint.strict_restore = False

  config.init = ml_collections.ConfigDict()
  config.init.imagenet = ''       # timm ViT-B/16 state dict (.pth/.npz); '' = from scratch
  config.init.checkpoint = ''     # official .pyth/.npz, a `python -m mformer_jax.convert` folder
                                  # or another run's workdir
  config.init.reset_head = False  # re-initialise the classifier (e.g. K400 -> SSv2 fine-tuning)
  config.init.random_tubelet = False  # from scratch: random tubelet kernel, not the official zeros

  config.mesh = ml_collections.ConfigDict()
  config.mesh.fsdp = False        # shard params/optimizer state over the data axis (L/HR models)
  config.mesh.fsdp_min_size = 2**20  # leaves with fewer elements stay replicated

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 32     # global, in views
  config.eval.every_epochs = 5.0  # during training (official); 0 = only at the end
  config.eval.step = -1           # eval/predict mode: checkpoint step, -1 = latest
  # Where the reports go (metrics.json, confusion matrices: <dir>/<step tag>/); '' = WORKDIR/eval.
  # Another folder evaluates a finished run on a read-only mount.
  config.eval.output_dir = ''
  return config

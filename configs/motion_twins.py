r"""CPU-sized twins of the appendix motion-cue studies (Table 1, Fig. 1, .1.3) on synthetic data.

  python -m mformer_jax.main --workdir=workdirs/twin_traj \
      --config=configs/motion_twins.py:attention=trajectory,variant=motion,speed=1,seed=0
  python -m mformer_jax.main --workdir=workdirs/twin_1frame \
      --config=configs/motion_twins.py:frames=1,variant=appearance

Options (config_lib.parse_arg; named only, any subset): attention (trajectory | joint | divided),
frames (8, or 1 = the single-frame ViT of Table 1), variant (motion: the class is how the object
moves; appearance: what it is), speed (the Fig. 1 stride: every velocity x speed), seed, steps.
The drivers: `python -m mformer_jax.analysis.stride_sweep` and the commands in
paper/motion_cues.md.

Data: the demo's four translation classes (right/left/down/up; chance 25 %), one object, no
distractors, still background: the full 11-class set keeps models this small at chance for
>1,500 steps, these four leave it within a few hundred. Model: the demo's Motionformer made
smaller (depth 2) so that a cell trains in minutes on a 2-core CPU. The learning rate was chosen
by `mformer_jax/analysis/twin_search.py` (every lr x schedule x stride x seed cell on one
accelerator).
"""
from mformer_jax import config_lib
from mformer_jax.analysis import single_frame

DEFAULTS = dict(attention='trajectory', frames=8, variant='motion', speed=1.0, seed=0, steps=768)


def parse(arg: str) -> dict:
  opts = config_lib.parse_arg(arg, DEFAULTS, file='motion_twins.py')
  if opts['frames'] not in (1, 8) or opts['attention'] not in ('trajectory', 'joint', 'divided'):
    raise config_lib.ConfigError(f'motion_twins.py: frames must be 1 or 8 and attention '
                                 f'trajectory, joint or divided (got {opts})')
  return opts


def get_config(arg: str = ''):
  o = parse(arg)
  variant = 'motionformer' if o['attention'] == 'trajectory' else o['attention']
  config = config_lib.make_config('synthetic_motion', variant)
  config.experiment = f"twin_{o['variant']}_{o['attention']}_f{o['frames']}_x{o['speed']:g}"
  config.seed = o['seed']
  c = config.data
  c.num_frames, c.crop_size, c.train_jitter_scales = 8, 32, (32, 32)
  s = c.synthetic
  s.variant, s.speed, s.seed = o['variant'], o['speed'], 0  # same clips for every model seed
  s.classes = 'move_right,move_left,move_down,move_up'
  s.num_distractors, s.background_speed = 0, 0.0
  s.num_train, s.num_test = 4096, 512

  m = config.model
  m.num_frames, m.img_size, m.pretrain_img_size, m.patch_size = 8, 32, 32, 8
  m.num_classes = 4
  m.embed_dim, m.depth, m.num_heads = 64, 2, 4
  m.drop_path = 0.0
  m.dtype, m.trajectory_impl = 'float32', 'einsum'  # float32 is faster on CPUs
  config.init.random_tubelet = True  # from scratch the official zero tubelet kernel never moves
  if o['frames'] == 1:
    single_frame.single_frame(config)

  t = config.train
  t.batch_size = 32
  t.num_epochs = o['steps'] * t.batch_size / s.num_train
  # 1e-3 leaves chance late or never in a third of the cells (the model sits at ln 4 for a
  # seed-dependent number of steps); 2.5e-4 leaves it in every cell (paper/motion_cues.md).
  t.base_lr = 2.5e-4
  t.warmup_epochs = t.num_epochs / 16
  t.lr_boundaries = (t.num_epochs * 0.8, t.num_epochs * 0.95)
  t.label_smoothing = 0.0
  t.log_every_steps = 64
  config.eval.every_epochs = 0.0  # only at the end
  config.eval.batch_size = 128
  config.checkpoint.every_steps = 256
  config.checkpoint.keep_best = 0
  return config

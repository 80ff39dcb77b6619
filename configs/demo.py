r"""Demo: a small Motionformer (trajectory attention) trained on the synthetic motion dataset.

  bash launch/demo.sh          # sets up .venv if needed, then runs:
  python -m mformer_jax.main --config=configs/demo.py --workdir=workdirs/demo

The four translation classes of the synthetic motion dataset (move right/left/down/up: every
single frame looks alike across classes, only the motion tells them apart; chance = 25 %).
8 frames of 32 px, 8x8 patches x 4 tubelet slots = 64 tokens, dim 64, depth 3 (0.23M params),
trained from scratch for 16 epochs (2048 steps of 32 clips), a few minutes on a 2-core CPU; the
measured accuracy and time are in the README's "Two commands" section. The loss sits near ln 4
for a few hundred steps before it drops, and when exactly depends on float rounding (seed,
attention impl), so much shorter runs vary widely; 16 epochs leave margin.
Everything is generated in memory: no files, no network. No options (config_lib.parse_arg).
"""
from mformer_jax import config_lib


def get_config(arg: str = ''):
  config_lib.parse_arg(arg, {}, file='demo.py')  # no options
  config = config_lib.make_config('synthetic_motion', 'motionformer')
  config.experiment = 'demo'
  c = config.data
  c.num_frames, c.crop_size = 8, 32
  c.train_jitter_scales = (32, 32)
  # The four translation classes, one object on a still background: learnable from scratch in
  # minutes (with distractors, a moving background or all 11 classes a model this small needs
  # far longer to leave chance).
  c.synthetic.classes = 'move_right,move_left,move_down,move_up'
  c.synthetic.num_distractors, c.synthetic.background_speed = 0, 0.0
  c.synthetic.num_train, c.synthetic.num_test = 4096, 512

  m = config.model
  m.num_frames, m.img_size, m.pretrain_img_size, m.patch_size = 8, 32, 32, 8
  m.num_classes = 4
  m.embed_dim, m.depth, m.num_heads = 64, 3, 4
  m.drop_path = 0.1
  m.dtype = 'float32'  # bfloat16 is slower than float32 on CPUs
  config.init.random_tubelet = True  # from scratch the official zero tubelet kernel never moves

  t = config.train
  t.batch_size = 32
  t.num_epochs = 16.0
  t.base_lr = 1e-3             # a small model from scratch: 10x the fine-tuning LR
  t.warmup_epochs = 0.5
  t.lr_boundaries = (13.0, 15.0)  # the official shape (x0.1, x0.01), late: most steps at full LR
  t.label_smoothing = 0.0
  t.log_every_steps = 50
  config.eval.every_epochs = 4.0
  config.eval.batch_size = 64
  config.checkpoint.every_steps = 256
  return config

r"""Demo: a small Motionformer (trajectory attention) trained on the synthetic motion dataset.

  bash launch/demo.sh          # sets up .venv if needed, then runs:
  python -m mformer_jax.main --config=configs/demo.py --workdir=workdirs/demo

11 classes that differ only in how an object moves (every single frame looks alike across
classes; chance = 9.1 %). 8 frames of 32 px, 4x4 patches x 4 tubelet slots = 64 tokens, dim 64,
depth 3. Trains from scratch on the 2-core CPU in about 5 minutes and reaches roughly
EXPECTED_ACC top-1 on the 512 test videos. Everything is generated in memory: no files, no network.
"""
from mformer_jax import config_lib


def get_config():
  config = config_lib.make_config('synthetic_motion', 'motionformer')
  config.experiment = 'demo'
  c = config.data
  c.num_frames, c.crop_size = 8, 32
  c.train_jitter_scales = (32, 32)
  c.synthetic.num_train, c.synthetic.num_test = 4096, 512

  m = config.model
  m.num_frames, m.img_size, m.pretrain_img_size, m.patch_size = 8, 32, 32, 8
  m.embed_dim, m.depth, m.num_heads = 64, 3, 4
  m.drop_path = 0.1
  m.dtype = 'float32'  # bfloat16 is slower than float32 on CPUs

  t = config.train
  t.batch_size = 32
  t.num_epochs = 8.0
  t.base_lr = 1e-3             # a small model from scratch: 10x the fine-tuning LR
  t.warmup_epochs = 0.5
  t.lr_boundaries = (5.0, 7.0)  # the official shape (x0.1, x0.01), scaled to 8 epochs
  t.log_every_steps = 50
  config.eval.every_epochs = 4.0
  config.eval.batch_size = 64
  config.checkpoint.every_steps = 256
  return config

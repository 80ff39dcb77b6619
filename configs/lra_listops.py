r"""Long Range Arena ListOps: exact attention vs Orthoformer vs Nystrom vs Performer (Table 5).

Options (config_lib.parse_arg): attention, preset (positional; defaults orthoformer and none):

  # Full size, the Nystromformer repository's setup (2 layers, dim 64, 2 heads, FFN 128, mean
  # pooling, length 2000, batch 32, 5000 steps, lr 1e-4 after 1000 warmup steps):
  python -m mformer_jax.lra.train --config=configs/lra_listops.py:orthoformer --workdir=W
  # The official LRA ListOps model (4 layers, 512 wide, 8 heads, MLP 1024, CLS pooling):
  python -m mformer_jax.lra.train --config=configs/lra_listops.py:exact,lra --workdir=W
  # CPU preset (minutes on 2 cores): SHORTER trees (100 < length < 256 tokens, sequences
  # of 256), 1000 steps of 32, lr 1e-3, no dropout, landmarks/features scaled with the length:
  python -m mformer_jax.lra.train --config=configs/lra_listops.py:nystrom,cpu --workdir=W

Attention types: exact, orthoformer (64 landmarks), nystrom (128), performer (256 features), the
paper's sizes; --config.x=y overrides any field (e.g. --config.model.num_landmarks=32).
Data: generated (seeded) into data.dir, or set data.dir to the official
`lra_release/listops-1000` directory (its basic_{train,val,test}.tsv are used as they are).
"""
import ml_collections

from mformer_jax import config_lib

ATTENTION = {'exact': {}, 'orthoformer': {'num_landmarks': 64}, 'nystrom': {'num_landmarks': 128},
             'performer': {'performer_features': 256}}
# CPU preset: 256 tokens instead of 2000, so the approximations are scaled down too.
CPU_ATTENTION = {'exact': {}, 'orthoformer': {'num_landmarks': 16},
                 'nystrom': {'num_landmarks': 32}, 'performer': {'performer_features': 64}}


def get_config(arg: str = ''):
  o = config_lib.parse_arg(arg, {'attention': 'orthoformer', 'preset': ''},
                           ('attention', 'preset'), file='lra_listops.py')
  attention, preset = o['attention'], o['preset']
  if attention not in ATTENTION or preset not in ('', 'cpu', 'lra'):
    raise config_lib.ConfigError(f'lra_listops.py:{arg}: expected one of {", ".join(ATTENTION)}, '
                                 'optionally followed by ",cpu" or ",lra"')
  c = ml_collections.ConfigDict()
  c.experiment = f'lra_listops_{attention}' + (f'_{preset}' if preset else '')
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.dir = ''            # '' -> workdirs/lra/listops_<min>-<max>_seed<seed> (generated)
  c.data.generate = True     # build missing files (False: a missing file is an error)
  c.data.seed = 0            # generator seed (independent of the training seed)
  c.data.min_length = 500    # keep trees with min_length < length < max_length
  c.data.max_length = 2000
  c.data.num_train = 96_000
  c.data.num_val = 2_000
  c.data.num_test = 2_000

  c.model = ml_collections.ConfigDict(dict(
      attention=attention, num_layers=2, dim=64, num_heads=2, mlp_dim=128, dropout=0.1,
      pooling='mean', max_length=2000, num_landmarks=64, performer_features=256, pinv_iters=6))
  c.model.update(ATTENTION[attention])

  # optim.step_schedule's fields (in steps) and optim.adamw's.
  c.train = ml_collections.ConfigDict(dict(
      batch_size=32, num_steps=5000, base_lr=1e-4, warmup_steps=1000, lr_decay=0.1,
      lr_boundary_steps=(), weight_decay=0.0, decay_norms_and_biases=False, grad_clip_norm=0.0))
  c.eval_every_steps = 250
  c.eval_batch_size = 128
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500

  if preset == 'lra':  # the official LRA ListOps base config (lr schedule aside)
    c.model.update(num_layers=4, dim=512, num_heads=8, mlp_dim=1024, pooling='cls')
  if preset == 'cpu':
    c.data.update(min_length=100, max_length=256, num_train=48_000)
    c.model.update(max_length=256, dropout=0.0, **CPU_ATTENTION[attention])
    c.train.update(num_steps=1000, base_lr=1e-3, warmup_steps=100, lr_boundary_steps=(750,))
    c.eval_every_steps = 500
  return c

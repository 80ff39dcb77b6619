"""Attention benchmark: time and peak memory per layer and for the whole model, ours vs official.

    python -m benchmarks.attention --scope=layer --sizes=B,L,HR --repeats=3 \
        [--official_repo=/tmp/mformer_official --official_python=/tmp/venv_official/bin/python] \
        [--out=PATH | --variant=SUFFIX]   # default: results/<machine class>/<scope>_<jax>.json

Each (scope, variant, size, mode) runs in its own subprocess (peak RSS = ru_maxrss of that
process, which includes compilation); JAX runs also report XLA's `memory_analysis()` of the
compiled function (temp = scratch, the part that scales with the attention). Batch 1, float32,
ViT-B (D=768, 12 heads). Sizes: B = 16x224 (F=8, P=196, N=1568), L = 32x224 (F=16, N=3136),
HR = 16x336 (F=8, P=441, N=3528). Modes: fwd (inference), fwdbwd (gradient of a scalar of the
output w.r.t. parameters and input; whole model: train mode, drop-path on, like the official).
"""
import argparse
import os
import sys
import tempfile

from benchmarks import common

SIZES = {'B': dict(frames=16, crop=224), 'L': dict(frames=32, crop=224),
         'HR': dict(frames=16, crop=336)}
# name -> (attention, approx, landmarks, trajectory_impl)
VARIANTS = {
    'joint': ('joint', 'none', 0, 'einsum'),
    'divided': ('divided', 'none', 0, 'einsum'),
    'traj_einsum': ('trajectory', 'none', 0, 'einsum'),
    'traj_frames': ('trajectory', 'none', 0, 'frames'),
    'traj_chunked': ('trajectory', 'none', 0, 'chunked'),
    'ortho16': ('trajectory', 'orthoformer', 16, 'chunked'),
    'ortho64': ('trajectory', 'orthoformer', 64, 'chunked'),
    'ortho128': ('trajectory', 'orthoformer', 128, 'chunked'),
    # Whole model only: an official checkpoint file (SOURCE) through `weights.load_official`'s
    # default path (what a user who calls model.apply gets); official: its trajectory model.
    'load_official': ('trajectory', 'none', 0, None),
}
# Variants the official code has (its trajectory is the einsum one; orthoformer uses proj_kv on
# both halves); traj_frames / traj_chunked have no official counterpart.
OFFICIAL = ('joint', 'divided', 'traj_einsum', 'ortho16', 'ortho64', 'ortho128', 'load_official')


def tokens(size):
  s = SIZES[size]
  f, p = s['frames'] // 2, (s['crop'] // 16) ** 2
  return f, p


# What the 'load_official' variant loads. Written by a process of its own before the measured
# one starts, so that the measured process pays what a user who loads a file pays (reading it,
# converting it), not the benchmark's making of the weights (a model init and its export).
SOURCE = 'official-format .npz of fresh weights (Flax init, exported), read from disk'


# ----------------------------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------------------------
def write_source(spec):
  """Writes spec['write_source']: the official state dict (.npz, as `python -m
  mformer_jax.convert --export_npz` writes one) of a freshly initialised Mformer-B."""
  import jax
  import numpy as np
  from mformer_jax import weights
  from mformer_jax.model import Motionformer, ModelConfig
  s = SIZES[spec['size']]
  key = jax.random.key(0)
  x = jax.random.normal(key, (1, s['frames'], s['crop'], s['crop'], 3))
  ref = ModelConfig(num_frames=s['frames'], img_size=s['crop'])
  np.savez(spec['write_source'], **weights.export_official(jax.jit(Motionformer(ref).init)(key, x)))
  common.emit({'written': spec['write_source']})


def jax_worker(spec):
  if 'write_source' in spec:
    return write_source(spec)
  import jax
  import jax.numpy as jnp
  import flax.linen as nn
  from mformer_jax.model import attention
  from mformer_jax.model import Motionformer, ModelConfig

  attn, approx, lm, impl = VARIANTS[spec['variant']]
  f, p = tokens(spec['size'])
  key = jax.random.key(0)
  if spec['scope'] == 'layer':
    if attn == 'joint':
      mod = attention.JointAttention(12)
    elif attn == 'divided':
      class Divided(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
          t = x + attention.DividedAttention(12, f, 'time', name='timeattn')(x)
          return t + attention.DividedAttention(12, f, 'space', name='attn')(t)
      mod = Divided()
    else:
      mod = attention.TrajectoryAttention(12, f, approx=approx, num_landmarks=lm or 128,
                                          impl=impl, query_chunk=spec.get('query_chunk', 0))
    x = jax.random.normal(key, (1, 1 + f * p, 768))
    variables = mod.init(key, x)
    apply = lambda v, x, train: mod.apply(v, x)
    rngs = lambda: {}
  else:
    s = SIZES[spec['size']]
    dtype = spec.get('dtype', 'float32')
    x = jax.random.normal(key, (1, s['frames'], s['crop'], s['crop'], 3))
    if impl is None:  # load_official: the file write_source wrote, as a user loads one
      from mformer_jax import weights
      mod, variables = weights.load_official(spec['source'],
                                             {'dtype': dtype} if dtype != 'float32' else None)
      spec = {**spec, 'source': SOURCE, 'trajectory_impl': mod.cfg.trajectory_kernel}
    else:
      cfg = ModelConfig(num_frames=s['frames'], img_size=s['crop'], attention=attn,
                        approx=approx, num_landmarks=lm or 128, trajectory_impl=impl,
                        remat=spec.get('remat', 'none'), dtype=dtype)
      mod = Motionformer(cfg)
      variables = jax.jit(mod.init)(key, x)
    apply = lambda v, x, train: mod.apply(v, x, train=train,
                                          rngs={'dropout': jax.random.key(1)} if train else {})
  base_rss = common.current_rss_mb()
  if spec['mode'] == 'fwd':
    fn = jax.jit(lambda v, x: apply(v, x, False))
  else:
    def loss(v, x):
      y = apply(v, x, True)
      return jnp.sum(y * jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape)))
    fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
  compiled = fn.lower(variables, x).compile()
  common.release_compile_memory()
  ma = compiled.memory_analysis()
  mem = {k: getattr(ma, k + '_size_in_bytes') / 2**20 for k in ('temp', 'argument', 'output')}
  limit = spec.get('max_temp_gb', 14)
  if mem['temp'] > limit * 1024:
    common.emit({**spec, 'skipped': f'XLA temp {mem["temp"]/1024:.1f} GB > {limit} GB',
                 'xla_temp_mb': mem['temp']})
    return
  run = lambda: jax.block_until_ready(compiled(variables, x))
  times, cpu = common.timed(run, spec['repeats'])
  common.emit({**spec, 'times_s': times, 'median_s': common.median(times), 'cpu_s': cpu,
               'median_cpu_s': common.median(cpu),
               'xla_temp_mb': mem['temp'], 'xla_arg_mb': mem['argument'],
               'xla_out_mb': mem['output'], 'base_rss_mb': base_rss})


def torch_worker(spec):
  import torch
  from benchmarks import official

  attn, approx, lm, _ = VARIANTS[spec['variant']]
  f, p = tokens(spec['size'])
  torch.manual_seed(0)
  if spec['scope'] == 'layer':
    fn, mod = official.layer(spec['official_repo'], attn)
    x = torch.randn(1, 1 + f * p, 768)
    call = lambda x: fn(x, p, f, approx, lm or 128)
  else:
    s = SIZES[spec['size']]
    mod = official.model(spec['official_repo'], attention=attn, frames=s['frames'],
                         crop=s['crop'], approx=approx, landmarks=lm or 128)
    x = torch.randn(1, 3, s['frames'], s['crop'], s['crop'])
    call = lambda x: mod([x])
  base_rss = common.current_rss_mb()
  # bfloat16: the official training recipe's mixed precision, on the CPU.
  autocast = lambda: torch.autocast('cpu', dtype=torch.bfloat16,
                                    enabled=spec.get('dtype', 'float32') == 'bfloat16')
  if spec['mode'] == 'fwd':
    mod.eval()

    def run():
      with torch.no_grad(), autocast():
        call(x)
  else:
    mod.train()
    x.requires_grad_(spec['scope'] == 'layer')

    def run():
      for prm in mod.parameters():
        prm.grad = None
      x.grad = None
      with autocast():
        y = call(x).float()
      (y * torch.cos(torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape))).sum().backward()
  times, cpu = common.timed(run, spec['repeats'])
  common.emit({**spec, 'times_s': times, 'median_s': common.median(times), 'cpu_s': cpu,
               'median_cpu_s': common.median(cpu),
               'base_rss_mb': base_rss, 'torch_threads': torch.get_num_threads()})


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------
def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--scope', default='layer', choices=('layer', 'model'))
  ap.add_argument('--sizes', default='B,L,HR')
  ap.add_argument('--variants', default=','.join(VARIANTS))
  ap.add_argument('--modes', default='fwd,fwdbwd')
  ap.add_argument('--repeats', type=int, default=3)
  ap.add_argument('--remat', default='none', help='whole model: ModelConfig.remat')
  ap.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                  help='whole model compute dtype (params stay float32); official: '
                       "torch.autocast('cpu', bfloat16)")
  ap.add_argument('--xla_flags', default='', help='extra XLA flags for our runs')
  ap.add_argument('--max_temp_gb', type=float, default=14,
                  help='skip running a JAX case whose XLA temp exceeds this')
  ap.add_argument('--memory_scheduler', type=int, default=0,
                  help='XLA:CPU memory-optimised scheduler (default: concurrency-optimised)')
  ap.add_argument('--official_repo', default='', help='local checkout of the official code')
  ap.add_argument('--official_python', default='/tmp/venv_official/bin/python')
  ap.add_argument('--official_skip', default='',
                  help='size:mode pairs not to run in torch (e.g. L:fwdbwd: would not fit)')
  common.out_arg(ap, '<scope>')
  args = ap.parse_args()
  script = os.path.abspath(__file__)
  results, out = common.new_results(args.out, args.scope, args.variant)
  results['matmul_gflops'] = common.matmul_rates(args.official_python if args.official_repo else '')
  skip = set(args.official_skip.split(',')) - {''}
  with tempfile.TemporaryDirectory() as tmp:
    for size in args.sizes.split(','):
      for variant in args.variants.split(','):
        source = ''
        if variant == 'load_official' and args.scope == 'model':
          source = os.path.join(tmp, f'mformer_{size}.npz')
          written = common.run_worker(sys.executable, script, dict(
              impl='jax', size=size, write_source=source))
          if 'error' in written:
            raise SystemExit(f'writing the {size} source failed: {written["error"]}')
        for mode in args.modes.split(','):
          spec = dict(scope=args.scope, variant=variant, size=size, mode=mode,
                      repeats=args.repeats, max_temp_gb=args.max_temp_gb)
          if args.scope == 'model':
            spec['remat'], spec['dtype'] = args.remat, args.dtype
          spec['xla_flags'] = ' '.join(filter(None, [
              common.MEMORY_SCHEDULER if args.memory_scheduler else '', args.xla_flags]))
          todo = [('jax', sys.executable)]
          if args.official_repo and variant in OFFICIAL and f'{size}:{mode}' not in skip:
            todo.append(('torch', args.official_python))
          for impl, python in todo:   # ours and official back to back: same machine load
            s = dict(spec, impl=impl)
            if impl == 'torch':
              s['official_repo'] = os.path.abspath(args.official_repo)
            elif source:
              s['source'] = source
            common.run_and_record(python, script, s, results, out)


if __name__ == '__main__':
  common.entry(main, jax_worker, torch_worker)

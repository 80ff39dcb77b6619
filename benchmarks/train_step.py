"""Whole-model training step (forward, backward, AdamW): ours vs the official PyTorch code.

    python -m benchmarks.train_step --repeats=3 --rounds=1 \
        --ours=chunked:full,einsum:none \
        [--official_repo=/tmp/mformer_official --official_python=/tmp/venv_official/bin/python] \
        [--out=PATH | --variant=SUFFIX]   # default: results/<machine class>/train_step_<jax>.json

Mformer-B (trajectory attention, ViT-B/16, 2x16x16 tubelets), float32, batch 1, 16x224,
K400 head; ours runs the trainer's own step (`train.step.make_train_step`: label smoothing and
metrics included). Every measurement is a fresh subprocess (peak RSS = its ru_maxrss), ours and
official alternate within one run (`--rounds` repeats the alternation). Times are per step after one
warm-up step (which includes compilation for JAX); medians over `--repeats` steps.

GPU (run later where one is available): `--device=gpu --dtype=bfloat16 --batch=8
--attention_backend=cudnn --ours=frames:none` reports steps/s and model-FLOP utilisation
(`train.throughput`: model FLOPs of the reference computation per step / step time / the dense
bf16 peak given by --peak_tflops).
"""
import argparse
import os
import sys
import time

from benchmarks import common


def jax_worker(spec):
  import jax
  import jax.numpy as jnp
  from mformer_jax.model import Motionformer, ModelConfig
  from mformer_jax.train import throughput

  dtype = spec.get('dtype', 'float32')
  cfg = ModelConfig(num_frames=16, img_size=224, dtype=dtype, trajectory_impl=spec['impl_'],
                    remat=spec['remat'], attention_backend=spec.get('attention_backend', 'xla'),
                    scan_blocks=spec.get('scan', False))
  model = Motionformer(cfg)
  b = spec.get('batch', 1)
  step, init, abstract, rows = common.trainer_step(model, fused=bool(spec.get('fused')))
  batch = jax.device_put(
      {'clip': jax.random.normal(jax.random.key(0), (b, 16, 224, 224, 3), jnp.float32),
       'label': jnp.arange(b) % 400}, rows)

  # Compile everything from shapes first, so that compilation's own memory is not on top of
  # the state (as the trainer does).
  t0 = time.perf_counter()
  compiled = step.lower(abstract, batch).compile()
  compile_s = time.perf_counter() - t0
  init = init.lower(jax.random.key(0)).compile()
  ma = compiled.memory_analysis()
  common.release_compile_memory()
  holder = {'state': init(jax.random.key(0))}
  base_rss = common.current_rss_mb()

  def run():
    holder['state'], metrics = compiled(holder['state'], batch)
    jax.block_until_ready(metrics['loss'])

  times, cpu = common.timed(run, spec['repeats'])
  res = {**spec, 'times_s': times, 'median_s': common.median(times), 'cpu_s': cpu,
         'median_cpu_s': common.median(cpu), 'clips_per_s': b / common.median(times),
         'xla_temp_mb': ma.temp_size_in_bytes / 2**20, 'compile_s': compile_s,
         'xla_arg_mb': ma.argument_size_in_bytes / 2**20, 'base_rss_mb': base_rss,
         'device': str(jax.devices()[0])}
  if spec.get('peak_tflops'):
    res.update(throughput.rates(b / common.median(times), throughput.model_flops_per_clip(cfg),
                                1, spec['peak_tflops']))
  common.emit(res)


def torch_worker(spec):
  import torch
  from benchmarks import official

  torch.manual_seed(0)
  model = official.model(spec['official_repo'], frames=16, crop=224)
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
  clip = torch.randn(1, 3, 16, 224, 224)
  labels = torch.zeros(1, dtype=torch.long)
  base_rss = common.current_rss_mb()

  # bfloat16: the official recipe's mixed precision (float32 params), on the CPU.
  bf16 = spec.get('dtype', 'float32') == 'bfloat16'

  def run():
    opt.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
      logits = model([clip])
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()
    opt.step()

  times, cpu = common.timed(run, spec['repeats'])
  common.emit({**spec, 'times_s': times, 'median_s': common.median(times), 'cpu_s': cpu,
               'median_cpu_s': common.median(cpu), 'clips_per_s': 1 / common.median(times),
               'base_rss_mb': base_rss, 'torch_threads': torch.get_num_threads(),
               'torch': torch.__version__})


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--ours', default='chunked:full',
                  help='comma list of trajectory_impl:remat[:scan[:fused]] configurations of our '
                       'model (scan = scan_blocks=True, fused = AdamW inside the backward pass)')
  ap.add_argument('--repeats', type=int, default=3)
  ap.add_argument('--rounds', type=int, default=1)
  ap.add_argument('--dtype', default='float32')
  ap.add_argument('--batch', type=int, default=1)
  ap.add_argument('--attention_backend', default='xla')
  ap.add_argument('--peak_tflops', type=float, default=0.0,
                  help='device peak FLOP/s (in TFLOP/s) for MFU; 0 = do not report')
  ap.add_argument('--memory_scheduler', type=int, default=1,
                  help='XLA:CPU memory-optimised scheduler (default: concurrency-optimised)')
  ap.add_argument('--xla_flags', default='', help='extra XLA flags for our runs')
  ap.add_argument('--official_repo', default='')
  ap.add_argument('--official_python', default='/tmp/venv_official/bin/python')
  common.out_arg(ap, 'train_step')
  args = ap.parse_args()
  script = os.path.abspath(__file__)
  results, out = common.new_results(args.out, 'train_step', args.variant)
  from mformer_jax.model import ModelConfig  # pylint: disable=g-import-not-at-top
  from mformer_jax.train import throughput  # pylint: disable=g-import-not-at-top
  results.update(matmul_gflops=common.matmul_rates(
                     args.official_python if args.official_repo else ''),
                 model_gflop_fwd_official=throughput.model_flops_per_clip(
                     ModelConfig(num_frames=16, img_size=224), train=False) / 1e9)
  for rnd in range(args.rounds):
    todo = []
    if args.official_repo:
      todo.append((args.official_python, dict(impl='torch', dtype=args.dtype,
                                              official_repo=os.path.abspath(args.official_repo))))
    for conf in args.ours.split(','):
      impl, remat, *extra = conf.split(':')
      flags = ' '.join(filter(None, [common.MEMORY_SCHEDULER if args.memory_scheduler else '',
                                     args.xla_flags]))
      todo.append((sys.executable, dict(impl='jax', impl_=impl, remat=remat, dtype=args.dtype,
                                        scan='scan' in extra, fused='fused' in extra,
                                        xla_flags=flags,
                                        batch=args.batch, peak_tflops=args.peak_tflops,
                                        attention_backend=args.attention_backend)))
    for python, spec in todo:
      common.run_and_record(python, script, dict(spec, repeats=args.repeats, round=rnd), results,
                            out)


if __name__ == '__main__':
  common.entry(main, jax_worker, torch_worker)

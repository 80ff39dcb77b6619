"""The measurements of `benchmarks.device_check`, each run in a process of its own (so that its
peak device memory is its own) or, in smoke mode, inline.

  task 'train'    our training step, the trainer's own (`train.step.make_train_step`), at a
                  batch, then (search=True) at the largest batch that fits, found by doubling
  task 'eval'     our eval forward (a batch of views, softmax as the evaluator's), then a bf16
                  matmul's rate: the measured peak the MFU is also read against
  task 'official' the official PyTorch model: training step (AdamW, bf16 autocast) per batch,
                  then the eval forward

Nothing here imports TensorFlow, clu or the input pipeline (the GPU machine has none of them);
`config_lib` needs ml_collections (docs/device_check.md: carried as a wheel).
"""
import math
import os
import resource
import sys
import time

import numpy as np

from benchmarks import common

GROUP_S = 0.25   # steps are timed in groups of at least this long, blocking once per group


def error_line(e: BaseException) -> str:
  return f'{type(e).__name__}: ' + (str(e).strip().splitlines() or [''])[0][:300]


def time_groups(run, sync, timing: dict) -> list:
  """Seconds per call of `run`: one call after timing['warmup'] ones, and where
  timing['groups'] > 1 that many groups or more (until timing['min_s'], at most
  timing['max_groups']) of calls that together last GROUP_S, synced once per group as a training
  loop syncs rarely."""
  for _ in range(timing['warmup']):
    run()
  if timing['warmup']:
    sync()
  t0 = time.perf_counter()
  run()
  sync()
  first = time.perf_counter() - t0
  if timing['groups'] <= 1:
    return [first]
  per_group, out = max(1, math.ceil(GROUP_S / max(first, 1e-6))), []
  end = time.perf_counter() + timing['min_s']
  while len(out) < timing['groups'] or (time.perf_counter() < end
                                        and len(out) < timing['max_groups']):
    t0 = time.perf_counter()
    for _ in range(per_group):
      run()
    sync()
    out.append((time.perf_counter() - t0) / per_group)
  return out


def peak_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ----------------------------------------------------------------------------------------------
# JAX
# ----------------------------------------------------------------------------------------------
class Ours:
  """Model, mesh and the trainer's step for one configuration (spec['model'] overrides the
  K400 recipe's config.model; 'cudnn' runs only on a GPU, 'xla' elsewhere, said in the row)."""

  def __init__(self, spec):
    import jax
    from mformer_jax import config_lib
    from mformer_jax.model import make_model
    from mformer_jax.run import sharding
    from mformer_jax.train.step import make_train_step
    self.jax, self.sharding = jax, sharding
    overrides = dict(spec['model'])
    if overrides.get('attention_backend') == 'cudnn' and jax.default_backend() != 'gpu':
      overrides['attention_backend'] = 'xla'
    # The data half of the config is not used (batches are made here): no finalize.
    self.config = config_lib.make_config('kinetics400')
    for k, v in overrides.items():
      self.config.model[k] = v
    self.model = make_model(self.config.model)
    self.mesh = sharding.make_mesh(jax.devices()[:1])
    self.device = jax.devices()[0]
    self._make_step = lambda m: make_train_step(self.config, m, self.mesh, steps_per_epoch=1000)
    self.step_fn, self.tx, self.abstract, self.state_sh = self._make_step(self.model)
    self.timing = spec['timing']

  def setting(self) -> dict:
    c = self.model.cfg
    frames = c.attention == 'trajectory' and c.trajectory_kernel == 'frames'
    # attention_backend applies to 'frames' only: everything else attends through XLA's ops.
    return {'attention': c.attention, 'impl': c.trajectory_kernel if c.attention == 'trajectory'
            else '-', 'backend': c.attention_backend if frames else 'xla', 'remat': c.remat,
            'dtype': c.dtype}

  def batch_spec(self, b: int) -> dict:
    jnp, c = self.jax.numpy, self.model.cfg
    rows = self.sharding.batch_sharded(self.mesh)
    spec = {'clip': self.jax.ShapeDtypeStruct((b, c.num_frames, c.img_size, c.img_size, 3),
                                              jnp.float32, sharding=rows)}
    spec.update({h: self.jax.ShapeDtypeStruct((b,), jnp.int32, sharding=rows) for h in c.heads})
    return spec

  def batch(self, b: int) -> dict:
    jax, c = self.jax, self.model.cfg
    clip = jax.random.normal(jax.random.key(1), (b, c.num_frames, c.img_size, c.img_size, 3))
    batch = {'clip': clip, **{h: jax.numpy.arange(b) % n for h, n in c.heads.items()}}
    return jax.device_put(batch, self.sharding.batch_sharded(self.mesh))

  def abstract_state(self):
    with_sh = lambda a, s: self.jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s)
    return self.jax.tree.map(with_sh, self.abstract, self.state_sh)

  def compile(self, b: int):
    t0 = time.perf_counter()
    compiled = self.step_fn.lower(self.abstract_state(), self.batch_spec(b)).compile()
    return compiled, time.perf_counter() - t0

  def state_bytes(self) -> int:
    return sum(math.prod(a.shape) * a.dtype.itemsize for a in self.jax.tree.leaves(self.abstract))

  def new_state(self):
    """A state to time with, made on the host (no program to compile): N(0, 0.02) parameters,
    whose values do not change the work, and for the rest zeros, which is what AdamW's init
    gives at step 0 (moments and counts)."""
    rng = np.random.default_rng(0)

    def leaf(path, a):
      if getattr(path[0], 'key', None) == 'params':
        return (rng.standard_normal(a.shape, np.float32) * 0.02).astype(a.dtype)
      return np.zeros(a.shape, a.dtype)
    return self.jax.device_put(self.jax.tree_util.tree_map_with_path(leaf, self.abstract),
                               self.state_sh)

  def executed_flops(self, b: int) -> int:
    """Matmul FLOPs of the step program (backward and recompute included). cuDNN's attention
    is a custom call no count sees: its XLA twin is counted (the flash kernel's backward
    recomputes the scores, one product more)."""
    from mformer_jax.model import make_model
    from mformer_jax.train import throughput
    step = self.step_fn
    if self.model.cfg.attention_backend == 'cudnn':
      twin = make_model({**self.model.cfg.__dict__, 'attention_backend': 'xla'})
      step = self._make_step(twin)[0]
    return throughput.program_flops(step, self.abstract_state(), self.batch_spec(b))

  def memory(self):
    """(peak bytes, what): the device allocator's peak where it reports one, else the peak
    resident memory of this process (CPU; compilation included)."""
    stats = self.device.memory_stats() or {}
    if 'peak_bytes_in_use' in stats:
      return stats['peak_bytes_in_use'], 'device peak_bytes_in_use'
    return peak_rss_bytes(), 'process peak RSS'

  def memory_limit(self) -> int:
    stats = self.device.memory_stats() or {}
    if 'bytes_limit' in stats:
      return stats['bytes_limit']
    with open('/proc/meminfo') as f:   # a CPU: half of what is available now
      return int(next(l.split()[1] for l in f if l.startswith('MemAvailable'))) * 1024 // 2


def _run_train(ours, compiled, b: int) -> dict:
  """One row: step time, clips/s, peak memory and FLOPs of `compiled` at batch b."""
  from mformer_jax.plan import hlo
  from mformer_jax.train import throughput
  jax = ours.jax
  row = {**ours.setting(), 'batch': b, 'memory_analysis': hlo.per_chip_bytes(compiled)}
  try:
    holder = {'state': ours.new_state(), 'batch': ours.batch(b)}
  except Exception as e:  # pylint: disable=broad-except  (an OOM is a result of this check)
    return {**row, 'error': error_line(e)}

  def run():
    holder['state'], holder['metrics'] = compiled(holder['state'], holder['batch'])
  row = timed_row(row, run, lambda: jax.block_until_ready(holder['metrics']['loss']),
                  ours.timing, ours.memory)
  del holder
  if 'error' in row:
    return row
  row.update(peak_tflops=throughput.peak_tflops(),
             flops_reference=throughput.model_flops_per_clip(ours.model.cfg) * b,
             flops_executed=ours.executed_flops(b))
  for way in ('reference', 'executed'):   # the trainer's formula, over one device
    r = throughput.rates(row['clips_per_s'], row[f'flops_{way}'] / b, 1, row['peak_tflops'])
    row[f'tflops_{way}'] = r['model_tflops_per_device']
    if 'mfu' in r:
      row[f'mfu_{way}'] = r['mfu']
  return row


def _profile(ours, compiled, b: int, spec) -> dict:
  """trace_summary's profile of a few steps of `compiled` at batch b."""
  from benchmarks import trace_summary
  holder = ours.jax.block_until_ready({'state': ours.new_state(), 'batch': ours.batch(b)})

  def run():
    holder['state'], holder['metrics'] = compiled(holder['state'], holder['batch'])
  return trace_summary.profile(
      run, lambda: ours.jax.block_until_ready(holder['metrics']['loss']), compiled.as_text(),
      os.path.join(spec['trace_dir'], spec['name']), steps=spec['profile_steps'])


def next_batch(lo: int, need_lo: int, state: int, limit: float, max_batch: int, hi=None):
  """(candidate, why none): the largest lo * 2^k (k >= 1) below hi and up to max_batch that a
  linear model predicts to fit in `limit` bytes: the state's bytes fixed, the rest of lo's
  need (the compiler's figure) per clip. None when even 2 * lo is ruled out."""
  per_clip = max(need_lo - state, 0) / lo
  best, b = None, 2 * lo
  while b <= max_batch and (hi is None or b < hi) and state + per_clip * b <= limit:
    best, b = b, 2 * b
  if best is not None:
    return best, ''
  if 2 * lo > max_batch:
    return None, f'max_batch={max_batch}'
  if hi is not None and 2 * lo >= hi:
    return None, f'batch {hi} does not fit'
  return None, (f'batch {2 * lo} would need ~{(state + per_clip * 2 * lo) / 2**30:.1f} GiB of '
                f'{limit / 2**30:.1f}')


def search(ours, b: int, need: int, spec) -> tuple:
  """([(batch, compiled)] that fit, why the search stopped), from batch b that ran needing
  `need` bytes: doubling, but starting at the largest doubling `next_batch` predicts to fit in
  90 % of the device's memory, each candidate compiled and its memory analysis checked (one
  that does not fit bounds the next guess). At most spec['max_batch'], and spec['search_s']
  seconds of compiling (a compile that would overrun is not started)."""
  from mformer_jax.plan import hlo
  limit, state = 0.9 * ours.memory_limit(), ours.state_bytes()
  fits, hi, spent, last = [], None, 0.0, 0.0
  while True:
    cand, why = next_batch(b, need, state, limit, spec['max_batch'], hi)
    if cand is None:
      return fits, why
    if spent + 1.5 * last > spec['search_s']:
      return fits, f"search time ({spec['search_s']:.0f} s)"
    try:
      compiled, last = ours.compile(cand)
    except Exception as e:  # pylint: disable=broad-except  (the compiler's own OOM)
      return fits, f'batch {cand} does not compile: {error_line(e)}'
    spent += last
    cand_need = hlo.per_chip_bytes(compiled)['total']
    if cand_need > limit:
      hi = cand
    else:
      b, need = cand, cand_need
      fits = fits[-1:] + [(cand, compiled)]   # the last two: a runtime OOM falls back one


def train_task(spec) -> list:
  """Rows at spec['batch'] and (search) at the largest batch that fits and runs; the
  profile of the faster of them."""
  ours = Ours(spec)
  compiled, compile_s = ours.compile(spec['batch'])
  rows = [{**_run_train(ours, compiled, spec['batch']), 'compile_s': compile_s}]
  runs = {spec['batch']: compiled}
  if spec.get('search') and 'error' not in rows[0]:
    fits, rows[0]['search_stopped'] = search(ours, spec['batch'],
                                             rows[0]['memory_analysis']['total'], spec)
    while fits:
      b, runs[b] = fits.pop()
      rows.append({**_run_train(ours, runs[b], b), 'largest': True})
      if 'error' not in rows[-1]:
        break
  ran = [r for r in rows if 'error' not in r]
  if spec.get('profile') and ran:
    fast = max(ran, key=lambda r: r['clips_per_s'])
    fast['profile'] = _profile(ours, runs[fast['batch']], fast['batch'], spec)
  return [{**r, 'name': spec['name']} for r in rows]


def eval_task(spec) -> list:
  """Our eval forward on one batch of views, then a bf16 matmul's rate."""
  ours = Ours(spec)
  jax, jnp = ours.jax, ours.jax.numpy
  from mformer_jax.model import outputs_by_head

  def forward(params, clip):   # evaluator.probabilities (whose module imports tf.data)
    out = ours.model.apply({'params': params}, clip, train=False,
                           rngs={'landmarks': jax.random.key(0)})
    return {k: jax.nn.softmax(v.astype(jnp.float32), -1) for k, v in outputs_by_head(out).items()}

  b, row = spec['eval_batch'], {**ours.setting(), 'name': spec['name']}
  try:
    params = ours.new_state()['params']
    clip = ours.batch(b)['clip']
    t0 = time.perf_counter()
    fwd = jax.jit(forward).lower(params, clip).compile()
    row.update(batch=b, compile_s=time.perf_counter() - t0)
  except Exception as e:  # pylint: disable=broad-except
    return [{**row, 'error': error_line(e)}, matmul(jax, spec['matmul'], spec['timing'])]
  holder = {}
  row = timed_row(row, lambda: holder.update(p=fwd(params, clip)),
                  lambda: jax.block_until_ready(holder['p']), spec['timing'], ours.memory)
  del params, clip, holder
  return [row, matmul(jax, spec['matmul'], spec['timing'])]


def matmul(jax, n: int, timing) -> dict:
  """TFLOP/s of an n^3 bfloat16 matrix product (random data), the measured peak."""
  jnp = jax.numpy
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
  f = jax.jit(lambda x, y: x @ y)
  holder = {}
  times = time_groups(lambda: holder.update(c=f(a, b)),
                      lambda: jax.block_until_ready(holder['c']), timing)
  return {'name': 'matmul', 'n': n, 'dtype': 'bfloat16', 'step_s': common.median(times),
          'tflops': 2 * n ** 3 / common.median(times) / 1e12}


def jax_worker(spec):
  for task in spec['tasks']:
    common.emit({'rows': run_jax_task(task)})


def run_jax_task(task) -> list:
  try:
    return {'train': train_task, 'eval': eval_task}[task['task']](task)
  except Exception as e:  # pylint: disable=broad-except  (one setting's failure is its row)
    return [{'name': task['name'], 'error': error_line(e)}]


# ----------------------------------------------------------------------------------------------
# The official PyTorch model
# ----------------------------------------------------------------------------------------------
def torch_worker(spec):
  for task in spec['tasks']:
    try:
      rows = official_task(task)
    except Exception as e:  # pylint: disable=broad-except
      rows = [{'name': task['name'], 'error': error_line(e)}]
    common.emit({'rows': rows})


def timed_row(row: dict, fn, sync, timing: dict, memory) -> dict:
  """`row` with the timing of `fn` (time_groups) and memory()'s (peak bytes, what), or the
  error that stopped it (an out-of-memory is a result of the check)."""
  try:
    times = time_groups(fn, sync, timing)
    peak, what = memory()
  except Exception as e:  # pylint: disable=broad-except
    return {**row, 'error': error_line(e)}
  step_s = common.median(times)
  return {**row, 'step_s': step_s, 'times_s': times, 'clips_per_s': row['batch'] / step_s,
          'peak_bytes': peak, 'peak_what': what}


def official_task(spec) -> list:
  """The official model's training step at each of spec['train_batches'], then its eval
  forward; the recipe of ours: AdamW (lr 1e-4, decay 0.05), label smoothing 0.2, bf16."""
  import torch
  from benchmarks import official
  dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  cuda, m = dev.type == 'cuda', spec['model']
  torch.manual_seed(0)
  model = official.model(spec['repo'], frames=m['frames'], crop=m['crop'], depth=m['depth'],
                         dim=m['dim'], heads=m['heads'], num_classes=m['classes']).to(dev)
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
  sync = torch.cuda.synchronize if cuda else (lambda: None)
  autocast = lambda: torch.autocast(dev.type, dtype=torch.bfloat16)
  memory = ((lambda: (torch.cuda.max_memory_allocated(), 'torch max_memory_allocated')) if cuda
            else (lambda: (peak_rss_bytes(), 'process peak RSS')))
  data = {}

  def fresh(b):   # the inputs, on a device whose peak counter starts again
    data.clear()
    if cuda:
      torch.cuda.empty_cache()
      torch.cuda.reset_peak_memory_stats()
    data['x'] = torch.randn(b, 3, m['frames'], m['crop'], m['crop'], device=dev)
    data['y'] = torch.arange(b, device=dev) % m['classes']

  def step():
    opt.zero_grad(set_to_none=True)
    with autocast():
      logits = model([data['x']])
    torch.nn.functional.cross_entropy(logits.float(), data['y'], label_smoothing=0.2).backward()
    opt.step()

  def forward():
    with torch.no_grad(), autocast():
      model([data['x']]).float().softmax(-1)

  rows = []
  for mode, b, fn in ([('train', b, step) for b in spec['train_batches']]
                      + [('eval', spec['eval_batch'], forward)]):
    opt.zero_grad(set_to_none=True)
    fresh(b)
    model.train(mode == 'train')
    rows.append(timed_row({'name': spec['name'], 'mode': mode, 'batch': b}, fn, sync,
                          spec['timing'], memory))
  return [{**r, 'torch': torch.__version__, 'device': str(dev)} for r in rows]


if __name__ == '__main__':
  common.entry(lambda: sys.exit('a worker of benchmarks.device_check (--worker=JSON)'),
               jax_worker, torch_worker)

"""One setting compiled for a TPU slice and reported (`plan`), and the largest batch that fits
(`search_max`): the trainer's step (or the evaluator's) lowered with abstract inputs on the
slice's abstract devices and compiled by libtpu. Needs the environment `libtpu.environment`
sets."""
import importlib.metadata
import os
import time

import jax
import jax.numpy as jnp
from jax.experimental import topologies

from mformer_jax.data import device_augment
from mformer_jax.eval import evaluator
from mformer_jax.model import ModelConfig, make_model
from mformer_jax.plan import hlo, libtpu
from mformer_jax.plan.report import needed_bytes
from mformer_jax.errors import ConfigError
from mformer_jax.run import sharding
from mformer_jax.train import throughput
from mformer_jax.train.step import make_train_step

SEARCH_CAP = 1024  # --batch_per_chip=max stops doubling here


def topology_devices(name: str):
  """The abstract devices of a slice, ordered by id as jax.devices() orders them on the pod."""
  # v4 defaults to one device per TensorCore; on the pod jax shows megacore chips.
  kwargs = {'chip_config_name': 'megacore'} if name.startswith('v4') else {}
  try:
    with libtpu.filtered_stderr():
      topo = topologies.get_topology_desc(topology_name=name, platform='tpu', **kwargs)
  except Exception as e:  # libtpu says why in its own words (bad name, bad shape)
    raise ConfigError(f'unknown TPU topology {name!r} ({str(e).splitlines()[0]}); expected e.g. '
                      'v5e:4x4, v5e:16x16, v4:2x2x4, v5p:2x4x4, v6e:4x4') from None
  return sorted(topo.devices, key=lambda d: d.id)


def model_tflops_per_step(config, global_batch: int, mode: str) -> float:
  """The count the trainer logs (train.throughput: flops.reference_macs, 2 FLOPs per MAC, x3
  for forward + backward); not XLA's cost analysis, which counts a while loop's body once."""
  return throughput.model_flops_per_clip(config.model, mode == 'train') * global_batch / 1e12


def compile_step(config, devices, global_batch: int, mode: str):
  """(compiled, seconds): the trainer's step (or the evaluator's) lowered with abstract inputs
  on `devices` and compiled by libtpu."""
  mesh = sharding.make_mesh(devices)
  model = make_model(config.model)
  c = model.cfg
  # The schedule's length only moves its boundaries (constants of the program), not memory.
  step_fn, _, abstract, state_sh = make_train_step(config, model, mesh, steps_per_epoch=1)
  rows = sharding.batch_sharded(mesh)
  if mode == 'train':  # the pipeline's uint8 crops (and colour draws), finished in the step
    batch = {k: jax.ShapeDtypeStruct(shape, dtype, sharding=rows) for k, (shape, dtype) in
             device_augment.train_inputs(config.data, global_batch).items()}
  else:
    batch = {'clip': jax.ShapeDtypeStruct(
        (global_batch, c.num_frames, c.img_size, c.img_size, 3), jnp.float32, sharding=rows)}
  batch.update({h: jax.ShapeDtypeStruct((global_batch,), jnp.int32, sharding=rows)
                for h in c.heads})
  with_sh = lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s)
  t0 = time.perf_counter()
  if mode == 'train':
    lowered = step_fn.lower(jax.tree.map(with_sh, abstract, state_sh), batch)
  else:  # the evaluator's batch: views, labels, video index and padding mask
    batch['video_index'] = jax.ShapeDtypeStruct((global_batch,), jnp.int32, sharding=rows)
    batch['mask'] = jax.ShapeDtypeStruct((global_batch,), jnp.bool_, sharding=rows)
    params = jax.tree.map(with_sh, abstract['params'], state_sh['params'])
    lowered = evaluator.eval_step(model, mesh).lower(params, batch)
  compiled = lowered.compile()
  return compiled, time.perf_counter() - t0


def hbm_bytes(device):
  """The HBM one program may use on `device`, in XLA:TPU's own words: the abstract devices do
  not expose their memory, so a 1 TiB probe is compiled (instantly) and the limit read from
  the compiler's refusal. A little below the nominal size (v5e: 15.75 of 16 GiB); None if the
  probe fits."""
  probe = jax.ShapeDtypeStruct((2**38,), jnp.float32,
                               sharding=jax.sharding.SingleDeviceSharding(device))
  try:
    jax.jit(lambda x: x + 1).lower(probe).compile()
  except jax.errors.JaxRuntimeError as e:
    oom = hlo.compile_time_oom(str(e))
    return oom and oom['available_bytes']
  return None


def plan(config, topology: str, batch_per_chip: int, mode: str = 'train', devices=None) -> dict:
  """Compile one setting and report it (the JSON the CLI writes). A program the compiler
  refuses for lack of HBM is a plan that does not fit: per_chip_bytes None, compiler_oom set."""
  devices = devices or topology_devices(topology)
  chips, kind = len(devices), devices[0].device_kind
  hbm = hbm_bytes(devices[0])
  t0 = time.perf_counter()
  try:
    compiled, seconds = compile_step(config, devices, batch_per_chip * chips, mode)
    mem, oom = hlo.per_chip_bytes(compiled), None
    coll = hlo.collectives(compiled.as_text())
  except jax.errors.JaxRuntimeError as e:
    if (oom := hlo.compile_time_oom(str(e))) is None:
      raise
    mem, coll, seconds = None, None, time.perf_counter() - t0
  m = config.model
  return {
      'topology': topology, 'chips': chips, 'device_kind': kind, 'hbm_bytes_per_chip': hbm,
      'mode': mode, 'experiment': config.experiment, 'batch_per_chip': batch_per_chip,
      'global_batch': batch_per_chip * chips,
      'setting': {'trajectory_impl': ModelConfig.from_config(m).trajectory_kernel,
                  'remat': m.remat, 'scan_blocks': m.scan_blocks, 'dtype': m.dtype,
                  'fsdp': config.mesh.fsdp, 'fused_update': config.train.fused_update},
      'per_chip_bytes': mem, 'compiler_oom': oom,
      'fits': mem is not None and hbm is not None and mem['total'] <= hbm,
      'model_tflops_per_step': model_tflops_per_step(config, batch_per_chip * chips, mode),
      'collectives': coll, 'compile_seconds': round(seconds, 1),
      'versions': {'jax': jax.__version__, 'jaxlib': importlib.metadata.version('jaxlib'),
                   'libtpu': libtpu.libtpu_version(os.environ['TPU_LIBRARY_PATH'])},
      'note': "the compiler's memory analysis of a program that was compiled, not run",
  }


def _next_batch(done, lo, hi, last, steps):
  """The next probe of `search_max` (== lo when the search is over), and the bisection steps.
  Doubling goes just past where the line through the last two probes meets the HBM when that is
  further; bisection goes first where that line says, then to its neighbour, then halves."""
  def line_guess(a, b):  # the largest batch the line through probes a and b keeps in HBM
    (ba, na), (bb, nb) = (a, needed_bytes(done[a])), (b, needed_bytes(done[b]))
    hbm = done[b]['hbm_bytes_per_chip']
    if None in (na, nb, hbm) or nb <= na:
      return None
    return int(ba + (hbm - na) * (bb - ba) / (nb - na))

  probed = sorted(done)
  if hi is None:  # doubling
    guess = line_guess(*probed[-2:]) if len(probed) > 1 else None
    b = guess + 1 if guess is not None and guess + 1 > lo else 2 * lo
    return (min(b, SEARCH_CAP) if lo < SEARCH_CAP else lo), steps
  if lo is None:  # even 1 does not fit
    return 1, steps
  if hi - lo <= 1:
    return lo, steps
  guess, steps, b = line_guess(lo, hi), steps + 1, (lo + hi) // 2
  if steps == 1 and guess is not None and lo < guess < hi:
    b = guess
  elif steps == 2 and last in (lo, hi):
    b = last + 1 if last == lo else last - 1
  return b, steps


def search_max(config, topology: str, mode: str = 'train', devices=None) -> dict:
  """The largest per-chip batch that fits: doubling from 1, then bisection of the bracket; each
  probe a compile. Memory grows about linearly with the batch, so a step goes to where the line
  through two probes meets the HBM instead when that is further (doubling: just past it) or
  inside the bracket (bisection: once, then its neighbour, then halves), which saves most
  probes. Returns the plan at that batch (at 1 when nothing fits), every probe under 'search'."""
  devices = devices or topology_devices(topology)
  done, lo, hi, b, steps = {}, None, None, 1, 0
  while b not in done:
    done[b] = plan(config, topology, b, mode, devices)
    if done[b]['fits']:
      lo = b
    else:
      hi = b
    b, steps = _next_batch(done, lo, hi, b, steps)
  best = done[lo] if lo is not None else done[1]
  probes = [{'batch_per_chip': k, 'bytes': needed_bytes(v), 'fits': v['fits'],
             'compile_seconds': v['compile_seconds']} for k, v in done.items()]
  return {**best, 'search': probes}

"""Training throughput in the units runs are compared by: clips/s, model TFLOP/s per device and
model-FLOP utilisation (MFU, as MaxText reports it).

Model FLOPs are those of the reference computation (`flops.reference_macs`: what the official
code computes, whichever kernel, remat or block layout runs it), 2 FLOPs per multiply-add, and
x3 for a training step (forward, and a backward of twice the forward). A leaner kernel therefore
shows as a higher utilisation, never as less work. MFU divides the model FLOP/s of one device by
its dense bf16 peak, known for the accelerators of `PEAK_TFLOPS` and not for a CPU.

    meter = throughput.Meter(model.cfg, batch_size)   # in the loop: start(), then scalars()
    throughput.rates(clips_per_s, throughput.model_flops_per_clip(cfg), devices, peak)
"""
import time

import jax

from mformer_jax.model import flops

# Dense bf16 peak of one device, TFLOP/s (vendor figures; H100 = the SXM part). TPUs are found
# by jax's device_kind itself ('TPU v5 lite' is v5e, 'TPU v5' is v5p, 'TPU v6 lite' is v6e);
# NVIDIA GPUs by the start of the model name after 'NVIDIA ' ('NVIDIA H100 80GB HBM3'), the
# longest match first ('H100 PCIe' before 'H100').
PEAK_TFLOPS = {
    'H100': 989.0, 'H100 PCIe': 756.0, 'H100 NVL': 835.0, 'H200': 989.0, 'A100': 312.0,
    'TPU v4': 275.0, 'TPU v5 lite': 197.0, 'TPU v5e': 197.0, 'TPU v5': 459.0, 'TPU v5p': 459.0,
    'TPU v6 lite': 918.0, 'TPU v6e': 918.0,
}


def peak_tflops(device_kind: str | None = None) -> float | None:
  """The dense bf16 peak of a device (default: jax.devices()[0]), None where unknown (CPU)."""
  kind = jax.devices()[0].device_kind if device_kind is None else device_kind
  if kind in PEAK_TFLOPS:
    return PEAK_TFLOPS[kind]
  if kind.startswith('NVIDIA '):
    name = kind[len('NVIDIA '):]
    for model in sorted(PEAK_TFLOPS, key=len, reverse=True):
      if not model.startswith('TPU') and (name == model or name.startswith(model + ' ')
                                          or name.startswith(model + '-')):
        return PEAK_TFLOPS[model]
  return None


def model_flops_per_clip(model_cfg, train: bool = True) -> int:
  """FLOPs of one clip through the reference computation: 2 x `flops.reference_macs`, x3 for a
  training step. `model_cfg`: a ModelConfig, dict or ConfigDict."""
  return flops.reference_macs(model_cfg) * 2 * (3 if train else 1)


def program_flops(fn, *args) -> int:
  """Matrix-product FLOPs (2 per multiply-add) of the program `fn(*args)` traces to: what the
  kernels of this implementation compute, backward pass and rematerialised forward included,
  loops counted per trip (args may be jax.ShapeDtypeStruct; nothing runs)."""
  return 2 * flops.count_macs(jax.make_jaxpr(fn)(*args).jaxpr)


def rates(clips_per_s: float, flops_per_clip: float, devices: int,
          peak: float | None = None) -> dict:
  """{'clips_per_s', 'model_tflops_per_device', and with a peak (TFLOP/s) 'mfu'}."""
  tflops = clips_per_s * flops_per_clip / devices / 1e12
  out = {'clips_per_s': clips_per_s, 'model_tflops_per_device': tflops}
  if peak:
    out['mfu'] = tflops / peak
  return out


class Meter:
  """Throughput between a trainer's log points, compilation and evaluation left out.

  start(step) after the first (compiling) step has finished; scalars(step, excluded_s) at each
  log point, after the device has caught up, with excluded_s the running total of seconds spent
  outside training (evaluation). The rates cover the steps since the previous call. peak:
  TFLOP/s for MFU ('auto': `peak_tflops()` of this machine; None: no MFU)."""

  def __init__(self, model_cfg, batch_size: int, devices: int | None = None,
               peak='auto', clock=time.perf_counter):
    self.flops_per_clip = model_flops_per_clip(model_cfg)
    self.batch_size = batch_size
    self.devices = jax.device_count() if devices is None else devices
    self.peak = peak_tflops() if peak == 'auto' else peak
    self.clock = clock
    self._mark = None

  def start(self, step: int, excluded_s: float = 0.0) -> None:
    self._mark = (step, self.clock(), excluded_s)

  def rates(self, clips_per_s: float) -> dict:
    return rates(clips_per_s, self.flops_per_clip, self.devices, self.peak)

  def summary(self, clips_per_s: float) -> dict:
    """The run's result keys for its overall clips/s: train_model_tflops_per_device, and with
    a known peak train_mfu and train_peak_tflops; {} for a run that timed no step."""
    if not clips_per_s:
      return {}
    out = {f'train_{k}': v for k, v in self.rates(clips_per_s).items() if k != 'clips_per_s'}
    return {**out, 'train_peak_tflops': self.peak} if 'train_mfu' in out else out

  def scalars(self, step: int, excluded_s: float = 0.0) -> dict:
    """{'perf/clips_per_s', 'perf/model_tflops_per_device'[, 'perf/mfu']} since the last call;
    {} before start() or when no step or no time has passed."""
    if self._mark is None:
      return {}
    step0, t0, excluded0 = self._mark
    now = self.clock()
    seconds = now - t0 - (excluded_s - excluded0)
    self._mark = (step, now, excluded_s)
    if step <= step0 or seconds <= 0:
      return {}
    return {f'perf/{k}': v
            for k, v in self.rates((step - step0) * self.batch_size / seconds).items()}

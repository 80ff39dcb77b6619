"""train.throughput: the model FLOP count (by a formula checkable by hand), the peak table,
MFU = model FLOP/s per device / peak, and the loop's interval meter."""
import jax
import jax.numpy as jnp
import pytest

from mformer_jax.model import ModelConfig
from mformer_jax.train import throughput

# 4 frames of 32 px, 16 px patches, tubelets of 2: F = 2 slots of P = 4 patches, N = 8 tokens and
# T = 9 with the cls token; D = 16, 2 heads, 1 block, MLP 4D, 5 classes. pretrain_img_size = 32
# so that no position-embedding resize (an interpolation by matmul) is counted.
TINY = ModelConfig(num_frames=4, img_size=32, pretrain_img_size=32, embed_dim=16, depth=1,
                   num_heads=2, num_classes=5)


def tiny_reference_macs():
  f, p, d, classes = 2, 4, 16, 5
  n, t = f * p, f * p + 1
  block = (t * d * 3 * d              # qkv
           + 2 * n * n * d            # spatial scores and aggregation, all heads
           + 2 * t * d                # the cls token's row
           + n * d * d                # proj_q on the N diagonal tokens
           + n * f * d * 2 * d        # proj_kv on the N*F trajectory tokens (both halves)
           + 2 * n * f * d            # temporal scores and aggregation
           + t * d * d                # proj
           + 2 * t * d * 4 * d)       # mlp
  embed = n * (2 * 16 * 16 * 3) * d   # the tubelet convolution
  return block + embed + d * d + d * classes   # + pre_logits + head


def test_model_flops_are_the_reference_macs_times_two_times_three():
  assert tiny_reference_macs() == 237680
  assert throughput.model_flops_per_clip(TINY) == 6 * 237680
  assert throughput.model_flops_per_clip(TINY, train=False) == 2 * 237680
  # Whatever kernel or remat runs it: the work counted is the reference computation's.
  lean = ModelConfig(**{**TINY.__dict__, 'trajectory_impl': 'chunked', 'remat': 'tied'})
  assert throughput.model_flops_per_clip(lean) == 6 * 237680


@pytest.mark.parametrize('kind, peak', [
    ('NVIDIA H100 80GB HBM3', 989.0), ('NVIDIA H100 PCIe', 756.0), ('NVIDIA H200', 989.0),
    ('NVIDIA A100-SXM4-80GB', 312.0), ('TPU v4', 275.0), ('TPU v5 lite', 197.0),
    ('TPU v5', 459.0), ('TPU v6 lite', 918.0), ('TPU v4 lite', None), ('cpu', None),
    ('NVIDIA GeForce RTX 4090', None), ('NVIDIA H1000', None)])
def test_peak_table(kind, peak):
  assert throughput.peak_tflops(kind) == peak


def test_no_peak_on_this_cpu():
  assert jax.default_backend() == 'cpu' and throughput.peak_tflops() is None


def test_rates_are_flops_over_time_over_peak():
  # 100 clips/s of 1 TFLOP each over 4 devices: 25 TFLOP/s per device, 1/4 of a 100 peak.
  assert throughput.rates(100.0, 1e12, 4, 100.0) == {
      'clips_per_s': 100.0, 'model_tflops_per_device': 25.0, 'mfu': 0.25}
  assert throughput.rates(100.0, 1e12, 4) == {'clips_per_s': 100.0,
                                              'model_tflops_per_device': 25.0}


def test_meter_leaves_out_compilation_and_evaluation():
  now = [0.0]
  meter = throughput.Meter(TINY, batch_size=8, devices=2, peak=1e-6, clock=lambda: now[0])
  assert meter.flops_per_clip == 6 * 237680
  assert meter.scalars(1) == {}                  # not started: the first step compiles
  now[0] = 10.0
  meter.start(1)
  now[0] = 12.0                                  # 10 steps of 8 clips in 2 s
  first = meter.scalars(11)
  assert first['perf/clips_per_s'] == 40.0
  assert first['perf/model_tflops_per_device'] == pytest.approx(40.0 * 6 * 237680 / 2 / 1e12)
  assert first['perf/mfu'] == pytest.approx(first['perf/model_tflops_per_device'] / 1e-6)
  now[0] = 20.0                                  # 10 more steps in 8 s, 3 of them evaluating
  assert meter.scalars(21, excluded_s=3.0)['perf/clips_per_s'] == 16.0
  assert meter.scalars(21, excluded_s=3.0) == {}  # no step since
  assert 'perf/mfu' not in throughput.Meter(TINY, 8, devices=1, peak=None,
                                            clock=lambda: now[0]).rates(1.0)


def test_program_flops_count_what_runs():
  x, w = jnp.ones((4, 8)), jnp.ones((8, 3))
  assert throughput.program_flops(lambda a, b: a @ b, x, w) == 2 * 4 * 8 * 3
  # The gradient with respect to w adds x^T g, one more product of the same size.
  assert throughput.program_flops(jax.grad(lambda b: (x @ b).sum()), w) == 2 * 2 * 4 * 8 * 3
  # A conditional runs one branch: the costlier counts, not both.
  cond = lambda a: jax.lax.cond(a[0, 0] > 0, lambda c: c @ jnp.ones((8, 8)),
                                lambda c: 2 * c @ jnp.ones((8, 8)), a)
  assert throughput.program_flops(cond, x) == 2 * 4 * 8 * 8
  # A loop's body counts once per trip.
  loop = lambda a: jax.lax.scan(lambda c, _: (c @ jnp.ones((8, 8)), None), a, length=5)[0]
  assert throughput.program_flops(loop, x) == 5 * 2 * 4 * 8 * 8


@pytest.mark.slow
def test_a_training_run_logs_throughput_to_tensorboard_and_its_results(tmp_path):
  import glob  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mformer_jax import train  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import ModelConfig as MC  # pylint: disable=g-import-not-at-top
  from tests import train_fixtures  # pylint: disable=g-import-not-at-top
  config = train_fixtures.config()   # 8 steps of 8 clips, logged every 2
  results = train.train_and_evaluate(config, str(tmp_path))
  flops = throughput.model_flops_per_clip(MC.from_config(config.model))
  assert results['train_clips_per_s'] > 0
  assert results['train_model_tflops_per_device'] == pytest.approx(
      results['train_clips_per_s'] * flops / jax.device_count() / 1e12)
  assert 'train_mfu' not in results          # no known peak on a CPU
  logged = {}
  for path in glob.glob(str(tmp_path / 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        logged.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
  assert sorted(logged['perf/clips_per_s']) == [2, 4, 6, 8]
  for step, clips in logged['perf/clips_per_s'].items():
    assert clips > 0
    assert logged['perf/model_tflops_per_device'][step] == pytest.approx(clips * flops / 1e12)

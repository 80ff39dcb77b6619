"""The entry point: clear errors, eval and predict modes, initialisation from checkpoints."""
import subprocess
import sys

import jax
import numpy as np
import pytest

import train_fixtures as tfx
from mformer_jax import weights
from mformer_jax.eval import evaluator
from mformer_jax.run import checkpoints
from mformer_jax.model import init_variables, make_model
from mformer_jax.data import synthetic, video


@pytest.mark.slow
def test_k400_without_data_says_how_to_prepare_kinetics(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'mformer_jax.main', '--config=configs/k400_base.py',
                         f'--workdir={tmp_path}'], cwd=tfx.ROOT, env=tfx.env(),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert 'Traceback' not in proc.stderr
  error = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(error) == 1 and 'kinetics400' in error[0], proc.stderr[-2000:]
  assert 'python -m mformer_jax.data.prepare kinetics' in proc.stderr


@pytest.mark.slow
def test_unknown_config_key_is_an_error(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'mformer_jax.main', '--config=configs/demo.py',
                         f'--workdir={tmp_path}', '--config.train.batchsize=4'],
                        cwd=tfx.ROOT, env=tfx.env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and 'batchsize' in proc.stderr


@pytest.mark.slow
def test_eval_mode_reproduces_the_final_training_evaluation(trained):
  workdir, results, _ = trained
  again = evaluator.evaluate_checkpoint(tfx.config(**{'mode': 'eval'}), str(workdir))
  assert again['top1'] == results['top1'] and again['num_videos'] == 13


@pytest.mark.slow
def test_predict_mode_prints_the_top_class_names(trained, tmp_path):
  workdir = trained.workdir
  clip = synthetic.generate(1, num_frames=8, size=32, split='test').videos[0]
  path = str(tmp_path / 'clip.mp4')
  video.write_video(path, clip)
  proc = subprocess.run(tfx.main_cmd(workdir, **{'mode': 'predict', 'video': path}),
                        cwd=tfx.ROOT, env=tfx.env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.strip().splitlines()
  top = min(5, tfx.config().model.num_classes)
  assert lines[0].startswith(f'{path}: top-{top}')
  names = [l.split()[1] for l in lines[1:]]
  assert len(names) == top and set(names) <= set(synthetic.MOTION_CLASSES)


def test_init_from_own_run_converted_dir_and_head_reset(trained, tmp_path):
  workdir = trained.workdir
  _, trained_params = weights.load(str(workdir))
  # A 2-class model (K400 -> SSv2 style): the head must be re-initialised.
  cfg = tfx.config(**{'data.synthetic.classes': 'move_left,move_right', 'model.num_classes': 2})
  model = make_model(cfg.model)
  fresh = init_variables(model, jax.random.key(1))['params']
  with pytest.raises(weights.CheckpointMismatchError, match='reset_head=True'):
    weights.load(str(workdir), model.cfg, like=fresh)
  _, params = weights.load(str(workdir), model.cfg, like=fresh,
                                 dont_load=weights.HEAD_PATTERNS)
  np.testing.assert_array_equal(params['head']['kernel'], fresh['head']['kernel'])
  np.testing.assert_array_equal(params['blocks_0']['attn']['qkv']['kernel'],
                                trained_params['blocks_0']['attn']['qkv']['kernel'])
  # What `python -m mformer_jax.convert` writes, as used for released checkpoints.
  same = make_model(tfx.config().model)
  checkpoints.save_params(str(tmp_path / 'converted'), trained_params, same.cfg)
  _, loaded = weights.load(str(tmp_path / 'converted'), same.cfg,
                                 like=init_variables(same, jax.random.key(1))['params'])
  np.testing.assert_array_equal(loaded['head']['kernel'], trained_params['head']['kernel'])


def test_init_from_imagenet_vit_weights(tmp_path):
  cfg = tfx.config()
  model = make_model(cfg.model)
  fresh = jax.device_get(init_variables(model, jax.random.key(1))['params'])
  donor = jax.device_get(init_variables(model, jax.random.key(2))['params'])
  vit = {k: v for k, v in weights.export_official({'params': donor}).items()
         if not k.startswith(('patch_embed_3d', 'blocks.0.attn.proj_', 'temp_embed', 'head'))}
  np.savez(tmp_path / 'vit.npz', **vit)
  _, params = weights.load(str(tmp_path / 'vit.npz'), model.cfg, like=fresh,
                                 imagenet=True, log=lambda _: None)
  np.testing.assert_array_equal(params['blocks_0']['mlp']['fc1']['kernel'],
                                donor['blocks_0']['mlp']['fc1']['kernel'])
  np.testing.assert_array_equal(params['head']['kernel'], fresh['head']['kernel'])
  # The 2D patch kernel goes into the centre temporal slice of the tubelet kernel.
  np.testing.assert_array_equal(params['patch_embed_3d_kernel'][1], donor['patch_embed_kernel'])



def test_result_table_is_the_runs_summary():
  from mformer_jax import main  # pylint: disable=g-import-not-at-top  (defines no flags on import)
  results = {'top1': 0.979, 'top5': 1.0, 'num_videos': 512, 'views_per_video': 1,
             'num_unreadable': 2, 'num_bad_train_records': 3, 'report_dir': 'W/eval/step_8',
             'train_clips_per_s': 321.96, 'workdir': 'W'}
  assert main.result_table(results, 4, wall_s=222.0).splitlines() == [
      '  top-1                     97.9 %',
      '  chance (top-1)            25.0 %',
      '  test videos               512 x 1 views, 2 unreadable',
      '  skipped training records  3 (listed in W/eval/step_8/metrics.json)',
      '  training speed            322.0 clips/s',
      '  wall time                 3.7 min',
      '  TensorBoard               tensorboard --logdir W',
      '  confusion matrix          W/eval/step_8']
  # With the model FLOPs (train.throughput) and, on a device of known peak, the MFU.
  results.update(train_model_tflops_per_device=0.012345)
  assert main.result_table(results, 4, 222.0).splitlines()[5] == (
      '  model TFLOP/s per device  0.0123')
  results.update(train_model_tflops_per_device=412.3, train_mfu=0.41689, train_peak_tflops=989.0)
  assert main.result_table(results, 4, 222.0).splitlines()[5:7] == [
      '  model TFLOP/s per device  412',
      '  MFU                       41.7 % of 989 TFLOP/s (dense bf16 peak)']

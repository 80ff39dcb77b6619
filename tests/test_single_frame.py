"""Appendix Table 1's single-frame model: configs resolve, a timm ViT loads with no inflation,
and the pipeline keeps one frame of the video model's window (random in training, middle at test)."""
import jax
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from configs import motion_twins
from configs import single_frame as single_frame_configs
from mformer_jax import weights
from mformer_jax.analysis import single_frame
from mformer_jax.data import config as data_config_lib
from mformer_jax.data import pipeline
from mformer_jax.data import transforms
from mformer_jax.model import ModelConfig, Motionformer, init_variables, make_model


@pytest.mark.parametrize('name, window, sampler, views',
                         [('k400', 16, 'linspace', 30), ('ssv2', 16, 'segment', 3),
                          ('synthetic', 16, 'linspace', 1)])
def test_full_scale_configs_are_vit_b16_on_one_frame(name, window, sampler, views):
  config = single_frame_configs.get_config(name)
  cfg = ModelConfig.from_config(config.model)
  assert (cfg.num_frames, cfg.tubelet_size, cfg.attention, cfg.temporal_slots) == (1, 1, 'joint', 1)
  assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.patch_size) == (768, 12, 12, 16)
  d = config.data
  assert (d.single_frame, d.num_frames, d.sampler, data_config_lib.clip_frames(d)) == (
      True, window, sampler, 1)
  assert d.test_num_clips * d.test_num_crops == views
  shapes = jax.eval_shape(lambda: init_variables(Motionformer(cfg), jax.random.key(0)))['params']
  assert shapes['patch_embed_3d_kernel'].shape == (1, 16, 16, 3, 768)
  assert shapes['temp_embed'].shape == (1, 1, 768)
  with pytest.raises(ValueError, match='expected one of'):
    single_frame_configs.get_config('k700')


def test_timm_vit_loads_every_tensor_without_inflation():
  # A ViT with the real timm key names (small widths keep the test fast; the names do not depend
  # on them): the donor's own 2D tensors, no tubelet kernel, no temp_embed, a 1000-class head.
  model = make_model(single_frame.single_frame(motion_twins.get_config()).model)
  fresh = jax.device_get(init_variables(model, jax.random.key(1))['params'])
  donor = jax.device_get(init_variables(model, jax.random.key(2))['params'])
  vit = {k: v for k, v in weights.export_official({'params': donor}).items()
         if not k.startswith(('patch_embed_3d', 'temp_embed', 'pre_logits', 'head'))}
  d = vit['cls_token'].shape[-1]
  vit['patch_embed.proj.weight'] = vit['patch_embed.proj.weight'].reshape(d, -1)  # timm layout
  vit['head.weight'], vit['head.bias'] = np.zeros((1000, d), np.float32), np.zeros(1000, np.float32)
  params, report = weights.init_from_imagenet({'params': fresh}, vit, model.cfg, log=lambda _: 0)
  params = params['params']
  assert report['ignored'] == ['head.bias', 'head.weight']  # only the 1000-class head
  assert sorted(report['fresh']) == ['head.bias', 'head.weight', 'pre_logits.fc.bias',
                                     'pre_logits.fc.weight', 'temp_embed']
  assert len(report['loaded']) == len(vit) - 2
  # One-frame tubelets: the tubelet kernel IS the 2D patch kernel (no zero slices added).
  np.testing.assert_array_equal(params['patch_embed_3d_kernel'], donor['patch_embed_kernel'][None])
  np.testing.assert_array_equal(params['blocks_1']['attn']['qkv']['kernel'],
                                donor['blocks_1']['attn']['qkv']['kernel'])
  np.testing.assert_array_equal(params['pos_embed'], donor['pos_embed'])


def _cfg(sampler):
  cfg = data_config_lib.data_config('kinetics400', num_frames=8, sampling_rate=4, crop_size=32)
  cfg.sampler, cfg.test_num_clips = sampler, 3
  return cfg


@pytest.mark.parametrize('sampler', ['linspace', 'segment'])
def test_pipeline_keeps_one_frame_of_the_window(sampler):
  multi, one = _cfg(sampler), _cfg(sampler)
  one.single_frame = True
  picks = set()
  for s in range(40):
    seed = tf.constant([s, 7], tf.int64)
    window = transforms.frame_indices(300, 30.0, multi, train_seed=seed).numpy()
    frame = transforms.frame_indices(300, 30.0, one, train_seed=seed).numpy()
    assert frame.shape == (1,) and frame[0] in window
    picks.add(int(np.flatnonzero(window == frame[0])[0]))
  assert len(picks) >= 6  # random over the window's 8 frames, not always the same slot
  test = transforms.frame_indices(300, 30.0, multi).numpy()
  np.testing.assert_array_equal(transforms.frame_indices(300, 30.0, one).numpy(), test[:, 4:5])


def test_synthetic_single_frame_batches_and_views():
  cfg = motion_twins.get_config('frames=1').data
  cfg.synthetic.num_train, cfg.synthetic.num_test = 16, 4
  batch = next(pipeline.make_train_iterator(cfg, local_batch_size=16, seed=0, process_index=0,
                                            process_count=1))
  multi = ml_collections.ConfigDict(cfg.to_dict())
  multi.single_frame = False
  full = next(pipeline.make_train_iterator(multi, local_batch_size=16, seed=0, process_index=0,
                                           process_count=1))
  assert batch['clip'].shape == (16, 1, 32, 32, 3)
  np.testing.assert_array_equal(batch['label'], full['label'])
  slots = [[t for t in range(8) if np.array_equal(full['clip'][i, t], batch['clip'][i, 0])]
           for i in range(16)]
  assert all(slots) and len({s[0] for s in slots}) > 1
  views = next(iter(pipeline.EvalDataset(cfg, local_batch_size=4, process_index=0,
                                         process_count=1)))
  whole = next(iter(pipeline.EvalDataset(multi, local_batch_size=4, process_index=0,
                                         process_count=1)))
  np.testing.assert_array_equal(views['clip'], whole['clip'][:, 4:5])

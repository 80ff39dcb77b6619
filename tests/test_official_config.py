"""Official configs as they are: the nested yacs dict or its YAML file, in the API and the CLI."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from mformer_jax import weights, convert
from mformer_jax.model import Motionformer

ORIG = os.path.join(os.path.dirname(__file__), 'goldens', 'model_trajectory_orig.npz')


def _golden():
  with np.load(ORIG) as z:
    sd = {k: z[k] for k in z.files if '__' not in k}  # A bare state dict: no cfg with it.
    return sd, z['io__input'].transpose(0, 2, 3, 4, 1), z['io__logits']


def _official(num_classes=5, **vit):
  """A config laid out as the official configs/K400/motionformer_224_16x4.yaml (every section
  and key of it), with the golden model's sizes."""
  vit = dict(PATCH_SIZE=8, PATCH_SIZE_TEMP=2, CHANNELS=3, EMBED_DIM=64, DEPTH=2, NUM_HEADS=4,
             MLP_RATIO=4, QKV_BIAS=True, VIDEO_INPUT=True, TEMPORAL_RESOLUTION=4, USE_MLP=True,
             DROP=0.0, POS_DROPOUT=0.0, DROP_PATH=0.2, IM_PRETRAINED=True, HEAD_DROPOUT=0.0,
             HEAD_ACT='tanh', PRETRAINED_WEIGHTS='vit_1k', ATTN_LAYER='trajectory', **vit)
  return dict(
      TRAIN=dict(ENABLE=True, DATASET='Kinetics', BATCH_SIZE=32, EVAL_PERIOD=5,
                 CHECKPOINT_PERIOD=5, AUTO_RESUME=True),
      DATA=dict(NUM_FRAMES=8, SAMPLING_RATE=4, TRAIN_JITTER_SCALES=[256, 320],
                TRAIN_CROP_SIZE=32, TEST_CROP_SIZE=32, INPUT_CHANNEL_NUM=[3],
                MEAN=[0.5] * 3, STD=[0.5] * 3, PATH_TO_DATA_DIR='data/kinetics_400/',
                USE_RAND_AUGMENT=False, RE_PROB=0.0, USE_REPEATED_AUG=False,
                USE_RANDOM_RESIZE_CROPS=False, COLORJITTER=True, GRAYSCALE=False, GAUSSIAN=False),
      SOLVER=dict(BASE_LR='1e-4', LR_POLICY='steps_with_relative_lrs', LRS=[1, 0.1, 0.01],
                  STEPS=[0, 20, 30], MAX_EPOCH=35, MOMENTUM=0.9, WEIGHT_DECAY='5e-2',
                  WARMUP_EPOCHS=0.0, OPTIMIZING_METHOD='adamw', USE_MIXED_PRECISION=True,
                  SMOOTHING=0.2),
      SLOWFAST=dict(ALPHA=8), VIT=vit,
      MODEL=dict(NUM_CLASSES=num_classes, ARCH='slow', MODEL_NAME='VisionTransformer',
                 LOSS_FUNC='cross_entropy'),
      TEST=dict(ENABLE=True, DATASET='Kinetics', BATCH_SIZE=64, NUM_ENSEMBLE_VIEWS=10,
                NUM_SPATIAL_CROPS=3),
      DATA_LOADER=dict(NUM_WORKERS=8, PIN_MEMORY=True), NUM_GPUS=8, NUM_SHARDS=4, RNG_SEED=0,
      OUTPUT_DIR='.', TENSORBOARD=dict(ENABLE=True))


def _write(tmp_path, cfg, name='motionformer_224_16x4.yaml'):
  path = tmp_path / name
  path.write_text(yaml.safe_dump(cfg, sort_keys=False))
  return str(path)


@pytest.mark.parametrize('form', ['nested dict', 'yaml path'])
def test_bare_state_dict_and_official_config_reproduce_the_golden(tmp_path, form):
  sd, clip, logits = _golden()
  cfg = _official() if form == 'nested dict' else _write(tmp_path, _official())
  model, variables = weights.load_official(sd, cfg=cfg)
  assert (model.cfg.num_heads, model.cfg.img_size, model.cfg.num_frames) == (4, 32, 8)
  np.testing.assert_allclose(model.apply(variables, jnp.asarray(clip)), logits, atol=1e-5,
                             rtol=0)


def test_the_golden_files_own_nested_cfg_is_accepted():
  sd, clip, logits = _golden()
  with np.load(ORIG) as z:
    nested = json.loads(str(z['meta__json']))['cfg']
  model, variables = weights.load_official(sd, cfg=nested)
  np.testing.assert_allclose(model.apply(variables, jnp.asarray(clip)), logits, atol=1e-5,
                             rtol=0)


def test_official_config_replaces_the_checkpoints_own():
  with pytest.raises(weights.CheckpointMismatchError, match=r'head.weight: checkpoint \(5, 64\) '
                     r'vs model \(7, 64\)'):
    weights.load_official(ORIG, cfg=_official(num_classes=7))


def test_yaml_defaults_are_the_official_ones(tmp_path):
  cfg = _official()
  del cfg['VIT']['USE_MLP']  # Official default False: a head without pre_logits.
  with pytest.raises(ValueError, match='only the released head'):
    weights.load_official(_golden()[0], cfg=_write(tmp_path, cfg))
  with pytest.raises(ValueError, match='mixes official sections'):
    weights.load_official(_golden()[0], cfg={'VIT': {}, 'num_heads': 4})


@pytest.mark.slow
def test_cli_official_config(tmp_path, capsys):
  sd, clip, logits = _golden()
  np.savez(tmp_path / 'bare.npz', **sd)
  args = ['--input', str(tmp_path / 'bare.npz'), '--output', str(tmp_path / 'out')]
  assert convert.main(args + ['--official_config', _write(tmp_path, _official())]) == 0
  model_cfg, params = weights.load(str(tmp_path / 'out'))
  model = Motionformer(model_cfg)
  np.testing.assert_allclose(model.apply({'params': params}, jnp.asarray(clip)), logits,
                             atol=1e-5, rtol=0)
  (tmp_path / 'bad.yaml').write_text('model: [unclosed')
  for bad, message in (('missing.yaml', 'official config not found'),
                       ('bad.yaml', 'is not valid YAML')):
    assert convert.main(args + ['--official_config', str(tmp_path / bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message in err and len(err.splitlines()) == 1

"""Image ViTs (timm-format state dicts: DINO's, supervised ones) as a feature source: the
one-frame model reproduces timm's `forward_features` (tests/data/vit_reference.npz) and bad files
are named."""
import pathlib

import numpy as np
import pytest

from mformer_jax import convert, data
from mformer_jax.analysis import single_frame

REFERENCE = pathlib.Path(__file__).parent / 'data' / 'vit_reference.npz'


@pytest.fixture(scope='module')
def ref():
  return dict(np.load(REFERENCE))


def _state_dict(ref):
  return {k[len('sd/'):]: v for k, v in ref.items() if k.startswith('sd/')}


@pytest.fixture(scope='module')
def vit(ref):
  return single_frame.load_timm_vit(_state_dict(ref), num_heads=2, log=lambda _: None)


def test_architecture_is_read_from_the_shapes(ref):
  fields = single_frame.vit_config(_state_dict(ref), num_heads=2)
  assert {k: fields[k] for k in ('embed_dim', 'depth', 'num_heads', 'patch_size',
                                 'pretrain_img_size', 'mlp_ratio', 'qkv_bias')} == dict(
                                     embed_dim=24, depth=2, num_heads=2, patch_size=8,
                                     pretrain_img_size=32, mlp_ratio=4.0, qkv_bias=True)
  assert {k: fields[k] for k in single_frame.IMAGE_VIT} == single_frame.IMAGE_VIT
  assert single_frame.vit_config(_state_dict(ref))['num_heads'] == 1  # 24 / 64, at least 1
  flat = dict(_state_dict(ref))  # the old (D, 3 p p) patch kernel layout gives the same p
  flat['patch_embed.proj.weight'] = flat['patch_embed.proj.weight'].reshape(24, -1)
  assert single_frame.vit_config(flat)['patch_size'] == 8


@pytest.mark.parametrize('case', ['native', 'wide'])
def test_tokens_equal_timm_forward_features(ref, vit, case):
  """Every token after the final norm, cls first; `wide` (48x64 frames on a 4x4 table) also
  checks DINO's position-table resize."""
  model, variables = vit
  x = data.normalise_pixels(ref[f'frames/{case}'], data.IMAGENET_MEAN, data.IMAGENET_STD)
  tokens = np.asarray(model.apply(variables, x[:, None], method='features'))
  np.testing.assert_allclose(tokens, ref[f'tokens/{case}'], rtol=0, atol=2e-5)


def test_the_position_rule_is_what_the_wide_case_checks(ref):
  """The official per-axis scale differs from DINO's by more than the test's tolerance."""
  model, variables = single_frame.load_timm_vit(
      _state_dict(ref), num_heads=2, overrides={'pos_embed_resize': 'official'}, log=lambda _: 0)
  x = data.normalise_pixels(ref['frames/wide'], data.IMAGENET_MEAN, data.IMAGENET_STD)
  tokens = np.asarray(model.apply(variables, x[:, None], method='features'))
  assert np.abs(tokens - ref['tokens/wide']).max() > 1e-3


def test_files_that_are_not_a_vit_say_which_keys(ref):
  sd = _state_dict(ref)
  broken = {k: v for k, v in sd.items() if k not in ('norm.weight', 'blocks.1.mlp.fc2.bias')}
  with pytest.raises(convert.CheckpointMismatchError,
                     match=r'missing blocks\.1\.mlp\.fc2\.bias, norm\.weight$'):
    single_frame.vit_config(broken)
  scaled = dict(sd, **{'blocks.0.ls1.gamma': np.ones(24, np.float32)})
  with pytest.raises(convert.CheckpointMismatchError,
                     match=r'unsupported blocks\.0\.ls1\.gamma \(LayerScale'):
    single_frame.vit_config(scaled)
  mformer = convert.read_checkpoint(str(REFERENCE.parent.parent / 'goldens' /
                                        'model_trajectory_orig.npz'))[0]
  with pytest.raises(convert.CheckpointMismatchError, match='pass it as --checkpoint'):
    single_frame.vit_config(mformer)
  wide = dict(sd, **{'blocks.0.mlp.fc1.weight': np.zeros((96, 25), np.float32)})
  with pytest.raises(convert.CheckpointMismatchError, match=r'unexpected shape: blocks\.0\.mlp'):
    single_frame.load_timm_vit(wide, num_heads=2, log=lambda _: 0)

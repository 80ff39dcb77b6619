"""Image ViTs (timm-format state dicts: DINO's, supervised ones) as a feature source: the
one-frame model reproduces timm's `forward_features` (tests/data/vit_reference.npz), bad files
are named, and `analysis.davis --vit` runs the whole propagation."""
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from mformer_jax import weights, data
from mformer_jax.analysis import davis, davis_layout, single_frame
from mformer_jax.weights import vit as vit_lib
from mformer_jax.analysis import label_propagation as lp

REFERENCE = pathlib.Path(__file__).parent / 'data' / 'vit_reference.npz'


@pytest.fixture(scope='module')
def ref():
  return dict(np.load(REFERENCE))


def _state_dict(ref):
  return {k[len('sd/'):]: v for k, v in ref.items() if k.startswith('sd/')}


@pytest.fixture(scope='module')
def vit(ref):
  return vit_lib.load_timm_vit(_state_dict(ref), num_heads=2, log=lambda _: None)


def test_architecture_is_read_from_the_shapes(ref):
  fields = vit_lib.vit_config(_state_dict(ref), num_heads=2)
  assert {k: fields[k] for k in ('embed_dim', 'depth', 'num_heads', 'patch_size',
                                 'pretrain_img_size', 'mlp_ratio', 'qkv_bias')} == dict(
                                     embed_dim=24, depth=2, num_heads=2, patch_size=8,
                                     pretrain_img_size=32, mlp_ratio=4.0, qkv_bias=True)
  assert {k: fields[k] for k in single_frame.IMAGE_VIT} == single_frame.IMAGE_VIT
  assert vit_lib.vit_config(_state_dict(ref))['num_heads'] == 1  # 24 / 64, at least 1
  flat = dict(_state_dict(ref))  # the old (D, 3 p p) patch kernel layout gives the same p
  flat['patch_embed.proj.weight'] = flat['patch_embed.proj.weight'].reshape(24, -1)
  assert vit_lib.vit_config(flat)['patch_size'] == 8


@pytest.mark.parametrize('case', ['native', 'wide'])
def test_tokens_equal_timm_forward_features(ref, vit, case):
  """Every token after the final norm, cls first; `wide` (48x64 frames on a 4x4 table) also
  checks DINO's position-table resize."""
  model, variables = vit
  x = data.to_model_input(ref[f'frames/{case}'], mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD)
  tokens = np.asarray(model.apply(variables, x[:, None], method='features'))
  np.testing.assert_allclose(tokens, ref[f'tokens/{case}'], rtol=0, atol=2e-5)
  # What propagation reads: the patch tokens on their grid, L2-normalised.
  feats = lp.model_features(model, variables, ref[f'frames/{case}'], batch_size=1,
                            mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD)
  want = ref[f'tokens/{case}'][:, 1:].reshape(feats.shape)
  np.testing.assert_allclose(feats, lp.l2_normalise(want), rtol=0, atol=2e-5)


def test_the_position_rule_is_what_the_wide_case_checks(ref):
  """The official per-axis scale differs from DINO's by more than the test's tolerance."""
  model, variables = vit_lib.load_timm_vit(
      _state_dict(ref), num_heads=2, overrides={'pos_embed_resize': 'official'}, log=lambda _: 0)
  x = data.to_model_input(ref['frames/wide'], mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD)
  tokens = np.asarray(model.apply(variables, x[:, None], method='features'))
  assert np.abs(tokens - ref['tokens/wide']).max() > 1e-3


def test_files_that_are_not_a_vit_say_which_keys(ref):
  sd = _state_dict(ref)
  broken = {k: v for k, v in sd.items() if k not in ('norm.weight', 'blocks.1.mlp.fc2.bias')}
  with pytest.raises(weights.CheckpointMismatchError,
                     match=r'missing blocks\.1\.mlp\.fc2\.bias, norm\.weight$'):
    vit_lib.vit_config(broken)
  scaled = dict(sd, **{'blocks.0.gamma_1': np.ones(24, np.float32)})  # DeiT III's LayerScale
  with pytest.raises(weights.CheckpointMismatchError,
                     match=r'unsupported blocks\.0\.gamma_1 \(LayerScale as gamma_1'):
    vit_lib.vit_config(scaled)  # DINOv2's ls1/ls2.gamma: tests/test_dinov2.py
  mformer = weights.read_checkpoint(str(REFERENCE.parent.parent / 'goldens' /
                                        'model_trajectory_orig.npz'))[0]
  with pytest.raises(weights.CheckpointMismatchError, match='pass it as --checkpoint'):
    vit_lib.vit_config(mformer)
  wide = dict(sd, **{'blocks.0.mlp.fc1.weight': np.zeros((96, 25), np.float32)})
  with pytest.raises(weights.CheckpointMismatchError, match=r'unexpected shape: blocks\.0\.mlp'):
    vit_lib.load_timm_vit(wide, num_heads=2, log=lambda _: 0)


@pytest.fixture(scope='module')
def twin_and_vit(ref, tmp_path_factory):
  """A 64x48 DAVIS-layout twin and the reference ViT as a timm-format .npz (real key names)."""
  root = tmp_path_factory.mktemp('vit') / 'DAVIS'
  davis_layout.write_synthetic(root, 1, num_frames=6, size=64, height=48, num_objects=2)
  path = root.parent / 'vit_s8.npz'
  np.savez(path, **_state_dict(ref))
  return root, path


def test_cli_propagates_with_an_image_vit_under_the_dino_protocol(twin_and_vit, tmp_path):
  root, path = twin_and_vit
  out = tmp_path / 'vit'
  assert davis.main(['--davis_root', str(root), f'--vit={path}', '--vit_heads=2',
                     '--protocol=dino', '--short_side=0', '--out', str(out)]) == 0
  results = json.loads((out / 'results.json').read_text())
  assert results['protocol']['name'] == 'dino' and results['protocol']['topk'] == 5
  assert results['settings']['pixel_mean'] == list(data.IMAGENET_MEAN)
  assert results['settings']['pixel_std'] == list(data.IMAGENET_STD)
  assert results['input_sizes'] == {'synth000': [48, 64]}
  assert 0 <= results['global']['J&F-Mean'] <= 1
  assert (out / 'synth000' / '00005.png').is_file()


def _one_line_error(capsys, argv):
  status = davis.main(argv)
  err = capsys.readouterr().err.strip()
  assert status == 2 and len(err.splitlines()) == 1 and err.startswith('davis: error: ')
  return err


def test_cli_bad_vit_input_is_one_line_and_status_2(twin_and_vit, tmp_path, capsys, ref):
  root, path = twin_and_vit
  base = ['--davis_root', str(root), '--out', str(tmp_path / 'out')]
  bad = tmp_path / 'bad.npz'
  np.savez(bad, **{k: v for k, v in _state_dict(ref).items() if not k.startswith('blocks.1.')},
           **{'blocks.1.attn.qkv.weight': _state_dict(ref)['blocks.1.attn.qkv.weight']})
  err = _one_line_error(capsys, base + [f'--vit={bad}'])
  assert 'not a timm ViT state dict: missing blocks.1.attn.proj.bias' in err
  err = _one_line_error(capsys, base + [f'--vit={path}', '--checkpoint=ckpts/k400_mf'])
  assert 'exactly one model source' in err and '--checkpoint together with --vit' in err
  err = _one_line_error(capsys, base + [f'--vit={path}', '--vit_heads=5'])
  assert 'embed dim 24 is not divisible into 5 heads' in err
  err = _one_line_error(capsys, base + [f'--vit={path}', '--short_side=44'])
  assert err.endswith('the patch size 8 does not divide the short side 44 (it divides 40 and 48)')


def _timm_vit(patch, dim=24, depth=2, grid=4, seed=0):
  """A random timm-format ViT state dict (timm's key names and shapes), qkv bias, MLP ratio 4;
  by default the reference ViT's sizes but the patch, so that initialising it reuses most of
  the operations the reference's compiled."""
  rng = np.random.default_rng(seed)
  w = lambda *shape: (0.1 * rng.standard_normal(shape)).astype(np.float32)
  sd = {'cls_token': w(1, 1, dim), 'pos_embed': w(1, 1 + grid * grid, dim),
        'patch_embed.proj.weight': w(dim, 3, patch, patch), 'patch_embed.proj.bias': w(dim),
        'norm.weight': 1 + w(dim), 'norm.bias': w(dim)}
  for i in range(depth):
    sd.update({f'blocks.{i}.{k}': v for k, v in {
        'norm1.weight': 1 + w(dim), 'norm1.bias': w(dim), 'attn.qkv.weight': w(3 * dim, dim),
        'attn.qkv.bias': w(3 * dim), 'attn.proj.weight': w(dim, dim), 'attn.proj.bias': w(dim),
        'norm2.weight': 1 + w(dim), 'norm2.bias': w(dim), 'mlp.fc1.weight': w(4 * dim, dim),
        'mlp.fc1.bias': w(4 * dim), 'mlp.fc2.weight': w(dim, 4 * dim),
        'mlp.fc2.bias': w(dim)}.items()})
  return sd


@pytest.fixture(scope='module')
def patch14(tmp_path_factory):
  """A patch-14 ViT (DINOv2's patch) and an 80x48 DAVIS-layout twin: frames wider than high."""
  root = tmp_path_factory.mktemp('vit14') / 'DAVIS'
  davis_layout.write_synthetic(root, 1, num_frames=4, size=80, height=48, num_objects=2)
  path = root.parent / 'vit_p14.npz'
  np.savez(path, **_timm_vit(14))
  return root, path


def test_a_patch_14_vit_runs_the_dino_protocol_at_the_aspect_ratio(patch14, tmp_path, capsys):
  """DINO floors the long side to a multiple of 64, which 14 does not divide: the long side
  keeps whole patches instead (short side 48 -> 42, long side 42 x 80 / 48 = 70 = 5 x 14), and
  results.json records the multiple used. An explicit --size_multiple the patch does not divide
  is refused (test_davis checks the other multiples)."""
  root, path = patch14
  base = ['--davis_root', str(root), f'--vit={path}', '--vit_heads=2', '--protocol=dino',
          '--short_side=0', '--batch_size=1']
  assert davis.main(base + ['--out', str(tmp_path / 'p14')]) == 0
  results = json.loads((tmp_path / 'p14' / 'results.json').read_text())
  assert results['protocol']['size_multiple'] == 64 and results['size_multiple'] == 14
  assert results['input_sizes'] == {'synth000': [42, 70]}
  assert 0 <= results['global']['J&F-Mean'] <= 1
  with Image.open(tmp_path / 'p14' / 'synth000' / '00003.png') as im:
    assert im.size == (80, 48)  # the predictions come back at the frame's size
  capsys.readouterr()
  err = _one_line_error(capsys, base + ['--size_multiple=64', '--out', str(tmp_path / 'x')])
  assert err == ('davis: error: the patch size 14 does not divide 64, the multiple the long '
                 'side is floored to')

"""DINOv2 ViTs (facebookresearch/dinov2's state dicts, without registers) as the one-frame model:
LayerScale, the ignored mask token and DINOv2's position rule reproduce DINOv2's own
`forward_features` (tests/data/dinov2_reference.npz, made by make_dinov2_reference.py), the
variants we do not run are refused in one line, and `analysis.davis --vit` runs the DINO
protocol on a DINOv2 `.pth`."""
import json
import pathlib
import re

import jax
import numpy as np
import pytest

from mformer_jax import data, weights
from mformer_jax.analysis import davis, davis_layout
from mformer_jax.analysis import label_propagation as lp
from mformer_jax.errors import ConfigError
from mformer_jax.model import ModelConfig, posembed
from mformer_jax.model.layout import param_shapes
from mformer_jax.model.motionformer import Block, LayerScale
from mformer_jax.weights import vit as vit_lib

import torch_files

REFERENCE = pathlib.Path(__file__).parent / 'data' / 'dinov2_reference.npz'


@pytest.fixture(scope='module')
def ref():
  """The reference's arrays by name, the state dict (DINOv2's key names) under 'sd'."""
  arrays = dict(np.load(REFERENCE))
  arrays['sd'] = {k[len('sd/'):]: arrays.pop(k) for k in list(arrays) if k.startswith('sd/')}
  return arrays


@pytest.fixture(scope='module')
def dinov2(ref):
  lines = []
  model, variables = vit_lib.load_timm_vit(ref['sd'], num_heads=2, log=lines.append)
  return model, variables, lines


def test_dinov2_is_read_from_its_keys(ref, dinov2):
  fields = vit_lib.vit_config(ref['sd'], num_heads=2)
  assert {k: fields[k] for k in ('embed_dim', 'depth', 'patch_size', 'pretrain_img_size',
                                 'layer_scale', 'pos_embed_resize')} == dict(
                                     embed_dim=24, depth=2, patch_size=14, pretrain_img_size=56,
                                     layer_scale=1.0, pos_embed_resize='dino')
  model, variables, lines = dinov2
  gamma = variables['params']['blocks_1']['ls2']['gamma']
  np.testing.assert_array_equal(gamma, ref['sd']['blocks.1.ls2.gamma'])
  assert lines == ['image ViT (LayerScale: DINOv2): dim 24, depth 2, 2 heads, patch 14, 4x4 '
                   'position grid; 34 tensors loaded, ignored: mask_token']


@pytest.mark.parametrize('case', ['native', 'wide'])
def test_tokens_equal_dinov2_forward_features(ref, dinov2, case):
  """x_norm_patchtokens and x_norm_clstoken; `wide` (42x84 frames, a 3x6 grid from the 4x4
  table: rows shrink, columns grow) also checks DINOv2's position resize."""
  model, variables, _ = dinov2
  x = data.to_model_input(ref[f'frames/{case}'], mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD)
  tokens = np.asarray(model.apply(variables, x[:, None], method='features'))
  np.testing.assert_allclose(tokens[:, 1:], ref[f'patch/{case}'], rtol=0, atol=1e-5)
  np.testing.assert_allclose(tokens[:, 0], ref[f'cls/{case}'], rtol=0, atol=1e-5)
  feats = lp.model_features(model, variables, ref[f'frames/{case}'], batch_size=1,
                            mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD)
  want = ref[f'patch/{case}'].reshape(feats.shape)
  np.testing.assert_allclose(feats, lp.l2_normalise(want), rtol=0, atol=1e-5)


def test_layer_scale_is_what_the_tokens_check(ref):
  """Without the gammas (all ones) the tokens move by far more than the tolerance."""
  sd = {k: np.ones_like(v) if k.endswith('.gamma') else v for k, v in ref['sd'].items()}
  model, variables = vit_lib.load_timm_vit(sd, num_heads=2, log=lambda _: 0)
  x = data.to_model_input(ref['frames/native'], mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD)
  tokens = np.asarray(model.apply(variables, x[:, None], method='features'))
  assert np.abs(tokens[:, 1:] - ref['patch/native']).max() > 1e-2


def test_position_rule_at_the_released_grid():
  """The released models' 37x37 table at DAVIS's 480p under the DINO protocol (34x60 patches):
  DINOv2's offset-0.1 scale factors, as torch's bicubic computes them in float64."""
  ref = np.load(REFERENCE)
  table = ref['posembed/table'][..., 0]
  mh, mw = posembed.spatial_resize_matrices(37, (34, 60), 'dino')
  np.testing.assert_allclose(mh @ table @ mw.T, ref['posembed/dinov2_34x60'][..., 0],
                             rtol=0, atol=1e-12)


def test_chunked_block_keys_load_the_same(ref, dinov2):
  """DINOv2 built with block_chunks (its training default) keys blocks `blocks.<chunk>.<i>.`,
  i counted over all blocks: here both blocks in chunk 0."""
  sd = {re.sub(r'^blocks\.(\d+)\.', r'blocks.0.\1.', k): v for k, v in ref['sd'].items()}
  assert 'blocks.0.1.ls1.gamma' in sd
  assert vit_lib.vit_config(sd, num_heads=2) == vit_lib.vit_config(ref['sd'], num_heads=2)
  _, variables = vit_lib.load_timm_vit(sd, num_heads=2, log=lambda _: 0)
  jax.tree.map(np.testing.assert_array_equal, variables, dinov2[1])


def test_what_is_not_run_is_refused_in_one_line(ref):
  sd = ref['sd']
  with pytest.raises(weights.CheckpointMismatchError,
                     match=r"^a ViT with 4 register tokens \(register_tokens; DINOv2's \*_reg "
                     r'models\): registers are not supported; use the model without them '
                     r'\(dinov2_vits14 for dinov2_vits14_reg\)$'):
    vit_lib.vit_config(dict(sd, register_tokens=np.zeros((1, 4, 24), np.float32)))
  swiglu = {k.replace('mlp.fc1', 'mlp.w12').replace('mlp.fc2', 'mlp.w3'): v
            for k, v in sd.items()}
  with pytest.raises(weights.CheckpointMismatchError, match=r"ViT-g's SwiGLU MLP is not "
                     r'supported\)$'):
    vit_lib.vit_config(swiglu)
  some = {k: v for k, v in sd.items() if not k.startswith('blocks.1.ls')}
  with pytest.raises(weights.CheckpointMismatchError,
                     match=r'missing blocks\.1\.ls1\.gamma, blocks\.1\.ls2\.gamma$'):
    vit_lib.vit_config(some)


def test_layer_scale_is_off_by_default_and_named_apart():
  """Off: no new parameter in any existing model. On: ls1/ls2 'gamma' at the init value, names
  no method of the modules holds (flax.nnx.bridge exposes methods as attributes)."""
  tiny = dict(num_frames=1, tubelet_size=1, attention='joint', img_size=16, patch_size=8,
              embed_dim=8, depth=1, num_heads=1, pretrain_img_size=16)
  plain = param_shapes(ModelConfig(**tiny))
  scaled = param_shapes(ModelConfig(**tiny, layer_scale=1e-5))
  assert set(scaled) - set(plain) == {('blocks_0', 'ls1', 'gamma'), ('blocks_0', 'ls2', 'gamma')}
  assert set(plain) <= set(scaled) and scaled[('blocks_0', 'ls1', 'gamma')] == (8,)
  x = np.arange(6, dtype=np.float32).reshape(2, 3)
  variables = LayerScale(0.25, np.float32).init(jax.random.key(0), x)
  np.testing.assert_array_equal(variables['params']['gamma'], [0.25] * 3)
  np.testing.assert_array_equal(LayerScale(0.25, np.float32).apply(
      {'params': {'gamma': np.array([1, 2, 3], np.float32)}}, x), x * [1, 2, 3])
  assert not {'ls1', 'ls2'} & set(dir(Block)) and 'gamma' not in dir(LayerScale)
  with pytest.raises(ConfigError, match=r'layer_scale=-1.0 must be >= 0'):
    ModelConfig(layer_scale=-1.0)


@pytest.mark.slow  # the whole propagation through the command
def test_cli_runs_the_dino_protocol_on_a_dinov2_pth(ref, tmp_path):
  """A DINOv2 state dict as torch.save writes it (.pth) on an 80x48 DAVIS-layout twin: the long
  side keeps whole 14-px patches (42x70: a 3x5 grid from the 4x4 table)."""
  root = tmp_path / 'DAVIS'
  davis_layout.write_synthetic(root, 1, num_frames=4, size=80, height=48, num_objects=2)
  path = tmp_path / 'dinov2_vits14_pretrain.pth'
  torch_files.write_pyth(str(path), ref['sd'])
  out = tmp_path / 'out'
  assert davis.main(['--davis_root', str(root), f'--vit={path}', '--vit_heads=2',
                     '--protocol=dino', '--short_side=0', '--batch_size=1', '--out',
                     str(out)]) == 0
  results = json.loads((out / 'results.json').read_text())
  assert results['size_multiple'] == 14 and results['input_sizes'] == {'synth000': [42, 70]}
  assert 0 <= results['global']['J&F-Mean'] <= 1
  assert (out / 'synth000' / '00003.png').is_file()

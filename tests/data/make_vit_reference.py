"""Reference values of timm's ViT and of torch's bicubic resize, for tests/test_vit_source.py.

Run OUTSIDE the project venv (torch and timm are not project dependencies):
  /root/.pyenv/versions/3.11.7/bin/python3 -m venv /tmp/timmvenv
  /tmp/timmvenv/bin/pip install torch==2.13.0 timm numpy
  /tmp/timmvenv/bin/python tests/data/make_vit_reference.py tests/data/vit_reference.npz

Writes:
  sd/<key>            the state dict of a small timm VisionTransformer (real timm key names,
                      a 10-class head), every tensor drawn from numpy (seed 22) so that no
                      LayerNorm or bias sits at its trivial init value.
  frames/<case>       (2, H, W, 3) uint8 frames; native = the ViT's own 32x32, wide = 48x64.
  tokens/<case>       timm `forward_features` (after the final norm, cls first) of the frames
                      normalised with the ImageNet mean and std; for `wide` the position table is
                      resized as DINO's `interpolate_pos_encoding` does it (torch bicubic with
                      scale factors ((6 + 0.1) / 4, (8 + 0.1) / 4)) and the model built for 48x64.
  posembed/table      a (14, 14, 2) float64 table; posembed/<rule>_30x52 its resize to 30x52 by
                      torch's bicubic in float64: official = given the output size (the per-axis
                      scale n_out / n_in), dino = scale factors ((30 + 0.1) / 14, (52 + 0.1) / 14).
"""
import importlib.abc
import importlib.machinery
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F


class _Stub(type):
  """Any attribute of a stub module: timm 1.0.31 imports torchvision names that no ViT uses."""

  def __getattr__(cls, name):
    if name.startswith('__'):
      raise AttributeError(name)
    return _Stub(name, (), {})


class _StubModule(types.ModuleType):

  def __getattr__(self, name):
    if name.startswith('__'):
      raise AttributeError(name)
    return _Stub(name, (), {})


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):

  def find_spec(self, name, path, target=None):
    if name.split('.')[0] == 'torchvision':
      return importlib.machinery.ModuleSpec(name, self, is_package=True)
    return None

  def create_module(self, spec):
    module = _StubModule(spec.name)
    module.__path__ = []
    return module

  def exec_module(self, module):
    pass


try:
  import torchvision  # noqa: F401  pylint: disable=unused-import
except Exception:  # pylint: disable=broad-except  (absent, or built for another torch)
  for name in [n for n in sys.modules if n.split('.')[0] == 'torchvision']:
    del sys.modules[name]
  sys.meta_path.insert(0, _TorchvisionStub())
import timm  # pylint: disable=g-import-not-at-top,wrong-import-position

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
ARCH = dict(patch_size=8, embed_dim=24, depth=2, num_heads=2, mlp_ratio=4.0, qkv_bias=True,
            num_classes=10)
rng = np.random.default_rng(22)


def vit(img_size):
  return timm.models.vision_transformer.VisionTransformer(img_size=img_size, **ARCH).eval()


def tokens(model, frames):
  x = (frames.astype(np.float32) / 255.0 - MEAN) / STD
  x = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))
  with torch.no_grad():
    return model.forward_features(x).numpy()


out = {}
model = vit(32)
sd = {}
for key, value in model.state_dict().items():
  fan_in = int(np.prod(value.shape[1:])) if value.ndim > 1 else 1
  if key.endswith('norm1.weight') or key.endswith('norm2.weight') or key == 'norm.weight':
    new = 1 + 0.1 * rng.standard_normal(value.shape)
  elif value.ndim == 1:
    new = 0.1 * rng.standard_normal(value.shape)
  elif key in ('cls_token', 'pos_embed'):
    new = 0.5 * rng.standard_normal(value.shape)
  else:
    new = rng.standard_normal(value.shape) / np.sqrt(fan_in)
  sd[key] = torch.from_numpy(new.astype(np.float32))
model.load_state_dict(sd)
out.update({f'sd/{k}': v.numpy() for k, v in sd.items()})

frames = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
out['frames/native'], out['tokens/native'] = frames, tokens(model, frames)

grid, (hp, wp) = 4, (6, 8)
table = sd['pos_embed'][:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
resized = F.interpolate(table, scale_factor=((hp + 0.1) / grid, (wp + 0.1) / grid), mode='bicubic')
assert resized.shape[-2:] == (hp, wp)
wide = vit((8 * hp, 8 * wp))
wide_sd = dict(sd, pos_embed=torch.cat([sd['pos_embed'][:, :1],
                                        resized.permute(0, 2, 3, 1).reshape(1, hp * wp, -1)], 1))
wide.load_state_dict(wide_sd)
frames = rng.integers(0, 256, (2, 8 * hp, 8 * wp, 3)).astype(np.uint8)
out['frames/wide'], out['tokens/wide'] = frames, tokens(wide, frames)

table = rng.standard_normal((14, 14, 2))
t = torch.from_numpy(table.transpose(2, 0, 1)[None])  # float64
out['posembed/table'] = table
out['posembed/official_30x52'] = F.interpolate(
    t, size=(30, 52), mode='bicubic', align_corners=False)[0].numpy().transpose(1, 2, 0)
out['posembed/dino_30x52'] = F.interpolate(
    t, scale_factor=(30.1 / 14, 52.1 / 14), mode='bicubic')[0].numpy().transpose(1, 2, 0)
assert out['posembed/dino_30x52'].shape == (30, 52, 2)

np.savez_compressed(sys.argv[1], **out)
print({k: v.shape for k, v in out.items() if not k.startswith('sd/')}, f'{len(sd)} tensors',
      f'timm {timm.__version__}, torch {torch.__version__}')

"""Builds the official PyTorch Motionformer modules from a local checkout (never committed).

The official `slowfast/models/{vit_helper,video_model_builder,orthoformer_helper,...}.py` are
imported unchanged from `repo`; `slowfast`, `slowfast.models.build`, `torchvision` and `fvcore`
are replaced by empty stubs (the model code path does not use them). Needs torch, timm, einops.
"""
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types


class _Cfg(types.SimpleNamespace):
  pass


def _ns(d):
  return _Cfg(**{k: _ns(v) if isinstance(v, dict) else v for k, v in d.items()})


class _AnyMeta(type):
  def __getattr__(cls, name):
    if name.startswith('__'):
      raise AttributeError(name)
    return _AnyMeta(name, (), {})


class _StubModule(types.ModuleType):
  """A module any attribute of which is a dummy class (for imports that are never used)."""
  __path__ = []

  def __getattr__(self, name):
    if name.startswith('__'):
      raise AttributeError(name)
    return _AnyMeta(name, (), {})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Serves `torchvision` / `fvcore` and all their submodules as stubs (timm imports some)."""
  roots = ('torchvision', 'fvcore')

  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in self.roots:
      return importlib.machinery.ModuleSpec(name, self, is_package=True)
    return None

  def create_module(self, spec):
    return _StubModule(spec.name)

  def exec_module(self, module):
    pass


def load(repo: str):
  """(video_model_builder, vit_helper) modules of the checkout at `repo`."""
  models_dir = os.path.join(os.path.abspath(repo), 'slowfast', 'models')
  if not os.path.isfile(os.path.join(models_dir, 'vit_helper.py')):
    raise FileNotFoundError(f'{repo} is not a Motionformer checkout (no slowfast/models)')
  pkg = types.ModuleType('slowfast')
  pkg.__path__ = []
  models = types.ModuleType('slowfast.models')
  models.__path__ = [models_dir]
  build = types.ModuleType('slowfast.models.build')

  class _Registry:
    def register(self, *a, **k):
      return lambda obj: obj

  build.MODEL_REGISTRY = _Registry()
  # Always the stub: a torchvision wheel built for another torch fails at import.
  for name in [m for m in sys.modules if m.split('.')[0] in _StubFinder.roots]:
    del sys.modules[name]
  if not any(isinstance(f, _StubFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _StubFinder())
  sys.modules.update({'slowfast': pkg, 'slowfast.models': models, 'slowfast.models.build': build})
  vmb = importlib.import_module('slowfast.models.video_model_builder')
  return vmb, importlib.import_module('slowfast.models.vit_helper')


def config(*, attention='trajectory', frames=16, crop=224, approx='none', landmarks=128,
           depth=12, num_classes=400, drop_path=0.2, dim=768, heads=12):
  """The official cfg of a Mformer-B/L/HR-style ViT-B/16 with 2x16x16 tubelets (dim, heads:
  a smaller width for smoke tests)."""
  return _ns({
      'TRAIN': {'DATASET': 'Kinetics'}, 'MODEL': {'NUM_CLASSES': num_classes},
      'DATA': {'TRAIN_CROP_SIZE': crop},
      'VIT': {'PATCH_SIZE': 16, 'PATCH_SIZE_TEMP': 2, 'CHANNELS': 3, 'EMBED_DIM': dim,
              'DEPTH': depth, 'NUM_HEADS': heads, 'MLP_RATIO': 4, 'QKV_BIAS': True,
              'VIDEO_INPUT': True, 'TEMPORAL_RESOLUTION': frames // 2, 'USE_MLP': True,
              'DROP': 0.0, 'DROP_PATH': drop_path, 'HEAD_DROPOUT': 0.0, 'POS_DROPOUT': 0.0,
              'ATTN_DROPOUT': 0.0, 'HEAD_ACT': 'tanh', 'IM_PRETRAINED': False,
              'PRETRAINED_WEIGHTS': 'vit_1k', 'POS_EMBED': 'separate', 'ATTN_LAYER': attention,
              'USE_ORIGINAL_TRAJ_ATTN_CODE': True, 'APPROX_ATTN_TYPE': approx,
              'APPROX_ATTN_DIM': landmarks}})


def model(repo: str, **kw):
  vmb, _ = load(repo)
  return vmb.VisionTransformer(config(**kw))


def layer(repo: str, attention: str, dim: int = 768, heads: int = 12):
  """The attention part of one block as a callable x -> y (x: (B, 1+N, D)) and its modules."""
  import torch
  _, vh = load(repo)
  if attention == 'divided':
    blk = vh.DividedSpaceTimeBlock(attn_type='divided', dim=dim, num_heads=heads, qkv_bias=True)
    mods = torch.nn.ModuleList([blk.timeattn, blk.attn])

    def fn(x, seq_len, num_frames, approx='none', num_landmarks=128):
      t = x + blk.timeattn(x, blk.einops_from_time, blk.einops_to_time, n=seq_len)
      return t + blk.attn(t, blk.einops_from_space, blk.einops_to_space, f=num_frames)
    return fn, mods
  mod = vh.get_attention_module(attn_type=attention, dim=dim, num_heads=heads, qkv_bias=True,
                                use_original_code=True)

  def fn(x, seq_len, num_frames, approx='none', num_landmarks=128):
    return mod(x, seq_len=seq_len, num_frames=num_frames, approx=approx,
               num_landmarks=num_landmarks)[0]
  return fn, mod

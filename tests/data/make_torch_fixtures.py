"""Writes the torch fixtures of tests/test_torch_pickle.py and tests/test_model.py with real torch.

Run once where torch is installed (it is not a dependency of the project), from the repository root:
    python3.11 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy pyyaml
    /tmp/torchvenv/bin/python tests/data/make_torch_fixtures.py

Each torch_<name>.* file is torch.save output (zip format unless named legacy); torch_<name>.npz
holds what torch.load returns for it: every tensor's values under its path in the object
('model_state/cls_token', 'optimizer_state/state/0/exp_avg'; bfloat16/float8 as float32, which
holds them exactly) and `skeleton`, the repr of tests/torch_files.py `skeleton` (the structure with
dtypes and shapes). Files:
  slowfast_{zip,legacy}.pyth  PySlowFast checkpoint: epoch, model_state (real Motionformer key
                              names), an AdamW state_dict after one step, cfg as a YAML string.
  dtypes_zip.pt               float16/bfloat16/float64/int*/uint8/bool/complex64, views sharing
                              one storage (transposed, sliced with an offset, expanded with
                              stride 0), 0-d, empty, a Parameter, nested in lists and tuples;
                              and uint16/float8 (UntypedStorage + _rebuild_tensor_v3).
  dtypes_{legacy,big}.pt      the typed-storage part (torch.load reads the others from neither)
                              in the legacy format, and in the zip format rewritten big-endian
                              (byteorder 'big', storages byte-swapped; checked with torch.load).
                              Expected values: torch_dtypes_typed.npz.
  timm.pth                    {'model': OrderedDict} of timm ViT names (tests/torch_files.py's
                              writer must reproduce its data.pkl byte for byte).
  evil_{zip,legacy}.pth       torch.save of a state dict plus an object whose __reduce__ calls
                              os.system / builtins.eval (never run: the reader must refuse them).
  bicubic.npz                 torch.nn.functional.interpolate(bicubic, align_corners=False) of a
                              14x14 grid by 1.5 (tests/test_model.py).
"""
import collections
import io
import os
import pickle
import sys
import warnings
import zipfile

import numpy as np
import torch
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from torch_files import skeleton  # pylint: disable=g-import-not-at-top,wrong-import-position

warnings.filterwarnings('ignore', 'TypedStorage is deprecated')  # torch.<Name>Storage.dtype


def tensor_info(x):
  if not isinstance(x, torch.Tensor):
    return None
  x = x.detach()
  values = x.float() if x.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2) else x
  return str(x.dtype).removeprefix('torch.'), tuple(x.shape), values.numpy()


def save(name, obj, legacy=False):
  path = os.path.join(HERE, f'torch_{name}')
  torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
  return path


def expect(name, obj):
  """torch_<name>.npz: what torch.load returns for the files saved from obj."""
  tensors = {}
  tree = skeleton(obj, tensor_info, tensors)
  np.savez_compressed(os.path.join(HERE, f'torch_{name}.npz'), skeleton=np.array(repr(tree)),
                      **tensors)


def same(a, b):
  """torch.load results equal (structure, dtypes and values)."""
  ta, tb = {}, {}
  assert repr(skeleton(a, tensor_info, ta)) == repr(skeleton(b, tensor_info, tb))
  for k in ta:
    np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)


def slowfast():
  torch.manual_seed(0)
  d, p, kt = 8, 4, 2
  model = torch.nn.Module()
  model.cls_token = torch.nn.Parameter(torch.randn(1, 1, d))
  model.pos_embed = torch.nn.Parameter(torch.randn(1, 5, d))
  model.temp_embed = torch.nn.Parameter(torch.randn(1, 2, d))
  model.patch_embed_3d = torch.nn.ModuleDict(
      {'proj': torch.nn.Conv3d(3, d, (kt, p, p), stride=(kt, p, p))})
  model.blocks = torch.nn.ModuleList([torch.nn.ModuleDict({
      'norm1': torch.nn.LayerNorm(d),
      'attn': torch.nn.ModuleDict({'qkv': torch.nn.Linear(d, 3 * d)})})])
  model.head = torch.nn.Linear(d, 5)
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05)
  x = torch.randn(2, 3, 4, 8, 8)
  block = model.blocks[0]
  tokens = model.patch_embed_3d['proj'](x).flatten(3).permute(0, 2, 3, 1)   # (2, t=2, 4, d)
  tokens = (tokens + model.pos_embed[:, None, 1:] + model.temp_embed[:, :, None]).flatten(1, 2)
  tokens = torch.cat([model.cls_token.expand(2, -1, -1) + model.pos_embed[:, :1], tokens], 1)
  tokens = block['attn']['qkv'](block['norm1'](tokens))[..., :d]
  model.head(tokens[:, 0]).square().mean().backward()
  opt.step()
  cfg = yaml.safe_dump({'TRAIN': {'DATASET': 'kinetics', 'BATCH_SIZE': 8},
                        'MODEL': {'NUM_CLASSES': 5, 'MODEL_NAME': 'VisionTransformer'},
                        'VIT': {'PATCH_SIZE': p, 'PATCH_SIZE_TEMP': kt, 'EMBED_DIM': d,
                                'ATTN_LAYER': 'trajectory'}})
  ckpt = {'epoch': 3, 'model_state': model.state_dict(), 'optimizer_state': opt.state_dict(),
          'cfg': cfg}
  for legacy in (False, True):
    same(torch.load(save(f'slowfast_{"legacy" if legacy else "zip"}.pyth', ckpt, legacy),
                    weights_only=False), ckpt)
  expect('slowfast', ckpt)


def dtypes():
  torch.manual_seed(1)
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  half = torch.randn(3, 5).half()
  classic = {  # dtypes with a typed storage (torch.<Name>Storage, _rebuild_tensor_v2)
      'float16': half, 'float16_transposed': half.t(),
      'bfloat16': torch.randn(3, 4).bfloat16(), 'float64': torch.randn(2, 3, dtype=torch.float64),
      'int64': torch.arange(-5, 5) * 10**12, 'int32': torch.arange(-3, 3, dtype=torch.int32),
      'int16': torch.tensor([-32768, 7, 32767], dtype=torch.int16),
      'int8': torch.tensor([-128, 0, 127], dtype=torch.int8),
      'uint8': torch.tensor([0, 1, 128, 255], dtype=torch.uint8),
      'bool': torch.tensor([[True, False, True], [False, False, True]]),
      'complex64': torch.tensor([1 + 2j, -3.5 + 0.25j], dtype=torch.complex64),
      'shared_base': base,            # these four share one storage
      'transposed': base.t(),
      'sliced': base[1:3, 2::2],      # storage offset 8, strides (6, 2)
      'row': base[2],
      'expanded': torch.arange(3.0).expand(4, 3),   # stride (0, 1)
      'scalar': torch.tensor(2.5),                  # 0-d
      'scalar_int': torch.tensor(7),
      'empty': torch.zeros(0, 3), 'empty_view': base[4:],
      'parameter': torch.nn.Parameter(torch.ones(2, 2)),   # _rebuild_parameter
      'requires_grad': torch.full((2,), 3.0, requires_grad=True),
  }
  new = {  # torch >= 2.3 dtypes: UntypedStorage bytes + _rebuild_tensor_v3(..., dtype)
      'uint16': torch.tensor([0, 1, 65535], dtype=torch.uint16),
      'uint16_sliced': torch.tensor([1, 2, 3, 4, 5, 6], dtype=torch.uint16)[1::2],
      'float8_e4m3fn': torch.tensor([0.5, -2.0, 448.0]).to(torch.float8_e4m3fn),
      'float8_e5m2': torch.tensor([0.25, -3.0, 57344.0]).to(torch.float8_e5m2),
  }
  classic['nested'] = [base[0], (half[1], {'x': base[3, 1:]})]
  obj = {**classic, **new}
  same(torch.load(save('dtypes_zip.pt', obj), weights_only=False), obj)
  expect('dtypes', obj)
  # torch.load cannot read the _v3 dtypes from legacy files (UntypedStorage has no dtype), nor
  # byte-swaps them from big-endian ones (it swaps typed storages only): those two files hold
  # the typed-storage part. Big-endian: torch.save writes the host's byte order; the file is
  # rewritten the way a big-endian host writes it.
  same(torch.load(save('dtypes_legacy.pt', classic, legacy=True), weights_only=False), classic)
  big = save('dtypes_big.pt', classic)
  big_endian(big, big)
  same(torch.load(big, weights_only=False), classic)
  expect('dtypes_typed', classic)


def big_endian(src, dst):
  """Rewrites a zip-format torch file with byteorder 'big' and every storage byte-swapped."""
  units = {}  # storage key -> byte size of the unit to swap

  class Layout(pickle.Unpickler):
    def find_class(self, module, name):
      if name == '_rebuild_tensor_v2':
        return lambda storage, *args: units.__setitem__(storage[2], storage[1])
      if name == '_rebuild_parameter':
        return lambda data, *args: data
      return super().find_class(module, name)

    def persistent_load(self, pid):
      return pid

  with zipfile.ZipFile(src) as zf:
    records = {i.filename: zf.read(i.filename) for i in zf.infolist()}
  prefix = next(n for n in records if n.endswith('/data.pkl'))[:-len('data.pkl')]
  Layout(io.BytesIO(records[prefix + 'data.pkl'])).load()
  for key, storage_type in units.items():
    dtype = storage_type.dtype
    unit = torch.empty(0, dtype=dtype).element_size() // (2 if dtype.is_complex else 1)
    name = f'{prefix}data/{key}'
    records[name] = np.frombuffer(records[name], f'<u{unit}').astype(f'>u{unit}').tobytes()
  records[prefix + 'byteorder'] = b'big'
  with zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as zf:
    for name, data in records.items():
      zf.writestr(name, data)


def timm():
  torch.manual_seed(2)
  d, p = 8, 4
  sd = collections.OrderedDict([
      ('cls_token', torch.randn(1, 1, d)), ('pos_embed', torch.randn(1, 5, d)),
      ('patch_embed.proj.weight', torch.randn(d, 3, p, p)),
      ('patch_embed.proj.bias', torch.randn(d)),
      ('blocks.0.norm1.weight', torch.ones(d)), ('blocks.0.attn.qkv.weight', torch.randn(3 * d, d)),
      ('norm.bias', torch.zeros(d)), ('head.weight', torch.randn(10, d)),
      ('head.bias', torch.zeros(10))])
  ckpt = {'model': sd}
  same(torch.load(save('timm.pth', ckpt), weights_only=False), ckpt)
  expect('timm', ckpt)


class Evil:
  def __init__(self, fn, arg):
    self.fn, self.arg = fn, arg

  def __reduce__(self):
    return self.fn, (self.arg,)


def evil():
  never = 'echo torch_pickle fixture: this must never run'
  save('evil_zip.pth', {'model_state': {'w': torch.ones(2)}, 'cfg': Evil(os.system, never)})
  save('evil_legacy.pth', {'model_state': {'w': torch.ones(2)},
                           'cfg': Evil(eval, f'__import__("os").system({never!r})')}, legacy=True)


def bicubic():
  grid = np.random.default_rng(0).standard_normal((1, 1, 14, 14))
  ref = torch.nn.functional.interpolate(torch.from_numpy(grid), scale_factor=1.5, mode='bicubic',
                                        align_corners=False).numpy()
  np.savez_compressed(os.path.join(HERE, 'torch_bicubic.npz'), grid=grid, ref=ref)


if __name__ == '__main__':
  print(f'torch {torch.__version__}, numpy {np.__version__}, Python {sys.version.split()[0]}')
  slowfast()
  dtypes()
  timm()
  evil()
  bicubic()
  for name in sorted(os.listdir(HERE)):
    if name.startswith('torch_'):
      print(f'{os.path.getsize(os.path.join(HERE, name)):8d}  {name}')

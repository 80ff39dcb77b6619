"""torch_pickle against real torch.save files (tests/data/make_torch_fixtures.py), without torch."""
import ast
import collections
import itertools
import os
import re
import zipfile

import ml_dtypes
import numpy as np
import pytest

import torch_files
from mformer_jax import errors
from mformer_jax.weights import torch_pickle

DATA = os.path.join(os.path.dirname(__file__), 'data')
PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'mformer_jax')
# Dtypes the generator stored as float32 (exact): npz files cannot hold them.
WIDENED = (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2)


def _info(x):
  if not isinstance(x, np.ndarray):
    return None
  return str(x.dtype), x.shape, x.astype(np.float32) if x.dtype in WIDENED else x


@pytest.mark.parametrize('name,expected', [
    ('torch_slowfast_zip.pyth', 'torch_slowfast'), ('torch_slowfast_legacy.pyth', 'torch_slowfast'),
    ('torch_dtypes_zip.pt', 'torch_dtypes'), ('torch_dtypes_legacy.pt', 'torch_dtypes_typed'),
    ('torch_dtypes_big.pt', 'torch_dtypes_typed'), ('torch_timm.pth', 'torch_timm')])
def test_reads_what_torch_load_returns(name, expected):
  """Structure, every non-tensor value, and each tensor's dtype, shape and values."""
  tensors = {}
  tree = torch_files.skeleton(torch_pickle.load(os.path.join(DATA, name)), _info, tensors)
  with np.load(os.path.join(DATA, f'{expected}.npz')) as z:
    assert repr(tree) == str(z['skeleton'])
    assert sorted(tensors) == sorted(k for k in z.files if k != 'skeleton')
    for key, values in tensors.items():
      np.testing.assert_array_equal(values, z[key], err_msg=key, strict=True)


def test_slowfast_checkpoint_contents():
  """What the reader must get right for convert: names, the 5-D kernel, AdamW state, cfg."""
  ckpt = torch_pickle.load(os.path.join(DATA, 'torch_slowfast_zip.pyth'))
  sd = ckpt['model_state']
  assert isinstance(sd, collections.OrderedDict) and ckpt['epoch'] == 3
  assert list(sd)[:4] == ['cls_token', 'pos_embed', 'temp_embed', 'patch_embed_3d.proj.weight']
  assert sd['patch_embed_3d.proj.weight'].shape == (8, 3, 2, 4, 4)
  assert sd['blocks.0.attn.qkv.weight'].shape == (24, 8) and 'head.weight' in sd
  state = ckpt['optimizer_state']['state'][0]
  assert state['step'].shape == () and state['step'] == 1 and state['exp_avg'].shape == (1, 1, 8)
  assert ckpt['optimizer_state']['param_groups'][0]['betas'] == (0.9, 0.999)
  assert 'EMBED_DIM: 8' in ckpt['cfg']


def test_tensors_are_writable_copies():
  """Views of one storage (transposed, sliced with an offset, a row) come back independent."""
  obj = torch_pickle.load(os.path.join(DATA, 'torch_dtypes_zip.pt'))
  views = [obj[k] for k in ('shared_base', 'transposed', 'sliced', 'row', 'expanded')]
  for a in views:
    assert a.flags.c_contiguous and a.flags.writeable
  for a, b in itertools.combinations(views, 2):
    assert not np.shares_memory(a, b)
  obj['shared_base'][:] = -1
  assert obj['row'][0] == 12 and obj['transposed'][0, 1] == 6
  assert type(obj['scalar']) is np.ndarray and obj['scalar'].shape == ()


@pytest.mark.parametrize('name,refused', [('torch_evil_zip.pth', 'posix.system'),
                                          ('torch_evil_legacy.pth', 'builtins.eval')])
def test_refuses_a_checkpoint_that_would_run_code(name, refused):
  """torch.save of a state dict plus an object whose __reduce__ is os.system / eval."""
  path = os.path.join(DATA, name)
  with pytest.raises(errors.InputError) as err:
    torch_pickle.load(path)
  assert str(err.value).startswith(f'{path}: refused the global {refused}:')


def _zip_with_pickle(path, data_pkl):
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('archive/data.pkl', data_pkl)
    zf.writestr('archive/byteorder', 'little')


@pytest.mark.parametrize('module,name', [
    ('os', 'system'), ('builtins', 'getattr'), ('__builtin__', 'exec'), ('subprocess', 'Popen'),
    ('numpy.core.multiarray', '_reconstruct'), ('torch.nn.modules.linear', 'Linear'),
    ('torch', 'load'), ('torch._utils', '_rebuild_device_tensor_from_numpy')])
def test_refuses_every_other_global(tmp_path, module, name):
  path = tmp_path / 'x.pth'
  _zip_with_pickle(path, b'\x80\x02c' + f'{module}\n{name}\n'.encode() + b')R.')  # name()
  shown = 'builtins' if module == '__builtin__' else module
  with pytest.raises(errors.InputError,
                     match=re.escape(f'{path}: refused the global {shown}.{name}:')):
    torch_pickle.load(str(path))


@pytest.mark.parametrize('offset,size,stride', [
    (0, (5,), (1,)), (3, (2,), (1,)), (0, (2, 3), (3, 1)), (0, (2,), (4,)), (4, (), ()),
    (-1, (2,), (1,)), (0, (2,), (-1,)), (0, (-1,), (1,)), (0, (2, 2), (1,))])
def test_tensor_outside_its_storage_is_refused(tmp_path, offset, size, stride):
  """as_strided would read past the storage: an error, not other memory."""
  path = tmp_path / 'x.pth'
  storage = np.arange(4, dtype=np.float32)
  torch_files.write_pyth(path, {'w': torch_files.Strided(storage, offset, size, stride)})
  with pytest.raises(errors.InputError, match='tensor'):
    torch_pickle.load(str(path))


def test_tensor_layouts_inside_the_storage(tmp_path):
  path = tmp_path / 'x.pth'
  storage = np.arange(6, dtype=np.float64)
  torch_files.write_pyth(path, {'last': torch_files.Strided(storage, 5, (), ()),
                                'rows': torch_files.Strided(storage, 1, (2, 2), (3, 1)),
                                'empty': torch_files.Strided(storage, 0, (0, 9), (9, 1))})
  out = torch_pickle.load(str(path))
  np.testing.assert_array_equal(out['last'], np.float64(5), strict=True)
  np.testing.assert_array_equal(out['rows'], [[1.0, 2.0], [4.0, 5.0]])
  assert out['empty'].shape == (0, 9) and out['empty'].dtype == np.float64


def _truncations(name):
  with open(os.path.join(DATA, name), 'rb') as f:
    data = f.read()
  return [(f'{name}[:{n}]', data[:n]) for n in range(0, len(data), max(len(data) // 40, 1))]


@pytest.mark.parametrize('label,content', [
    ('garbage', bytes(range(256)) * 4), ('text', b'not a checkpoint\n'), ('empty', b''),
    ('pickle of a list', b'\x80\x02]q\x00.'),
    *_truncations('torch_slowfast_zip.pyth'), *_truncations('torch_slowfast_legacy.pyth')])
def test_unreadable_file_is_one_error_naming_it(tmp_path, label, content):
  del label
  path = tmp_path / 'checkpoint.pyth'
  path.write_bytes(content)
  with pytest.raises(errors.InputError) as err:
    torch_pickle.load(str(path))
  assert str(err.value).startswith(f'{path}: ')


def test_zip_without_data_pkl_or_with_a_missing_storage(tmp_path):
  path = tmp_path / 'x.pth'
  np.savez(path.with_suffix('.npz'), w=np.zeros(2))
  os.rename(path.with_suffix('.npz'), path)
  with pytest.raises(errors.InputError, match='not one written by torch'):
    torch_pickle.load(str(path))
  with zipfile.ZipFile(os.path.join(DATA, 'torch_timm.pth')) as src, \
       zipfile.ZipFile(path, 'w') as dst:
    for name in src.namelist():
      if name != 'torch_timm/data/3':
        dst.writestr(name, src.read(name))
  with pytest.raises(errors.InputError,
                     match='the storage record torch_timm/data/3 is missing'):
    torch_pickle.load(str(path))


def test_writer_matches_torch_byte_for_byte(tmp_path):
  """tests/torch_files.py's writer (for fixtures too big to commit) writes what torch.save does."""
  with np.load(os.path.join(DATA, 'torch_timm.npz')) as z:
    sd = collections.OrderedDict((k[len('model/'):], z[k]) for k in z.files if k != 'skeleton')
  path = tmp_path / 'torch_timm.pth'
  torch_files.write_pyth(path, {'model': sd})
  with zipfile.ZipFile(path) as ours, zipfile.ZipFile(os.path.join(DATA, 'torch_timm.pth')) as ref:
    for name in ours.namelist():
      assert ours.read(name) == ref.read(name), name


def test_no_torch_import_in_the_package():
  for root, _, files in os.walk(PACKAGE):
    for name in (f for f in files if f.endswith('.py')):
      with open(os.path.join(root, name)) as f:
        tree = ast.parse(f.read())
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
          modules = [node.module or '']
        else:
          continue
        assert not any(m == 'torch' or m.startswith('torch.') for m in modules), (name, modules)

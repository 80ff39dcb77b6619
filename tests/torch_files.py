"""torch.save files in tests, without torch.

* `skeleton`: a checkpoint's structure with its tensors taken out, as a value whose repr is the
  same under every Python (OrderedDict's repr changed in 3.12); tests/data/make_torch_fixtures.py
  stores it next to the tensors torch saved, tests/test_torch_pickle.py compares with it.
* `write_pyth`: a writer of torch.save's zip format for contiguous numpy arrays, written from the
  format (torch/serialization.py `_save`, torch/_tensor.py `_reduce_ex_internal`), not from the
  reader it tests; its data.pkl is byte for byte the one torch writes (test_torch_pickle checks
  that on a real torch.save file). For checkpoints too big to commit, e.g. a golden state dict.
"""
import collections
import os
import pickle
import zipfile

import numpy as np


def _join(path, key):
  return f'{path}/{key}' if path else str(key)


def skeleton(obj, tensor_info, tensors, path=''):
  """obj with each tensor -> ('tensor', dtype name, shape) and each dict/list/tuple -> (type name,
  items); tensor_info(x) is None or (dtype name, shape, numpy values), which go to tensors[path]."""
  info = tensor_info(obj)
  if info is not None:
    tensors[path] = info[2]
    return ('tensor', info[0], tuple(info[1]))
  if isinstance(obj, dict):
    return (type(obj).__name__,
            [(k, skeleton(v, tensor_info, tensors, _join(path, k))) for k, v in obj.items()])
  if isinstance(obj, (list, tuple)):
    return (type(obj).__name__,
            [skeleton(v, tensor_info, tensors, _join(path, i)) for i, v in enumerate(obj)])
  return obj


class _Global:
  """A name pickled as a GLOBAL opcode (torch._utils._rebuild_tensor_v2, torch.FloatStorage)."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle's save_reduce asks for a callable; never called
    raise TypeError(f'{self.module}.{self.name} is only a name')


_REBUILD_V2 = _Global('torch._utils', '_rebuild_tensor_v2')
_STORAGE_TYPES = {np.dtype(np.float32): _Global('torch', 'FloatStorage'),
                  np.dtype(np.float64): _Global('torch', 'DoubleStorage'),
                  np.dtype(np.int64): _Global('torch', 'LongStorage')}


class _Storage:

  def __init__(self, key, array):
    self.key, self.array = key, array


# A tensor of any layout over a storage of `array`'s elements (e.g. one reaching outside it).
Strided = collections.namedtuple('Strided', 'array offset size stride')


class _Tensor:
  """Pickles as torch.Tensor does: _rebuild_tensor_v2(storage, offset, size, stride,
  requires_grad, backward_hooks) with the storage as a persistent id."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.layout = storage, (offset, tuple(size), tuple(stride))

  def __reduce__(self):
    return (_REBUILD_V2, (self.storage, *self.layout, False, collections.OrderedDict()))


class _Pickler(pickle._Pickler):  # pylint: disable=protected-access
  """The pure-Python pickler, whose dispatch table can write _Global names without importing
  torch (the C pickler imports a global's module to check it); output matches the C pickler's."""
  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def _save_name(self, obj):
    self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
    self.memoize(obj)

  dispatch[_Global] = _save_name

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):  # torch/serialization.py _save: persistent_id
      return ('storage', _STORAGE_TYPES[obj.array.dtype], obj.key, 'cpu', obj.array.size)
    return None


def _tensors(obj, storages):
  """obj with its arrays as _Tensor, each with its own storage, keyed '0', '1', ..."""
  if isinstance(obj, np.ndarray):
    obj = np.ascontiguousarray(obj)
    obj = Strided(obj, 0, obj.shape, [s // obj.itemsize for s in obj.strides])
  if isinstance(obj, Strided):
    storages.append(_Storage(str(len(storages)), obj.array.reshape(-1)))
    return _Tensor(storages[-1], obj.offset, obj.size, obj.stride)
  if isinstance(obj, dict):
    return type(obj)((k, _tensors(v, storages)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_tensors(v, storages) for v in obj)
  return obj


def write_pyth(path, obj):
  """torch.save(obj, path) for obj of dicts/lists/numbers/strings and float32/float64/int64
  arrays or `Strided` (on a little-endian host)."""
  storages = []
  tree = _tensors(obj, storages)
  archive = os.path.splitext(os.path.basename(path))[0]
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
    with zf.open(f'{archive}/data.pkl', 'w') as f:
      _Pickler(f, protocol=2).dump(tree)
    zf.writestr(f'{archive}/byteorder', 'little')
    for storage in storages:
      zf.writestr(f'{archive}/data/{storage.key}', storage.array.tobytes())
    zf.writestr(f'{archive}/version', '3\n')

"""Reads PyTorch checkpoints (torch.save files: .pyth, .pth, .pt) into numpy, without torch.

    obj = torch_pickle.load('checkpoint_epoch_00050.pyth')   # tensors come back as np.ndarray

A torch.save file is a pickle whose tensors point at raw storages kept outside it, in one of two
layouts (torch/serialization.py):
* zip (torch >= 1.6, the default): <archive>/data.pkl, each storage's bytes in <archive>/data/<key>,
  and <archive>/byteorder ('little' or 'big'; files without it were written little-endian);
* legacy (`_use_new_zipfile_serialization=False`, the default before 1.6): pickles of the magic
  number, the protocol version and a sys-info dict, then the main pickle, then the pickled list of
  storage keys, then for each key its element count (int64, little-endian) and its bytes
  (always little-endian).

Unpickling calls whatever the file names, so the unpickler here resolves only the names that a
checkpoint of tensors, numbers, strings and containers needs: the tensor rebuilders to this
module's stand-ins, storage classes and dtypes to their names, a few builtin container types to
themselves; any other name (os.system, a model class, numpy) is refused with
an `InputError`, so no code of the file's choosing runs. Tensors come back as writable C-order
arrays with memory of their own, after checking that their size, stride and offset stay inside
their storage: a tensor that is its whole storage, contiguous (each tensor of a saved state
dict), keeps the storage's buffer as it was read, any other is a copy; no two share memory.
Reading a state dict thus holds its bytes once, not twice (storages and copies).
"""
import codecs
import collections
import math
import os
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np

from mformer_jax.errors import InputError

_MAGIC = 0x1950A86A20F9469CFC6C   # first pickle of a legacy file
_PROTOCOL = 1001                  # second pickle of a legacy file

# Storage classes (torch.<Name>Storage) -> element dtype. Legacy files saved from a GPU name them
# torch.cuda.<Name>Storage; newer dtypes (uint16, float8) use UntypedStorage (bytes) and pass the
# tensor's dtype to _rebuild_tensor_v3.
_STORAGES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_, 'ComplexFloatStorage': np.complex64,
    'ComplexDoubleStorage': np.complex128, 'UntypedStorage': np.uint8,
}
# torch dtype objects (pickled as torch.<name>) -> numpy; ml_dtypes supplies bfloat16 and float8.
_DTYPES = {
    'float32': np.float32, 'float64': np.float64, 'float16': np.float16,
    'bfloat16': ml_dtypes.bfloat16, 'int64': np.int64, 'int32': np.int32, 'int16': np.int16,
    'int8': np.int8, 'uint8': np.uint8, 'uint16': np.uint16, 'uint32': np.uint32,
    'uint64': np.uint64, 'bool': np.bool_, 'complex64': np.complex64, 'complex128': np.complex128,
    'float8_e4m3fn': ml_dtypes.float8_e4m3fn, 'float8_e5m2': ml_dtypes.float8_e5m2,
    'float8_e4m3fnuz': ml_dtypes.float8_e4m3fnuz, 'float8_e5m2fnuz': ml_dtypes.float8_e5m2fnuz,
}
# Classes that a pickle may only name (the first argument of _rebuild_from_type_v2).
_TENSOR_CLASSES = ('torch.Tensor', 'torch.nn.parameter.Parameter')
# Python globals a checkpoint may use: C types that build plain values and run no other code.
_BUILTINS = {
    'collections.OrderedDict': collections.OrderedDict, 'builtins.set': set,
    'builtins.frozenset': frozenset, 'builtins.bytearray': bytearray,
    'builtins.complex': complex, 'torch.Size': tuple,
}
# torch._utils functions that rebuild tensors and parameters, and the methods standing in for them.
_REBUILDERS = {
    'torch._utils._rebuild_tensor': '_rebuild_tensor',
    'torch._utils._rebuild_tensor_v2': '_rebuild_tensor_v2',
    'torch._utils._rebuild_tensor_v3': '_rebuild_tensor_v3',
    'torch._utils._rebuild_parameter': '_rebuild_parameter',
    'torch._utils._rebuild_parameter_with_state': '_rebuild_parameter',
    'torch._tensor._rebuild_from_type_v2': '_rebuild_from_type_v2',
    '_codecs.encode': '_encode',   # how protocol 2 pickles a bytes object
}

# One storage: element dtype, element count and bytes (None while a legacy file's layout is read).
# A tuple, so that a pickle's BUILD opcode cannot change it.
_Storage = collections.namedtuple('_Storage', 'dtype numel data')


class _Unpickler(pickle.Unpickler):
  """Resolves the allowed names only; storages come from `read_storage(key, dtype, numel)`."""

  def __init__(self, file, read_storage, *, big_endian=False, storages=None):
    super().__init__(file, encoding='utf-8')  # as torch.load: Python 2 str -> str
    self._read_storage = read_storage
    self._big_endian = big_endian
    self.storages = {} if storages is None else storages  # key -> _Storage, shared by views
    self._taken = set()  # id()s of the storage buffers a tensor has kept as its own memory

  def find_class(self, module, name):
    if module == '__builtin__':  # protocol 2 (torch's) writes Python 2's name for builtins
      module = 'builtins'
    full = f'{module}.{name}'
    if full in _BUILTINS:
      return _BUILTINS[full]
    if full in _REBUILDERS:
      return getattr(self, _REBUILDERS[full])  # a bound method: a BUILD opcode cannot alter it
    # Storage classes and dtypes are markers: their (immutable) names, looked up where used.
    if module in ('torch', 'torch.cuda', 'torch.storage') and name in _STORAGES:
      return name
    if module == 'torch' and name in _DTYPES:
      return name
    if full in _TENSOR_CLASSES:
      return full
    raise InputError(
        f'refused the global {full}: only tensors, numbers, strings and containers are read '
        '(torch.save(model.state_dict()) files; not pickled model objects or other classes)')

  def persistent_load(self, pid):
    # zip: ('storage', type, key, location, numel); legacy: ... plus view metadata (or None).
    if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != 'storage':
      kind = pid[0] if isinstance(pid, tuple) and pid else pid
      raise InputError(f'persistent id of kind {kind!r} (a pickled module '
                       'class?); only storages are supported')
    storage_type, key, _, numel = pid[1:5]
    if storage_type not in _STORAGES:
      raise InputError(f'storage of unknown type {storage_type!r}')
    dtype = np.dtype(_STORAGES[storage_type])
    if key not in self.storages:
      self.storages[key] = _Storage(dtype, numel, self._read_storage(key, dtype, numel))
    root = self.storages[key]
    view = pid[5] if len(pid) == 6 else None
    if view is None:
      return root
    # Pre-1.0 storage views: (view key, element offset, element count) of the root storage.
    _, offset, size = view
    data = None if root.data is None else root.data[offset * dtype.itemsize:
                                                    (offset + size) * dtype.itemsize]
    return _Storage(dtype, size, data)

  # -- stand-ins for torch._utils (same signatures) --------------------------------------------
  def _rebuild_tensor(self, storage, storage_offset, size, stride):
    return self._tensor(storage, storage_offset, size, stride, storage.dtype)

  def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad,
                         backward_hooks, metadata=None):
    del requires_grad, backward_hooks
    return self._tensor(storage, storage_offset, size, stride, storage.dtype, metadata)

  def _rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad,
                         backward_hooks, dtype, metadata=None):
    del requires_grad, backward_hooks
    if dtype not in _DTYPES:
      raise InputError(f'tensor of unknown dtype {dtype!r}')
    return self._tensor(storage, storage_offset, size, stride, np.dtype(_DTYPES[dtype]), metadata)

  def _rebuild_parameter(self, data, requires_grad, backward_hooks, state=None):
    del requires_grad, backward_hooks, state  # a Parameter is its data here
    return data

  def _rebuild_from_type_v2(self, func, new_type, args, state):
    del new_type, state  # tensor subclasses and their Python attributes: the plain tensor
    return func(*args)

  def _encode(self, text, encoding):
    if encoding not in ('latin1', 'latin-1'):
      raise InputError(f'bytes encoded as {encoding!r} (torch uses latin1)')
    return codecs.encode(text, encoding)

  def _tensor(self, storage, offset, size, stride, dtype, metadata=None):
    if not isinstance(storage, _Storage):
      raise InputError(f'tensor rebuilt from a {type(storage).__name__}, not '
                       'a storage')
    if storage.data is None:  # legacy first pass: only the layout is being read
      return None
    size, stride = tuple(size), tuple(stride)
    if (not all(type(v) is int for v in (offset,) + size + stride) or len(size) != len(stride)
        or min(size + stride + (offset,)) < 0):
      raise InputError(f'tensor with size {size}, stride {stride}, offset '
                       f'{offset!r}')
    if 0 in size:
      return np.zeros(size, dtype)
    # as_strided reads whatever memory the numbers point at: they must stay inside the storage.
    n, item = len(storage.data) // dtype.itemsize, dtype.itemsize
    if offset + sum((k - 1) * s for k, s in zip(size, stride)) >= n:
      raise InputError(
          f'tensor (size {size}, stride {stride}, offset {offset}) reaching outside its storage '
          f'of {n} elements')
    if self._takes_whole(storage, offset, size, stride, item):
      self._taken.add(id(storage.data))
      a = np.frombuffer(storage.data, np.uint8).view(dtype).reshape(size)  # writable: a bytearray
      return self._signs(a, metadata)
    # Strided over the bytes, each element a last axis of `item` bytes (numpy's as_strided does
    # not take float8 dtypes). The copy is C order and writable, no view of a storage that
    # other tensors share.
    raw = np.frombuffer(storage.data, np.uint8)[offset * item:]
    a = np.lib.stride_tricks.as_strided(raw, size + (item,), [s * item for s in stride] + [1])
    if self._big_endian:  # reverse each element's bytes (each half's, for complex numbers)
      parts = 2 if dtype.kind == 'c' else 1
      a = a.reshape(size + (parts, item // parts))[..., ::-1].reshape(size + (item,))
    return self._signs(a.copy().view(dtype).reshape(size), metadata)

  def _takes_whole(self, storage, offset, size, stride, item) -> bool:
    """Whether the tensor can keep its storage's buffer: it is all of it, in C order, stored
    little-endian (no bytes to swap), and no tensor has kept it before (later ones copy)."""
    c_order = tuple(math.prod(size[i + 1:]) for i in range(len(size)))
    return (isinstance(storage.data, bytearray) and not self._big_endian and offset == 0
            and stride == c_order and math.prod(size) * item == len(storage.data)
            and id(storage.data) not in self._taken)

  @staticmethod
  def _signs(a, metadata):
    if metadata and metadata.get('neg'):  # lazily negated / conjugated tensors (torch's bits)
      a = -a
    if metadata and metadata.get('conj'):
      a = np.conj(a)
    return a


def _load_zip(path):
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    # The archive folder is named after the file torch.save wrote (often 'archive').
    pickles = [n for n in names if n.count('/') == 1 and n.endswith('/data.pkl')]
    if len(pickles) != 1:
      raise InputError('a zip archive but not one written by torch.save '
                       f'(expected one <archive>/data.pkl, found {pickles})')
    prefix = pickles[0][:-len('data.pkl')]
    byteorder = zf.read(prefix + 'byteorder') if prefix + 'byteorder' in names else b'little'
    if byteorder not in (b'little', b'big'):
      raise InputError(f'unknown byteorder record {byteorder!r}')

    def read_storage(key, dtype, numel):
      name = f'{prefix}data/{key}'
      if name not in names:
        raise InputError(f'the storage record {name} is missing')
      data = bytearray(zf.read(name))  # writable, for a tensor to keep (_takes_whole)
      if len(data) != numel * dtype.itemsize:
        raise InputError(f'{len(data)} bytes in {name}, expected '
                         f'{numel} x {dtype.itemsize}')
      return data

    with zf.open(pickles[0]) as f:
      return _Unpickler(f, read_storage, big_endian=byteorder == b'big').load()


def _no_storage(key, dtype, numel):
  del dtype, numel
  raise InputError(f'the pickle uses storage {key!r}, which the file does not hold')


def _load_legacy(path):
  with open(path, 'rb') as f:
    size = os.fstat(f.fileno()).st_size
    try:
      magic = _Unpickler(f, _no_storage).load()
    except _PICKLE_ERRORS:
      magic = None
    if type(magic) is not int or magic != _MAGIC:
      raise InputError(
          'not a PyTorch checkpoint: neither the zip format of torch.save (torch >= 1.6) nor its '
          'legacy pickle format (or the file is truncated)')
    protocol = _Unpickler(f, _no_storage).load()
    if protocol != _PROTOCOL:
      raise InputError(f'legacy protocol version {protocol!r}, expected '
                       f'{_PROTOCOL}')
    _Unpickler(f, _no_storage).load()  # sys info; the storages are little-endian regardless
    # The storages' bytes follow the main pickle, so it is read twice: once for the storages'
    # types and sizes (and where their bytes start), then again with the bytes in hand.
    start = f.tell()
    layout = _Unpickler(f, lambda key, dtype, numel: None)
    layout.load()
    storages = {}
    for key in _Unpickler(f, _no_storage).load():
      if key not in layout.storages:
        raise InputError(f'lists storage {key!r}, which the pickle never uses')
      dtype, numel, _ = layout.storages[key]
      (count,) = struct.unpack('<q', f.read(8))
      if count != numel or not 0 <= count * dtype.itemsize <= size - f.tell():
        raise InputError(f'storage {key!r}: {count} elements of {numel}, '
                         f'{size - f.tell()} bytes left (truncated?)')
      storages[key] = _Storage(dtype, numel, bytearray(f.read(count * dtype.itemsize)))
    f.seek(start)
    return _Unpickler(f, _no_storage, storages=storages).load()


# What reading a corrupt file can raise (from the pickle machinery, zipfile, numpy, struct).
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                  AttributeError, struct.error, zipfile.BadZipFile, MemoryError, OverflowError)


def load(path):
  """The object torch.save wrote to `path`, with every tensor as a numpy array (torch's dtype;
  bfloat16 and float8 from ml_dtypes), Parameters as their data, containers as they were."""
  try:
    if zipfile.is_zipfile(path):
      return _load_zip(path)
    return _load_legacy(path)
  except InputError as e:  # a refusal of the reader's own: named after the file
    raise InputError(f'{path}: {e}') from None
  except _PICKLE_ERRORS as e:
    raise InputError(f'{path}: not a readable PyTorch checkpoint (corrupt or '
                     f'truncated?): {type(e).__name__}: {e}') from e

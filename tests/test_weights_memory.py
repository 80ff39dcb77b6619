"""What loading an official checkpoint holds in memory: torch_pickle keeps each whole storage's
buffer as its tensor (no second copy of the file's bytes), the state dict's arrays are not copied
on the host (official.params_from_state_dict), `load_official` places them one at a time and
drops each host array once placed, and importing the weights API imports no TensorFlow."""
import dataclasses
import gc
import importlib
import os
import subprocess
import sys
import weakref

import jax
import numpy as np
import pytest
from flax import traverse_util

import torch_files
from mformer_jax import weights
from mformer_jax.weights import official, torch_pickle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
load_lib = importlib.import_module('mformer_jax.weights.load')  # the name `load` is the function
ORIG = os.path.join(ROOT, 'tests', 'goldens', 'model_trajectory_orig.npz')


def _state_dict():
  """(ModelConfig, official state dict) of the golden file."""
  with np.load(ORIG) as z:
    sd = {k: z[k] for k in z.files if '__' not in k}
  return weights.read_official(ORIG)[0].cfg, sd


def _memory(a: np.ndarray):
  """The object whose memory `a` is (the end of its chain of bases)."""
  while isinstance(a, np.ndarray) and a.base is not None:
    a = a.base
  return a.obj if isinstance(a, memoryview) else a


def test_a_whole_contiguous_tensor_keeps_its_storage_buffer(tmp_path):
  rng = np.random.default_rng(0)
  sd = {'w': rng.standard_normal((4, 3)).astype(np.float32), 'b': np.arange(3, dtype=np.int64),
        's': torch_files.Strided(np.full(1, 2.5), 0, (), ()),
        'part': torch_files.Strided(np.arange(6, dtype=np.float32), 2, (2, 2), (1, 2))}
  torch_files.write_pyth(tmp_path / 'x.pth', {'model_state': sd})
  got = torch_pickle.load(str(tmp_path / 'x.pth'))['model_state']
  for k in ('w', 'b', 's'):  # the storage as read: a bytearray of exactly the tensor's bytes
    buffer = _memory(got[k])
    assert isinstance(buffer, bytearray) and len(buffer) == got[k].nbytes, k
    assert got[k].flags.writeable and got[k].flags.c_contiguous
    np.testing.assert_array_equal(got[k], np.full((), 2.5) if k == 's' else sd[k], strict=True)
  # A part of a storage, transposed: a C-order copy of its own.
  assert isinstance(_memory(got['part']), np.ndarray) and got['part'].flags.c_contiguous
  np.testing.assert_array_equal(got['part'], np.float32([[2, 4], [3, 5]]), strict=True)


def test_params_are_views_of_the_state_dict_with_its_exact_values():
  cfg, sd = _state_dict()
  params = official.params_from_state_dict(sd, cfg)
  flat = traverse_util.flatten_dict(params)
  for path, value in flat.items():
    assert np.shares_memory(value, sd[official.official_key(path)]), path
  # The inverse mapping gives back the state dict, bit for bit (kernels are transposed views).
  back = official.export_official({'params': params})
  assert sorted(back) == sorted(sd)
  for k, v in sd.items():
    np.testing.assert_array_equal(back[k], v, strict=True)
  # Another parameter dtype converts, so copies: nothing shared, the values cast.
  with jax.enable_x64(True):
    f64 = official.params_from_state_dict(sd, dataclasses.replace(cfg, dtype='float64'))
  for path, value in traverse_util.flatten_dict(f64).items():
    original = flat[path]
    assert value.dtype == np.float64 and not np.shares_memory(value, original), path
    np.testing.assert_array_equal(value, original.astype(np.float64))


def test_place_drops_each_host_array_once_it_is_on_the_device():
  rng = np.random.default_rng(0)
  flat = {('a', 'kernel'): rng.standard_normal((3, 4)).astype(np.float32).T,  # a strided view
          ('a', 'bias'): rng.standard_normal(4).astype(np.float32),
          ('b',): np.arange(6, dtype=np.int32).reshape(2, 3)}
  want = {k: v.copy() for k, v in flat.items()}
  alive = {k: weakref.ref(v) for k, v in flat.items()}
  placed = load_lib._place(flat)  # pylint: disable=protected-access
  gc.collect()  # jax drops its references to host buffers at its next call or collection
  assert not flat and isinstance(placed['a']['kernel'], jax.Array)
  by_path = traverse_util.flatten_dict(placed)
  for k, ref in alive.items():
    # Gone, or alive only as the device buffer itself: the CPU client may adopt an aligned,
    # contiguous host array without a copy (whether it does depends on where malloc put it).
    assert ref() is None or np.shares_memory(ref(), np.asarray(by_path[k])), k
  for k, v in traverse_util.flatten_dict(placed).items():
    np.testing.assert_array_equal(np.asarray(v), want[k], strict=True)


def test_load_official_leaves_a_state_dict_passed_in_as_it_was():
  cfg, sd = _state_dict()
  before = {k: v.copy() for k, v in sd.items()}
  model, variables = weights.load_official(sd, cfg)
  assert model.cfg == cfg and sorted(sd) == sorted(before)
  for k, v in sd.items():
    np.testing.assert_array_equal(v, before[k], strict=True)
  want = official.params_from_state_dict(before, cfg)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b, strict=True),
               variables['params'], want)


@pytest.mark.slow
def test_the_weights_api_imports_no_tensorflow():
  """TensorFlow (~500 MB resident) is the data pipeline's; loading weights never needs it."""
  code = ('import sys, mformer_jax as mf; from mformer_jax import weights; '
          'mf.load_official, weights.load, weights.labels.class_names; '
          'print(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.splitlines()[-1] == '[]'

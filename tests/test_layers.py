"""The package's layers: every import points down (or within its own unit), and no modules
import each other in a cycle. The order is declared once, here; docs/architecture.md explains it.
Imports inside functions count too: a late import is still a dependency."""
import ast
import pathlib

import pytest

import mformer_jax

PACKAGE = pathlib.Path(mformer_jax.__file__).parent
# Bottom first. A unit is a subpackage or a top-level module; units in one layer are independent.
LAYERS = (
    ('errors',),
    ('model', 'data'),
    ('run', 'config_lib'),
    ('weights',),
    ('eval', 'serving'),
    ('train',),
    ('analysis', 'lra'),
    ('main', 'convert', 'features', 'plan', 'export'),
)
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
OUTSIDE = ('configs', 'benchmarks', 'tests')  # folders of the repository, not of the package


def _modules():
  """{dotted name: path} of every module of the package."""
  out = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    out['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
  return out


MODULES = _modules()


def _imports(path):
  """Dotted names of the modules `path` imports (a name imported from a package resolves to
  its submodule when one exists, else to the package)."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      for a in node.names:
        sub = f'{node.module}.{a.name}'
        out.add(sub if sub in MODULES else node.module)
  return out


def _unit(module):
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else None


def test_every_unit_has_a_layer():
  units = {_unit(m) for m in MODULES} - {None}
  assert units == set(RANK), f'undeclared: {units - set(RANK)}, gone: {set(RANK) - units}'


def test_imports_point_down_the_layers():
  wrong = []
  for module, path in MODULES.items():
    if module == 'mformer_jax':
      continue  # its public names load lazily (__getattr__), from any layer
    for target in _imports(path):
      if target.split('.')[0] in OUTSIDE:
        wrong.append(f'{module} -> {target} (outside the package)')
      if target.split('.')[0] != 'mformer_jax' or target == 'mformer_jax':
        continue
      a, b = _unit(module), _unit(target)
      if a != b and RANK[b] >= RANK[a]:
        wrong.append(f'{module} -> {target} ({a} is layer {RANK[a]}, {b} layer {RANK[b]})')
  assert not wrong, '\n'.join(sorted(wrong))


def test_no_import_cycle():
  graph = {m: {t for t in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
  # A package's __init__ importing its own submodules is how packages export; the edge back
  # (a submodule importing a sibling through the package) would be the cycle, so keep it.
  index, low, stack, on, cycles = {}, {}, [], set(), []

  def visit(v):  # Tarjan's strongly connected components
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        cycles.append(sorted(comp))

  for v in graph:
    if v not in index:
      visit(v)
  assert not cycles, cycles


@pytest.mark.parametrize('source, message', [
    ('from mformer_jax.train import loop\n', 'mformer_jax.weights.x -> mformer_jax.train.loop'),
    ('def f():\n  import configs.demo\n', 'mformer_jax.weights.x -> configs.demo (outside'),
])
def test_the_check_catches_an_upward_import(tmp_path, monkeypatch, source, message):
  path = tmp_path / 'x.py'
  path.write_text(source)
  monkeypatch.setitem(MODULES, 'mformer_jax.weights.x', path)
  with pytest.raises(AssertionError, match=message.replace('(', r'\(')):
    test_imports_point_down_the_layers()

"""The README and docs/ as written: the README's Python block runs and every `mf.` name it
mentions exists; docs/architecture.md's layer table is tests/test_layers.py's LAYERS; every
relative link in README.md and docs/*.md points at a file that exists, and every repository path
and `python -m` module they name exists."""
import pathlib
import re
import runpy
import urllib.parse

import pytest

import mformer_jax as mf
import release_fixtures
import test_layers
from release_fixtures import releases  # pylint: disable=unused-import

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]


def _python_blocks():
  blocks = re.findall(r'```python\n(.*?)```', (ROOT / 'README.md').read_text(), re.S)
  assert len(blocks) == 2, 'README has two python blocks: the API, then released models + NNX'
  return blocks


def _python_block():
  return _python_blocks()[0]


def test_readme_python_block_runs(tmp_path, monkeypatch, capsys):
  """Runs as a user would, from the repository root (its path is the goldens' tiny model)."""
  script = tmp_path / 'example.py'
  script.write_text(_python_block())
  monkeypatch.chdir(ROOT)
  runpy.run_path(str(script))
  assert capsys.readouterr().out.strip() == '(1, 5) (1, 65, 64)'


def test_readme_released_and_nnx_block_runs(releases, tmp_path, monkeypatch, capsys):  # pylint: disable=redefined-outer-name
  """The second block as written, after the first (its imports), with the loopback server
  serving a tiny K400-headed .pyth under the released name (no network); then the NNX module
  gives the linen model's logits."""
  release_fixtures.official_pyth(tmp_path / 'k400.pyth')
  releases.files['k400_motionformer_224_16x4'] = (tmp_path / 'k400.pyth').read_bytes()
  first, second = _python_blocks()
  script = tmp_path / 'example.py'
  script.write_text(first + second + 'print(float(jnp.abs(m(clip, train=False) - '
                    'model.apply(variables, clip, train=False)).max()))\n')
  monkeypatch.chdir(ROOT)
  runpy.run_path(str(script))
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[:2] == ['(1, 5) (1, 65, 64)', "['abseiling', 'air drumming', 'answering questions']"]
  assert float(lines[2]) < 1e-5


def test_readme_mf_names_exist():
  """Names the README only mentions (in comments and bullets) are public names too."""
  names = set(re.findall(r'\bmf\.(\w+)', (ROOT / 'README.md').read_text()))
  assert {'Motionformer', 'ModelConfig', 'load', 'load_official', 'export_official',
          'init_from_imagenet', 'TrajectoryAttention'} <= names
  missing = sorted(n for n in names if not hasattr(mf, n))
  assert not missing, f'README names mf.{missing}, which mformer_jax does not export'


def _layer_table():
  """[(unit, ...), ...] of docs/architecture.md's table under '## Layers', bottom first."""
  text = (ROOT / 'docs' / 'architecture.md').read_text()
  section = re.search(r'^## Layers\n(.*?)(?=^## )', text, re.S | re.M).group(1)
  rows = [line.split('|') for line in section.splitlines() if re.match(r'\| \d+ \|', line)]
  return [(int(r[1]), tuple(re.findall(r'`(\w+)`', r[2]))) for r in rows]


def test_architecture_doc_lists_the_layers():
  table = _layer_table()
  assert [i for i, _ in table] == list(range(len(table)))
  assert tuple(units for _, units in table) == test_layers.LAYERS


@pytest.mark.parametrize('unit', sorted(test_layers.RANK))
def test_every_unit_exists(unit):
  package = ROOT / 'mformer_jax'
  assert (package / unit / '__init__.py').is_file() or (package / f'{unit}.py').is_file(), unit


def _links(path):
  """Relative link targets of a markdown file (no scheme, no pure anchors), without anchors."""
  text = re.sub(r'```.*?```', '', path.read_text(), flags=re.S)  # code is not links
  for target in re.findall(r'\]\(([^)\s]+)\)', text):
    if urllib.parse.urlparse(target).scheme or target.startswith('#'):
      continue
    yield urllib.parse.unquote(target.split('#')[0])


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_exist(doc):
  broken = [t for t in _links(doc) if not (doc.parent / t).exists()]
  assert not broken, f'{doc.relative_to(ROOT)} links to missing files: {broken}'


def test_the_link_check_catches_a_broken_link(tmp_path):
  doc = tmp_path / 'x.md'
  doc.write_text('[ok](x.md) [web](https://example.com/a) [anchor](#a) [gone](docs/nope.md#b)\n'
                 '```\n[in code](not/a/link.md)\n```\n')
  assert list(_links(doc)) == ['x.md', 'docs/nope.md']


# Paths of the repository as the docs write them in prose and commands (placeholders such as
# `<study>` or `PREP` do not match).
_PATH = re.compile(r'(?<![\w/.-])((?:mformer_jax|configs|launch|tests|benchmarks|notebooks|paper|'
                   r'docs)/[\w/.-]*\w\.(?:py|sh|md|ipynb|json|txt|csv|png))\b')
_MODULE = re.compile(r'python -m ((?:mformer_jax|benchmarks)(?:\.\w+)*)(?![\w.<])')


def _missing(text):
  """The repository paths and `python -m` modules `text` names that do not exist."""
  missing = [p for p in _PATH.findall(text) if not (ROOT / p).exists()]
  for module in _MODULE.findall(text):
    base = ROOT.joinpath(*module.split('.'))
    if not (base.with_suffix('.py').is_file() or (base / '__main__.py').is_file()):
      missing.append(f'python -m {module}')
  return missing


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_paths_and_commands_exist(doc):
  """Every repository path and `python -m` module a page names, in prose or in a command."""
  missing = _missing(doc.read_text())
  assert not missing, f'{doc.relative_to(ROOT)} names what does not exist: {missing}'


def test_the_path_check_catches_a_missing_path():
  text = ('`mformer_jax/data/gone.py`, configs/demo.py:ARG, benchmarks/results/<class>/x.json, '
          'python -m mformer_jax.main, python -m mformer_jax.train.gone, '
          'python -m mformer_jax.analysis.<study>')
  assert _missing(text) == ['mformer_jax/data/gone.py', 'python -m mformer_jax.train.gone']

"""The README as written: its Python example runs, its Layout section is the tree."""
import os
import re
import runpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_example(tmp_path, monkeypatch, capsys):
  readme = open(os.path.join(ROOT, 'README.md')).read()
  blocks = re.findall(r'```python\n(.*?)```', readme, re.S)
  assert blocks, 'README has no python example'
  script = tmp_path / 'example.py'
  script.write_text(blocks[0])
  monkeypatch.chdir(ROOT)
  runpy.run_path(str(script))
  assert capsys.readouterr().out.strip() == '(1, 5) trajectory original'


def test_layout_lists_every_module_and_folder():
  """The README's Layout section names every module of the package (by file name, under its
  folder) and every top-level folder."""
  readme = open(os.path.join(ROOT, 'README.md')).read()
  layout = re.search(r'## Layout\n\n```\n(.*?)```', readme, re.S).group(1)
  listed = set(re.findall(r'[\w.*-]+/?', layout))
  package = os.path.join(ROOT, 'mformer_jax')
  for folder, _, files in os.walk(package):
    if '__pycache__' in folder:
      continue
    if folder != package:
      assert os.path.basename(folder) + '/' in listed, folder
    for f in files:
      if f.endswith('.py') and f != '__init__.py':
        assert f in listed, os.path.join(folder, f)
  for entry in os.listdir(ROOT):
    if os.path.isdir(os.path.join(ROOT, entry)) and not entry.startswith('.') and not (
        entry.endswith('.egg-info') or entry in ('workdirs', 'build', '__pycache__')):
      assert entry + '/' in listed, entry

"""The README's Python example runs as written (from the repository root)."""
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

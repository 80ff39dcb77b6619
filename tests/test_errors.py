"""Expected failures (UserError) are one line and exit status 2 at every entry point; anything
else, a ValueError from inside a computation say, keeps its traceback."""
import ast
import importlib
import json
import pathlib

import numpy as np
import pytest

import mformer_jax
from mformer_jax import errors

# Every class of expected bad input in the package, by module: the kinds of bad input, and the
# two that code tells apart by type (a corrupt step falls back, a mismatch does not). A new kind
# belongs here only if some code catches it by type.
EXPECTED = {
    'mformer_jax.errors': ['CheckpointMismatchError', 'ConfigError', 'CorruptCheckpointError',
                           'InputError', 'MissingInputError', 'UserError'],
}


def _user_error_classes() -> dict:
  """{module: sorted class names} of every class in the package's source deriving from UserError
  (read with `ast`, nothing imported): a base is known by its name."""
  package = pathlib.Path(mformer_jax.__file__).parent
  trees = {}
  for path in sorted(package.rglob('*.py')):
    parts = path.relative_to(package.parent).with_suffix('').parts
    trees['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = ast.parse(path.read_text())
  base = lambda b: b.attr if isinstance(b, ast.Attribute) else getattr(b, 'id', None)
  known, found, grew = {'UserError'}, {'mformer_jax.errors': ['UserError']}, True
  while grew:  # until no class derives from a newly found one
    grew = False
    for module, tree in trees.items():
      for node in ast.walk(tree):
        if (isinstance(node, ast.ClassDef) and node.name not in known
            and any(base(b) in known for b in node.bases)):
          known.add(node.name)
          found.setdefault(module, []).append(node.name)
          grew = True
  return {m: sorted(names) for m, names in found.items()}


def test_the_expected_failures_are_these_classes():
  assert _user_error_classes() == EXPECTED


@pytest.mark.parametrize('module', sorted(EXPECTED))
def test_every_expected_failure_is_a_user_error(module):
  m = importlib.import_module(module)
  for name in EXPECTED[module]:
    assert issubclass(getattr(m, name), errors.UserError), f'{module}.{name}'


def test_a_resume_with_another_block_layout_is_a_config_error(tmp_path):
  """A trainer resuming a workdir written with other model.scan_blocks / train.fused_update
  settings: one line saying which, before anything is restored."""
  import train_fixtures as tfx  # pylint: disable=g-import-not-at-top
  from mformer_jax import train  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import make_model  # pylint: disable=g-import-not-at-top
  from mformer_jax.run import checkpoints  # pylint: disable=g-import-not-at-top
  config = tfx.config()
  with checkpoints.manager(str(tmp_path), config.checkpoint) as mngr:
    checkpoints.save(mngr, {'params': {'w': np.zeros(2, np.float32)}, 'step': np.int32(3)},
                     {'step': 3, 'model': {'scan_blocks': True}, 'fused_update': False})
    checkpoints.finish(mngr)
    with pytest.raises(errors.ConfigError, match=f'^{mngr.directory} was written with '
                       r'model.scan_blocks=True and train.fused_update=False; resume it with '
                       'the same settings'):
      train.restore_or_create_state(config, make_model(config.model), None, mngr, None)


def test_report_is_one_prefixed_line_and_status_2(capsys):
  e = errors.ConfigError('first\n  second')
  assert errors.report(e, prog='tool', one_line=True) == 2
  assert capsys.readouterr().err == 'tool: error: first; second\n'
  with pytest.raises(SystemExit) as info:
    errors.exit_with(e)
  assert info.value.code == 2 and capsys.readouterr().err == 'error: first\n  second\n'


def _davis_args(tmp_path):
  from mformer_jax.analysis import davis  # pylint: disable=g-import-not-at-top
  assert davis.main(['--davis_root', str(tmp_path / 'root'), '--write_synthetic', '1',
                     '--synthetic_frames', '3', '--synthetic_size', '32']) == 0
  return davis, ['--davis_root', str(tmp_path / 'root'), '--features=oracle',
                 '--out', str(tmp_path / 'out')]


def test_a_bug_inside_a_command_keeps_its_traceback(tmp_path, monkeypatch, capsys):
  davis, args = _davis_args(tmp_path)
  capsys.readouterr()

  def shape_bug(*_, **__):
    raise ValueError('Incompatible shapes for broadcasting: (2, 3) and (4,)')  # as jnp raises

  monkeypatch.setattr(davis, 'run', shape_bug)
  with pytest.raises(ValueError, match='Incompatible shapes'):
    davis.main(args)
  assert capsys.readouterr().err == ''


def test_a_user_error_inside_a_command_is_one_line(tmp_path, monkeypatch, capsys):
  davis, args = _davis_args(tmp_path)
  capsys.readouterr()

  def bad_input(*_, **__):
    raise errors.InputError('frames.jpg is not an image\n(re-extract the frames)')

  monkeypatch.setattr(davis, 'run', bad_input)
  assert davis.main(args) == 2
  assert capsys.readouterr().err == (
      'davis: error: frames.jpg is not an image; (re-extract the frames)\n')


def test_class_deltas_unparsable_report_is_one_line(tmp_path, capsys):
  from mformer_jax.analysis import class_deltas  # pylint: disable=g-import-not-at-top
  (tmp_path / 'a.json').write_text('{"per_class": ')
  (tmp_path / 'b.json').write_text(json.dumps({'per_class': {}}))
  with pytest.raises(SystemExit) as info:
    class_deltas.main([str(tmp_path / 'a.json'), str(tmp_path / 'b.json')])
  err = capsys.readouterr().err
  assert info.value.code == 2 and len(err.splitlines()) == 1
  assert err.startswith(f'error: {tmp_path / "a.json"}: cannot be read as an evaluation report')


def test_prepare_missing_annotations_is_one_line(tmp_path, capsys):
  from mformer_jax.data import prepare  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit) as info:
    prepare.main(['ssv2', '--out', str(tmp_path / 'out'), '--split', 'train',
                  '--videos', str(tmp_path), '--annotations', str(tmp_path / 'none')])
  err = capsys.readouterr().err
  assert info.value.code == 2 and len(err.splitlines()) == 1
  assert err.startswith('error: not a ssv2 layout: FileNotFoundError: ')
  assert 'something-something-v2-labels.json' in err


def test_model_config_value_errors_are_config_errors():
  from mformer_jax.model import ModelConfig  # pylint: disable=g-import-not-at-top
  with pytest.raises(errors.ConfigError, match='not a multiple of tubelet_size'):
    ModelConfig(num_frames=3, tubelet_size=2)
  with pytest.raises(errors.ConfigError, match='unknown model config keys'):
    ModelConfig.from_config({'num_frame': 8})

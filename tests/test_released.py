"""Released models by name (weights/released.py) against a loopback server, never the network:
the first load downloads, the second reads the cache without a request, a partial file resumes,
a corrupt one is refused and removed, no network is one line saying what to fetch where."""
import hashlib
import json
import os

import jax
import numpy as np
import pytest

import release_fixtures
from configs import released as released_configs
from mformer_jax import convert, errors, weights
from mformer_jax.model import ModelConfig
from mformer_jax.run import checkpoints
from mformer_jax.weights import released
from release_fixtures import releases  # pylint: disable=unused-import

NAME = 'k400_motionformer_224_16x4'


@pytest.fixture
def served(releases, tmp_path):  # pylint: disable=redefined-outer-name
  """(server, the served file's bytes, its ModelConfig and params) for NAME."""
  path = tmp_path / 'served.pyth'
  cfg, params = release_fixtures.official_pyth(path)
  releases.files[NAME] = path.read_bytes()
  return releases, releases.files[NAME], cfg, params


def _cached():
  return released.cache_dir() / f'{NAME}.pyth'


def _assert_params(variables, want):
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(variables['params']), want)


def test_first_load_downloads_the_second_reads_the_cache(served):
  server, data, cfg, params = served
  model, variables = weights.load_official(NAME)
  assert model.cfg == cfg
  _assert_params(variables, params)
  assert server.requests == [(f'/motionformer/{NAME}.pyth', None)]
  assert _cached().read_bytes() == data and not _cached().with_suffix('.pyth.part').exists()
  record = json.loads((released.cache_dir() / 'verified.json').read_text())
  assert record == {NAME: {'size': len(data), 'sha256': hashlib.sha256(data).hexdigest()}}

  model, variables = weights.load_official(f'{NAME}.pyth')  # the file name works too
  assert len(server.requests) == 1                           # no request: the cache answered
  _assert_params(variables, params)
  # --config.init.checkpoint=NAME: load with the config's own ModelConfig.
  assert weights.load(NAME, cfg)[0] == cfg and len(server.requests) == 1


def test_a_partial_file_resumes_with_a_range_request(served):
  server, data, _, params = served
  _cached().parent.mkdir(parents=True)
  _cached().with_suffix('.pyth.part').write_bytes(data[:1000])
  _assert_params(weights.load_official(NAME)[1], params)
  assert server.requests == [(f'/motionformer/{NAME}.pyth', 'bytes=1000-')]
  assert _cached().read_bytes() == data


def test_an_interrupted_download_says_so_and_the_next_run_resumes(served):
  server, data, _, params = served
  server.cut = 5000
  with pytest.raises(errors.MissingInputError) as e:
    weights.load_official(NAME)
  message = str(e.value)
  assert f'stopped at 5000 of {len(data)} bytes, run again to resume' in message
  assert '\n' not in message and not _cached().exists()
  assert _cached().with_suffix('.pyth.part').stat().st_size == 5000
  _assert_params(weights.load_official(NAME)[1], params)
  assert server.requests[-1] == (f'/motionformer/{NAME}.pyth', 'bytes=5000-')
  assert _cached().read_bytes() == data


def test_a_complete_part_file_is_kept(served):
  """A .part that is already the whole file (a run stopped before the rename): the server
  answers 416 with the size, and the part becomes the file without a download."""
  server, data, _, params = served
  _cached().parent.mkdir(parents=True)
  _cached().with_suffix('.pyth.part').write_bytes(data)
  _assert_params(weights.load_official(NAME)[1], params)
  assert server.requests == [(f'/motionformer/{NAME}.pyth', f'bytes={len(data)}-')]


def test_a_corrupt_file_is_refused_and_removed(served):
  server, data, _, params = served
  weights.load_official(NAME)
  # The same size, other bytes: the recorded sha256 catches it; file and record go.
  _cached().write_bytes(data[:-4] + b'XXXX')
  with pytest.raises(errors.InputError, match='sha256 differs.*removed it'):
    weights.load_official(NAME)
  assert not _cached().exists()
  assert NAME not in json.loads((released.cache_dir() / 'verified.json').read_text())
  _assert_params(weights.load_official(NAME)[1], params)  # downloaded anew
  assert len(server.requests) == 2
  # Shorter than recorded.
  _cached().write_bytes(data[:100])
  with pytest.raises(errors.InputError, match=f'100 bytes, not the {len(data)}'):
    weights.load_official(NAME)
  assert not _cached().exists()


def test_a_download_that_is_no_checkpoint_is_removed(served):
  """No record yet (first load): a file the reader cannot read is removed, in one line."""
  server, _, _, _ = served
  server.files[NAME] = b'<html>a captive portal</html>'
  with pytest.raises(errors.InputError, match='cannot be read.*removed it') as e:
    weights.load_official(NAME)
  assert '\n' not in str(e.value) and not _cached().exists()


def test_no_network_is_one_line_and_a_local_path_still_works(served, tmp_path, capsys):
  server, data, _, params = served
  server.stop()
  with pytest.raises(errors.MissingInputError) as e:
    weights.load_official(NAME)
  assert errors.report(e.value) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1, err
  assert f'fetch {server.url}/{NAME}.pyth yourself and put it at {_cached()}' in err
  (tmp_path / 'mine.pyth').write_bytes(data)
  _assert_params(weights.load_official(str(tmp_path / 'mine.pyth'))[1], params)
  # Put where the line says, the file is read (and recorded) with no network.
  _cached().write_bytes(data)
  _assert_params(weights.load_official(NAME)[1], params)
  assert NAME in json.loads((released.cache_dir() / 'verified.json').read_text())


def test_unknown_names_and_http_errors(releases, capsys):  # pylint: disable=redefined-outer-name
  with pytest.raises(errors.MissingInputError, match='neither a file nor a released model; '
                     'the released names: k400_joint_224_16x4, '):
    weights.load_official('k400_motionformer_224_16x5')
  with pytest.raises(errors.MissingInputError, match='HTTP 404'):  # the mirror lacks it
    weights.load_official('ssv2_joint_224_16x4')
  assert not os.path.exists(released.cache_dir() / 'ssv2_joint_224_16x4.pyth')


def test_cache_folder(monkeypatch, tmp_path):
  monkeypatch.setenv('MFORMER_CACHE', str(tmp_path / 'c'))
  assert released.cache_dir() == tmp_path / 'c'
  monkeypatch.delenv('MFORMER_CACHE')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  if os.name == 'posix' and os.uname().sysname == 'Linux':
    assert released.cache_dir() == tmp_path / 'xdg' / 'mformer_jax'
  monkeypatch.delenv('MFORMER_RELEASES_URL', raising=False)
  assert released.url(NAME) == f'https://dl.fbaipublicfiles.com/motionformer/{NAME}.pyth'


def test_the_sixteen_names_and_their_configs():
  """The official README's 16 files; each has its released config (configs/released.py), whose
  heads the dataset of the name decides."""
  assert len(set(released.NAMES)) == 16
  assert {n.split('_')[0] for n in released.NAMES} == set(released.DATASETS)
  for name in released.NAMES:
    # The K600-HR file is named 16x8, but its official config (K600/motionformer_336_16x4.yaml)
    # samples every 4th frame: the file's own cfg decides when it is loaded.
    config = released_configs.get_config(name.replace('k600_motionformer_336_16x8',
                                                      'k600_motionformer_336_16x4'))
    assert config.data.name == released.dataset(name)
    assert ModelConfig.from_config(config.model).heads == (
        {'verb': 97, 'noun': 300} if name.startswith('ek') else
        {'label': {'k400': 400, 'k600': 600, 'ssv2': 174}[name.split('_')[0]]})


def test_convert_takes_a_released_name(served, tmp_path, capsys):
  server, _, cfg, params = served
  out = tmp_path / 'converted'
  assert convert.main(['--input', NAME, '--output', str(out)]) == 0
  assert f'converted {NAME}: trajectory attention' in capsys.readouterr().out
  with checkpoints.manager(str(out), read_only=True) as mngr:
    assert checkpoints.read_meta(mngr, 0)['converted_from'] == NAME
  got_cfg, got = weights.load(str(out))
  assert got_cfg == cfg and len(server.requests) == 1
  jax.tree.map(np.testing.assert_array_equal, got, params)

"""Class names of the released models (weights/labels.py, weights/label_maps/): each shipped list
against its released head and a few known names; the names a released or converted model
carries; which names predict and the evaluator use."""
import dataclasses
import fnmatch
import json
import pathlib
import re
import tomllib

import numpy as np
import pytest

import mformer_jax as mf
import real_footage
import release_fixtures
from configs import released as released_configs
from mformer_jax import config_lib, convert
from mformer_jax.data.config import data_config
from mformer_jax.errors import MissingInputError
from mformer_jax.model import ModelConfig, Motionformer
from mformer_jax.run import checkpoints
from mformer_jax.weights import labels, released
from release_fixtures import releases  # pylint: disable=unused-import

ROOT = pathlib.Path(__file__).resolve().parent.parent
KNOWN = {  # (dataset, head): {index: name}, read off the datasets' annotation files
    ('kinetics400', 'label'): {0: 'abseiling', 1: 'air drumming', 399: 'zumba'},
    ('kinetics600', 'label'): {0: 'abseiling', 1: 'acting in play', 599: 'zumba'},
    ('ssv2', 'label'): {0: 'Approaching something with your camera',
                        173: 'Wiping something off of something'},
    ('epic_kitchens', 'verb'): {0: 'take', 1: 'put', 2: 'wash', 3: 'open'},
    ('epic_kitchens', 'noun'): {0: 'tap', 1: 'spoon'},
}


@pytest.mark.parametrize('name', ['k400_motionformer_224_16x4', 'k600_motionformer_224_16x4',
                                  'ssv2_motionformer_224_16x4', 'ek_motionformer_224_16x4'])
def test_each_list_fits_its_released_head(name):
  dataset = released.dataset(name)
  names = labels.label_map(dataset)
  heads = ModelConfig.from_config(released_configs.get_config(name).model).heads
  assert {h: len(n) for h, n in names.items()} == heads
  for head, n in names.items():
    assert len(set(n)) == len(n) and all(x.strip() == x and x for x in n)
    assert {i: n[i] for i in KNOWN[dataset, head]} == KNOWN[dataset, head]
  assert labels.fitting(names, heads) == names


def test_every_list_names_its_source_and_ships_with_the_package():
  patterns = tomllib.loads((ROOT / 'pyproject.toml').read_text())['tool']['setuptools'][
      'package-data']['mformer_jax.weights']
  for file in sorted(labels.FOLDER.iterdir()):
    assert any(fnmatch.fnmatch(f'label_maps/{file.name}', p) for p in patterns), file
    if file.suffix == '.txt':
      assert re.match(r'# .*(Source: github\.com/|something-something-v2-labels\.json)',
                      file.read_text()), file
      assert f'`{file.name}`' in (labels.FOLDER / 'README.md').read_text()


def _prepared(tmp_path, names):
  """A prepared dataset's train.json (what class_names reads) with `names`."""
  (tmp_path / 'train.json').write_text(json.dumps(
      {'num_examples': 0, 'skipped': [], 'shards': [], 'class_names': names}))
  return str(tmp_path)


def test_which_names_a_model_gets(tmp_path):
  k400 = labels.label_map('kinetics400')
  heads = {'label': 400}
  data = data_config('kinetics400', num_frames=4, sampling_rate=2, crop_size=32)
  assert labels.class_names(data, heads) == k400       # no data: the shipped list
  numbered = data.copy_and_resolve_references()
  numbered.data_dir = _prepared(tmp_path, [str(i) for i in range(400)])
  assert labels.class_names(numbered, heads) == k400   # a path-label list only numbers them
  own = data.copy_and_resolve_references()
  (tmp_path / 'own').mkdir()
  own.data_dir = _prepared(tmp_path / 'own', ['cat', 'dog'])
  assert labels.class_names(own, heads) == {'label': ['cat', 'dog']}  # real names stay
  # A released name (or a file named like one) as the checkpoint; sizes must fit.
  assert labels.class_names(numbered, heads, ('', 'k400_motionformer_224_16x4.pyth')) == k400
  assert labels.of_source('/x/ssv2_joint_224_16x4.pyth', heads) is None
  assert labels.is_placeholder(['verb_0', 'verb_1'], 'verb')
  # A dataset without a shipped list, not prepared: its own error (how to prepare it).
  data.name = 'my_videos'
  with pytest.raises(MissingInputError):
    labels.class_names(data, heads)


def test_released_and_converted_models_carry_their_names(releases, tmp_path, capsys):  # pylint: disable=redefined-outer-name
  for name, cfg in (('k400_motionformer_224_16x4', release_fixtures.yacs()),
                    ('ek_motionformer_224_16x4', release_fixtures.yacs('epickitchens'))):
    release_fixtures.official_pyth(tmp_path / f'{name}.pyth', cfg)
    releases.files[name] = (tmp_path / f'{name}.pyth').read_bytes()
    loaded = mf.load_official(name)
    assert loaded.class_names == labels.label_map(released.dataset(name))
    model, _ = loaded  # still unpacks as (model, variables)
    # The file by hand, named as released: the same names.
    assert mf.load_official(str(tmp_path / f'{name}.pyth')).class_names == loaded.class_names
  # Converted (the EK model: two heads), the workdir records them and gives them back.
  out = tmp_path / 'converted'
  assert convert.main(['--input', name, '--output', str(out)]) == 0
  with checkpoints.manager(str(out), read_only=True) as mngr:
    assert checkpoints.read_meta(mngr, 0)['class_names'] == loaded.class_names
  assert labels.of_source(str(out), model.cfg.heads) == loaded.class_names
  assert mf.load_official(str(ROOT / 'tests' / 'goldens' / 'model_trajectory_orig.npz')
                          ).class_names is None
  capsys.readouterr()


def test_evaluator_reports_with_the_shipped_names(tmp_path, monkeypatch):
  """A K400 split prepared from a `path label` list (classes '0'..'399'): the evaluator's
  per-class report and confusion matrix get the Kinetics names."""
  from mformer_jax.eval import evaluator  # pylint: disable=g-import-not-at-top
  from mformer_jax.run import sharding  # pylint: disable=g-import-not-at-top
  config = config_lib.make_config('kinetics400')
  for split in ('train', 'test'):
    (tmp_path / f'{split}.json').write_text(json.dumps(
        {'num_examples': 0, 'skipped': [], 'shards': [],
         'class_names': [str(i) for i in range(400)]}))
  config.data.data_dir = str(tmp_path)
  # No shards to open: the names are the subject here (test_eval runs the whole evaluation).
  monkeypatch.setattr(evaluator.pipeline, 'num_examples', lambda *_: 0)
  model_cfg = ModelConfig(num_frames=4, img_size=32, pretrain_img_size=32, patch_size=16,
                          embed_dim=8, depth=1, num_heads=2)
  ev = evaluator.Evaluator(config, Motionformer(model_cfg), sharding.make_mesh(),
                           str(tmp_path / 'work'))
  assert ev.names == labels.label_map('kinetics400')


@pytest.mark.slow
def test_predict_prints_names_on_a_real_clip(releases, tmp_path):  # pylint: disable=redefined-outer-name
  """`--config.init.checkpoint=<released name>` with a Kinetics config and no dataset: predict's
  top-k and the labels drawn on the video are Kinetics names."""
  from mformer_jax.eval import overlay, predict  # pylint: disable=g-import-not-at-top
  name = 'k400_motionformer_224_16x4'
  cfg, _ = release_fixtures.official_pyth(tmp_path / 'k400.pyth')
  releases.files[name] = (tmp_path / 'k400.pyth').read_bytes()
  config = config_lib.make_config('kinetics400')
  config.model.update(dataclasses.asdict(cfg))
  config.data.update(num_frames=cfg.num_frames, sampling_rate=2, crop_size=cfg.img_size,
                     test_num_clips=1, test_num_crops=1)
  config.init.checkpoint = name
  config.video = real_footage.clip('carphone_pristine.mp4')
  config.predict_output = str(tmp_path / 'labelled.gif')
  shown = []
  top = predict.predict(config, str(tmp_path / 'work'), report=shown.append)
  k400 = labels.label_map('kinetics400')['label']
  assert shown == [top] and len(top['label']) == 5
  assert all(n in k400 for n, _ in top['label'])
  assert overlay.label_lines(top)[0] == f'{top["label"][0][1]:.2f}  {top["label"][0][0]}'
  assert (tmp_path / 'labelled.gif').stat().st_size > 0
  # features' output: the same view ensemble, with the names beside the scores.
  from mformer_jax.eval import features  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / 'f.npz')
  assert features.extract(config, str(tmp_path / 'work'), [config.video], out) == (1, {})
  with np.load(out) as z:
    assert list(z['class_names']) == k400 and z['scores'].shape == (1, 400)
    best = int(z['scores'][0].argmax())
    assert (z['class_names'][best], z['scores'][0, best]) == pytest.approx(top['label'][0])

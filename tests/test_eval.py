"""Evaluation: view ensemble (sum of softmax), exact per-video counting, metrics and reports."""
import csv
import json

import jax
import numpy as np
import pytest

import train_fixtures as tfx
from mformer_jax.eval import evaluator, features, metrics, predict
from mformer_jax.run import checkpoints, sharding
from mformer_jax.data import pipeline
from mformer_jax.model import init_variables, make_model


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_ensemble_sums_view_softmaxes_across_batches_and_padding():
  rng = np.random.default_rng(0)
  videos, views, classes = 5, 3, 4
  logits = rng.normal(size=(videos, views, classes))
  labels = np.array([0, 1, 2, 3, 0])
  # 15 views in batches of 4: videos straddle batches, the last batch has one padding row.
  rows = [(v, i) for v in range(videos) for i in range(views)] + [(-1, 0)]
  ens = metrics.Ensemble(videos, views)
  for start in range(0, len(rows), 4):
    chunk = rows[start:start + 4]
    idx = np.array([v for v, _ in chunk])
    probs = np.stack([_softmax(logits[v, i]) if v >= 0 else np.full(classes, 9.0)
                      for v, i in chunk])
    ens.add({'label': probs}, {'mask': idx >= 0, 'video_index': idx,
                               'label': np.where(idx >= 0, labels[idx], -1)})
  np.testing.assert_allclose(ens.scores['label'], _softmax(logits).sum(1), rtol=1e-12)
  results, per_head = ens.metrics({'label': list('abcd')})
  expected = (_softmax(logits).sum(1).argmax(1) == labels).mean()
  assert results['top1'] == pytest.approx(expected)
  assert results['num_videos'] == 5 and per_head['label']['confusion'].sum() == 5


@pytest.mark.parametrize('num_videos,index', [(2, [0, 1, 1]), (3, [0, 1])])  # doubled / lost
def test_ensemble_refuses_wrong_view_counts(num_videos, index):
  ens = metrics.Ensemble(num_videos, 1)
  index = np.array(index)
  ens.add({'label': np.full((len(index), 3), 1 / 3)},
          {'mask': np.ones(len(index), bool), 'video_index': index, 'label': index})
  with pytest.raises(RuntimeError, match='evaluation is broken'):
    ens.metrics({'label': list('abc')})


def test_epic_kitchens_action_needs_verb_and_noun():
  ens = metrics.Ensemble(3, 1)
  verb = np.eye(3)[[0, 1, 2]]  # predicts 0, 1, 2
  noun = np.eye(3)[[0, 0, 0]]  # predicts 0
  ens.add({'verb': verb, 'noun': noun}, {'mask': np.ones(3, bool), 'video_index': np.arange(3),
                                         'verb': np.array([0, 1, 0]), 'noun': np.array([0, 1, 0])})
  results, _ = ens.metrics({'verb': list('abc'), 'noun': list('xyz')})
  assert results['verb_top1'] == pytest.approx(2 / 3)
  assert results['noun_top1'] == pytest.approx(2 / 3)
  assert results['action_top1'] == pytest.approx(1 / 3)  # only video 0 has both right
  assert results['action_top5'] == 1.0


def test_per_class_accuracy_and_confusion():
  scores = np.eye(3)[[0, 0, 1, 2, 2]]
  m = metrics.head_metrics(scores, np.array([0, 1, 1, 2, 0]), ['a', 'b', 'c'])
  np.testing.assert_array_equal(m['confusion'], [[1, 0, 1], [1, 1, 0], [0, 0, 1]])
  assert m['per_class']['a'] == {'accuracy': 0.5, 'videos': 2}
  assert m['mean_class_accuracy'] == pytest.approx((0.5 + 0.5 + 1) / 3)


def test_evaluator_counts_every_video_once_and_writes_reports(tmp_path):
  cfg = tfx.config()  # 13 test videos in global batches of 8: the last batch is padded
  mesh = sharding.make_mesh()
  model = make_model(cfg.model)
  params = init_variables(model, jax.random.key(0))['params']
  results = evaluator.Evaluator(cfg, model, mesh, str(tmp_path)).run(params, tag='t')
  assert results['num_videos'] == 13 and results['num_unreadable'] == 0
  out = tmp_path / 'eval' / 't'
  with open(out / 'confusion_matrix.csv') as f:
    rows = list(csv.reader(f))
  assert rows[0][1:] == pipeline.class_names(cfg.data)['label']
  assert sum(int(v) for row in rows[1:] for v in row[1:]) == 13
  report = json.loads((out / 'metrics.json').read_text())
  assert report['top1'] == results['top1']
  assert len(report['per_class']['label']) == cfg.model.num_classes
  assert (out / 'confusion_matrix.png').stat().st_size > 1000


@pytest.mark.slow  # end to end: two checkpoint restores, four compiles
def test_orthoformer_eval_predict_and_features_agree_on_a_clip(tmp_path, monkeypatch):
  """The Orthoformer draws landmarks even at test time. A clip gets the same ones in the
  evaluator's step (among other clips, anywhere in its batch), in predict and in features (the
  clip's views alone): the same probabilities, and features that give them."""
  config = tfx.config(**{'model.approx': 'orthoformer', 'model.num_landmarks': 8,
                         'model.depth': 2, 'init.checkpoint': str(tmp_path / 'weights')})
  model = make_model(config.model)
  # Depth 2: the cls token, which the head reads, sees the landmarks from the second block on.
  # Weights at a trained model's scale (init's are too small for sharp attention).
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: rng.normal(0, 0.4, x.shape).astype(np.float32),
                        jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))['params'])
  checkpoints.save_params(str(tmp_path / 'weights'), params, model.cfg)
  shape = (config.data.num_frames, config.data.crop_size, config.data.crop_size, 3)
  views = rng.normal(size=(2, *shape)).astype(np.float32)  # one video's two test views
  others = rng.normal(size=(5, *shape)).astype(np.float32)
  monkeypatch.setattr(pipeline, 'load_video_views', lambda path, data_cfg: views)
  names = pipeline.class_names(config.data)['label']

  # The landmarks matter in this model: with other first landmarks, other probabilities.
  apply = jax.jit(lambda key: jax.nn.softmax(model.apply(
      {'params': params}, views, train=False, rngs={'landmarks': key})))
  assert np.abs(apply(jax.random.key(2)) - apply(jax.random.key(3))).max() > 1e-3

  batch = {'clip': np.concatenate([others[:3], views[:1], others[3:], views[1:]]),
           'video_index': np.arange(7, dtype=np.int32)}
  probs, _ = evaluator.eval_step(model, sharding.make_mesh())(params, batch)
  in_eval = np.asarray(probs['label'])[[3, 6]]

  config.video = 'clip.mp4'
  top = predict.predict(config, str(tmp_path / 'work'))['label']
  np.testing.assert_allclose([dict(top)[n] for n in names], in_eval.mean(0), rtol=1e-5)

  out = str(tmp_path / 'features.npz')
  features.extract(config, str(tmp_path / 'work'), ['clip.mp4'], out, per_view=True)
  with np.load(out) as z:
    logits = z['views'][0] @ params['head']['kernel'] + params['head']['bias']
  np.testing.assert_allclose(_softmax(logits), in_eval, rtol=1e-5)

"""Multi-view evaluation (official: sum of per-view softmax per video, then top-k) and predict.

Every host runs the model on its own views; the jitted forward returns its outputs replicated,
so every host accumulates the same per-video scores and host 0 writes
WORKDIR/eval/<tag>/{metrics.json, confusion_matrix[_verb|_noun].csv, ...png}.
Each video must receive exactly `views_per_video` views; unreadable videos are counted and
listed, never dropped silently.
"""
import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mformer_jax import checkpointing, sharding
from mformer_jax.data import pipeline
from mformer_jax.model import ModelConfig, Motionformer, init_variables


def make_model(config) -> Motionformer:
  return Motionformer(ModelConfig.from_config(config.model))


def init_params(model, key):
  return init_variables(model, key)['params']


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """(N,) bool: label among the k highest scores."""
  k = min(k, scores.shape[1])
  return (np.argsort(-scores, axis=1, kind='stable')[:, :k] == labels[:, None]).any(1)


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """counts[true, predicted]."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, pred), 1)
  return cm


def head_metrics(scores, labels, class_names):
  """top-1/top-5, mean per-class accuracy and the confusion matrix of one head."""
  cm = confusion_matrix(scores.argmax(1), labels, scores.shape[1])
  support = cm.sum(1)
  per_class = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
  return {
      'top1': float(topk_correct(scores, labels, 1).mean()),
      'top5': float(topk_correct(scores, labels, 5).mean()),
      'mean_class_accuracy': float(np.nanmean(per_class)) if support.any() else float('nan'),
      'per_class': {name: {'accuracy': None if np.isnan(a) else float(a), 'videos': int(n)}
                    for name, a, n in zip(class_names, per_class, support)},
      'confusion': cm,
  }


def write_confusion(directory, name: str, cm: np.ndarray, class_names) -> None:
  """CSV (rows = true class, columns = predicted) and a row-normalised PNG."""
  with (directory / f'{name}.csv').open('w') as f:
    w = csv.writer(f, lineterminator='\n')
    w.writerow(['true \\ predicted'] + list(class_names))
    for cls, row in zip(class_names, cm):
      w.writerow([cls] + row.tolist())
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n = len(class_names)
  size = min(4 + 0.35 * n, 30)
  fig, ax = plt.subplots(figsize=(size, size))
  norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
  im = ax.imshow(norm, cmap='Blues', vmin=0, vmax=1)
  if n <= 60:  # beyond that names are unreadable; the CSV has them
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(f'{name} (row-normalised)')
  fig.colorbar(im, ax=ax, fraction=0.046)
  fig.tight_layout()
  with (directory / f'{name}.png').open('wb') as f:
    fig.savefig(f, format='png', dpi=80)
  plt.close(fig)


def class_names(data_cfg) -> dict:
  """{head: names}: {'label': [...]} or Epic-Kitchens' {'verb': [...], 'noun': [...]}."""
  if data_cfg.name == 'epic_kitchens':
    return {h: pipeline.class_names(data_cfg, h) for h in ('verb', 'noun')}
  return {'label': pipeline.class_names(data_cfg)}


class Evaluator:
  """Runs the test split's view ensemble for given parameters; see module docstring."""

  def __init__(self, config, model, mesh, workdir: str):
    self.config, self.mesh, self.workdir = config, mesh, checkpointing.path(workdir)
    self.local_batch = sharding.local_batch_size(config.eval.batch_size, 'eval.batch_size')

    def forward(params, batch, index):
      # The Orthoformer draws a random first landmark even at test time (official); a fixed key
      # per batch keeps evaluation reproducible.
      out = model.apply({'params': params}, batch['clip'], train=False,
                        rngs={'landmarks': jax.random.fold_in(jax.random.key(0), index)})
      out = out if isinstance(out, dict) else {'label': out}
      probs = {k: jax.nn.softmax(v.astype(jnp.float32), -1) for k, v in out.items()}
      return probs, {k: v for k, v in batch.items() if k != 'clip'}

    # Replicated outputs: every host sees every row of the global batch.
    self._forward = jax.jit(forward, out_shardings=sharding.replicated(mesh))

  def run(self, params, *, tag: str, writer=None, step: int = 0) -> dict:
    cfg = self.config
    ds = pipeline.make_eval_dataset(
        cfg.data, local_batch_size=self.local_batch, split='test',
        process_index=jax.process_index(), process_count=jax.process_count())
    # ds.num_videos is this host's share; video_index is global.
    ensemble = Ensemble(pipeline.num_examples(cfg.data, 'test'), ds.views_per_video)
    for i, batch in enumerate(ds):
      ensemble.add(*jax.device_get(self._forward(params, sharding.global_batch(batch, self.mesh),
                                                 i)))
    names = class_names(cfg.data)
    results, per_head = ensemble.metrics(names)
    # Videos that could not be decoded were left out when the split was prepared; say so.
    skipped = [' '.join(map(str, s)) for s in ds.skipped]
    results['num_unreadable'] = len(skipped)
    if skipped:
      logging.warning('%d unreadable test videos are not in the evaluation: %s', len(skipped),
                      '; '.join(skipped[:10]) + (' ...' if len(skipped) > 10 else ''))
    logging.info('eval %s: %s', tag, {k: round(v, 4) if isinstance(v, float) else v
                                      for k, v in results.items()})
    if writer is not None:
      writer.write_scalars(step, {f'eval/{k}': v for k, v in results.items()})
    if jax.process_index() == 0:
      out = self.workdir / 'eval' / tag
      out.mkdir(parents=True, exist_ok=True)
      for h, m in per_head.items():
        write_confusion(out, 'confusion_matrix' + ('' if h == 'label' else f'_{h}'),
                        m['confusion'], names[h])
      report = {**results, 'unreadable': skipped,
                'per_class': {h: m['per_class'] for h, m in per_head.items()}}
      (out / 'metrics.json').write_text(json.dumps(report, indent=1))
      results['report_dir'] = str(out)
    return results


class Ensemble:
  """Per-video sums of view softmaxes. Views are counted, so a lost or doubled view is an error
  rather than a quietly wrong accuracy."""

  def __init__(self, num_videos: int, views_per_video: int):
    self.views_per_video = views_per_video
    self.views = np.zeros(num_videos, np.int64)
    self.scores, self.labels = {}, {}

  def add(self, probs: dict, info: dict) -> None:
    """probs {head: (B, C)}; info: 'mask' (False = padding), 'video_index', labels per head."""
    mask = np.asarray(info['mask'], bool)
    idx = info['video_index'][mask]
    np.add.at(self.views, idx, 1)
    for h, p in probs.items():
      if h not in self.scores:
        self.scores[h] = np.zeros((len(self.views), p.shape[1]), np.float64)
        self.labels[h] = np.full(len(self.views), -1, np.int64)
      np.add.at(self.scores[h], idx, p[mask])
      self.labels[h][idx] = info[h][mask]

  def metrics(self, names: dict):
    """(results, per-head metrics); EK adds action = verb and noun both right."""
    wrong = np.flatnonzero(self.views != self.views_per_video)
    if len(wrong):
      raise RuntimeError(f'evaluation is broken: {len(wrong)} of {len(self.views)} videos got '
                         f'a number of views other than {self.views_per_video} (e.g. video '
                         f'{wrong[0]}: {self.views[wrong[0]]})')
    results = {'num_videos': len(self.views), 'views_per_video': self.views_per_video}
    per_head = {}
    for h, s in self.scores.items():
      per_head[h] = head_metrics(s, self.labels[h], names[h])
      prefix = '' if h == 'label' else f'{h}_'
      for key in ('top1', 'top5', 'mean_class_accuracy'):
        results[prefix + key] = per_head[h][key]
    if 'verb' in self.scores:  # top-5 action: both within their own top 5 (official)
      for k in (1, 5):
        both = [topk_correct(self.scores[h], self.labels[h], k) for h in ('verb', 'noun')]
        results[f'action_top{k}'] = float((both[0] & both[1]).mean())
    return results, per_head


# ----------------------------------------------------------------------------------------------
# eval and predict modes
# ----------------------------------------------------------------------------------------------
def trained_params(config, workdir: str, model, mesh):
  """(params, tag): the workdir's checkpoint at eval.step (-1 = latest), or else the weights in
  init.checkpoint (an official .pyth/.npz, a converted folder or another workdir)."""
  key = jax.random.key(config.seed)
  abstract = jax.eval_shape(lambda: init_params(model, key))
  shardings = sharding.state_shardings(abstract, mesh, fsdp=config.mesh.fsdp,
                                       fsdp_min_size=config.mesh.fsdp_min_size)
  if (checkpointing.path(workdir) / 'checkpoints').is_dir():
    with checkpointing.manager(workdir, read_only=True) as mngr:
      step = mngr.latest_step() if config.eval.step < 0 else config.eval.step
      if step is not None:
        return checkpointing.restore_params(mngr, step, abstract, shardings), f'step_{step}'
  if not config.init.checkpoint:
    raise FileNotFoundError(f'nothing to evaluate: {workdir} has no checkpoint and '
                            'init.checkpoint is empty (train first, or pass '
                            '--config.init.checkpoint=MODEL.pyth)')
  fresh = jax.jit(lambda: init_params(model, key))()
  params = checkpointing.pretrained_params(config.init.checkpoint, fresh, model.cfg,
                                           reset_head=False)
  return jax.device_put(params, shardings), 'pretrained'


def evaluate_checkpoint(config, workdir: str) -> dict:
  mesh, model = sharding.make_mesh(), make_model(config)
  params, tag = trained_params(config, workdir, model, mesh)
  return Evaluator(config, model, mesh, workdir).run(params, tag=tag)


def predict(config, workdir: str, *, top: int = 5) -> dict:
  """{head: [(class name, ensemble probability)] * top} for the video file config.video."""
  if not config.video:
    raise ValueError('predict needs a video: --config.video=PATH')
  mesh, model = sharding.make_mesh(), make_model(config)
  params, _ = trained_params(config, workdir, model, mesh)
  views = pipeline.load_video_views(config.video, config.data)  # (views, T, H, W, 3)
  forward = jax.jit(lambda p, clip: model.apply({'params': p}, clip, train=False,
                                                rngs={'landmarks': jax.random.key(0)}))
  out = forward(params, jnp.asarray(views))
  out = out if isinstance(out, dict) else {'label': out}
  names = class_names(config.data)
  result = {}
  for head, logits in out.items():
    probs = np.asarray(jax.nn.softmax(logits.astype(jnp.float32), -1)).sum(0) / len(views)
    best = np.argsort(-probs, kind='stable')[:top]
    result[head] = [(names[head][i], float(probs[i])) for i in best]
  return result

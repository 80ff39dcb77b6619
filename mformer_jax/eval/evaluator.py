"""Evaluation and prediction: runs the model over the test views and writes the reports.

The metrics themselves (view ensemble, top-k, confusion) are `metrics.py`. Every host runs the
model on its own views; the jitted forward returns its outputs replicated, so every host
accumulates the same per-video scores and host 0 writes
WORKDIR/eval/<tag>/{metrics.json, confusion_matrix[_verb|_noun].csv, ...png} (eval.output_dir
in place of WORKDIR/eval where set).
Each video must receive exactly `views_per_video` views; unreadable videos are counted and
listed, never dropped silently.
"""
import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from matplotlib import figure

from mformer_jax import weights
from mformer_jax.weights import labels
from mformer_jax.eval import metrics
from mformer_jax.run import checkpoints, sharding
from mformer_jax.errors import ConfigError, MissingInputError
from mformer_jax.run import workdir as workdir_lib
from mformer_jax.data import pipeline
from mformer_jax.model import head_prefix, init_variables, make_model, outputs_by_head


def write_confusion(directory, name: str, cm: np.ndarray, class_names) -> None:
  """CSV (rows = true class, columns = predicted) and a row-normalised PNG."""
  with (directory / f'{name}.csv').open('w') as f:
    w = csv.writer(f, lineterminator='\n')
    w.writerow(['true \\ predicted'] + list(class_names))
    for cls, row in zip(class_names, cm):
      w.writerow([cls] + row.tolist())
  n = len(class_names)
  size = min(4 + 0.35 * n, 30)
  fig = figure.Figure(figsize=(size, size))  # no pyplot: no process-wide backend or state
  ax = fig.subplots()
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


def write_report(directory, results: dict, per_head: dict, names: dict, unreadable,
                 bad_train_records=()) -> None:
  """metrics.json (results, per-class accuracy, unreadable videos, the training records skipped
  so far) and the confusion matrices."""
  directory.mkdir(parents=True, exist_ok=True)
  for h, m in per_head.items():
    write_confusion(directory, 'confusion_matrix' + ('_' + h if head_prefix(h) else ''),
                    m['confusion'], names[h])
  report = {**results, 'unreadable': list(unreadable),
            'bad_train_records': list(bad_train_records),
            'per_class': {h: m['per_class'] for h, m in per_head.items()}}
  (directory / 'metrics.json').write_text(json.dumps(report, indent=1))


def probabilities(model, params, clip):
  """{head: softmax} of a batch of views. No RNG stream: the Orthoformer's landmarks are then
  the same for a clip in any batch (`model.approx.eval_first_index`), so evaluation, predict
  and features agree."""
  out = model.apply({'params': params}, clip, train=False)
  return {k: jax.nn.softmax(v.astype(jnp.float32), -1) for k, v in outputs_by_head(out).items()}


def eval_step(model, mesh):
  """The jitted forward the Evaluator runs: (params, batch) -> ({head: softmax}, the batch's
  other keys)."""

  def forward(params, batch):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      probs = probabilities(model, params, batch['clip'])
    return probs, {k: v for k, v in batch.items() if k != 'clip'}

  # Replicated outputs: every host sees every row of the global batch.
  return jax.jit(forward, out_shardings=sharding.replicated(mesh))


class Evaluator:
  """Runs the test split's view ensemble for given parameters; see module docstring."""

  def __init__(self, config, model, mesh, workdir: str):
    self.config, self.mesh, self.workdir = config, mesh, workdir_lib.path(workdir)
    self.local_batch = sharding.local_batch_size(config.eval.batch_size, 'eval.batch_size')
    # The dataset's names, or where it only numbers its classes those of the checkpoint or of
    # the dataset's shipped list (weights.labels).
    self.names = labels.class_names(config.data, model.cfg.heads,
                                    (workdir, config.init.checkpoint))
    pipeline.num_examples(config.data, 'test')  # opens the split: a missing shard fails here
    sizes = {h: len(n) for h, n in self.names.items()}
    if sizes != model.cfg.heads:
      raise ConfigError(f'the data has classes {sizes} but the model heads are {model.cfg.heads} '
                        '(set model.num_classes, or data.synthetic.classes, to match)')

    self._forward = eval_step(model, mesh)

  def run(self, params, *, tag: str, writer=None, step: int = 0, bad_train_records=()) -> dict:
    """Metrics of `params` on the test split; bad_train_records (the trainer's skipped records)
    are counted and listed in the report too."""
    cfg = self.config
    ds = pipeline.EvalDataset(
        cfg.data, local_batch_size=self.local_batch, split='test',
        process_index=jax.process_index(), process_count=jax.process_count())
    # ds.num_videos is this host's share; video_index is global.
    ensemble = metrics.Ensemble(pipeline.num_examples(cfg.data, 'test'), ds.views_per_video)
    for batch in ds:
      ensemble.add(*jax.device_get(self._forward(params, sharding.global_batch(batch, self.mesh))))
    # Records found unreadable now (on any host: every host's ensemble holds every video).
    bad = _on_every_host(sorted(ds.bad.found)) if ds.bad else []
    ensemble.drop(bad)
    results, per_head = ensemble.metrics(self.names)
    # Videos that could not be decoded were left out when the split was prepared; say so.
    skipped = [' '.join(map(str, s)) for s in ds.skipped] + [ds.bad.describe(e) for e in bad]
    results['num_unreadable'] = len(skipped)
    if bad_train_records:
      results['num_bad_train_records'] = len(bad_train_records)
    if skipped:
      logging.warning('%d unreadable test videos are not in the evaluation: %s', len(skipped),
                      '; '.join(skipped[:10]) + (' ...' if len(skipped) > 10 else ''))
    logging.info('eval %s: %s', tag, {k: round(v, 4) if isinstance(v, float) else v
                                      for k, v in results.items()})
    if writer is not None:
      writer.write_scalars(step, {f'eval/{k}': v for k, v in results.items()})
    if jax.process_index() == 0:
      out = reports_dir(self.config, self.workdir) / tag
      write_report(out, results, per_head, self.names, skipped, bad_train_records)
      results['report_dir'] = str(out)
    return results


def _on_every_host(values: list) -> list:
  """The union over hosts of a short list of non-negative ints."""
  if jax.process_count() == 1:
    return values
  n = int(np.max(multihost_utils.process_allgather(np.int32(len(values)))))
  mine = np.full(max(n, 1), -1, np.int64)
  mine[:len(values)] = values
  gathered = np.asarray(multihost_utils.process_allgather(mine)).ravel()
  return sorted({int(v) for v in gathered if v >= 0})


# ----------------------------------------------------------------------------------------------
# eval and predict modes
# ----------------------------------------------------------------------------------------------
def params_to_evaluate(config, workdir: str, model, mesh):
  """(params, tag), placed into the mesh's shardings: the checkpoint of WORKDIR's run at
  eval.step (-1 = the newest that reads and passes its checks: a broken newer step is skipped),
  tagged step_<step>; where WORKDIR has none, the weights in init.checkpoint (anything
  `weights.load` reads), tagged pretrained. A step named by eval.step that fails its checks is an
  error: nothing is evaluated from weights that failed."""
  abstract = jax.eval_shape(lambda: init_variables(model, jax.random.key(0))['params'])
  shardings = sharding.state_shardings(abstract, mesh, fsdp=config.mesh.fsdp,
                                       fsdp_min_size=config.mesh.fsdp_min_size)
  own = bool(checkpoints.steps(workdir))
  if not own and not config.init.checkpoint:
    raise MissingInputError(f'nothing to evaluate: {workdir} has no checkpoint and '
                            'init.checkpoint is empty (train first, or pass '
                            '--config.init.checkpoint=MODEL.pyth)')
  step = config.eval.step if own and config.eval.step >= 0 else None
  _, params, step = weights.load(workdir if own else config.init.checkpoint, model.cfg,
                                 step=step, strict=config.checkpoint.strict_restore,
                                 shardings=shardings, return_step=True)
  return params, f'step_{step}' if own else 'pretrained'


def reports_dir(config, workdir):
  """Where the reports go: config.eval.output_dir, or WORKDIR/eval (its default '')."""
  return workdir_lib.path(config.eval.output_dir or workdir_lib.path(workdir) / 'eval')


def evaluate_checkpoint(config, workdir: str) -> dict:
  # The reports' folder is checked writable up front: the workdir, unless eval.output_dir puts
  # them elsewhere (a finished run on a read-only mount).
  workdir_lib.claim(config.eval.output_dir or workdir, lock=False)
  mesh, model = sharding.make_mesh(), make_model(config.model)
  params, tag = params_to_evaluate(config, workdir, model, mesh)
  return Evaluator(config, model, mesh, workdir).run(params, tag=tag)

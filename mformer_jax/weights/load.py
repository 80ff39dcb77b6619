"""Loading weights from anywhere: `load(source, cfg, like=, dont_load=)` and the ready-to-apply
`load_model` / `load_official`.

What a source is is decided in `_source` alone: a workdir of this trainer (it has
WORKDIR/checkpoints; `python -m mformer_jax.convert` writes one) or a foreign file or state dict
(official .pyth/.pth/.npz, read by `official.read_official`; a timm ViT for ImageNet
initialisation). Every path ends in `tree.check_fit`.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

from mformer_jax.errors import ConfigError, InputError, MissingInputError
from mformer_jax.model import ModelConfig, Motionformer
from mformer_jax.run import checkpoints
from mformer_jax.run import workdir as workdir_lib
from mformer_jax.weights import labels, official, released
from mformer_jax.model.layout import blocks_layout, check_fit, param_shapes
from mformer_jax.weights.tree import merge, names


def _run_config(source, step: int, meta: dict, cfg) -> ModelConfig:
  """The ModelConfig the parameters of a run's step are for: `cfg`, or the one in its metadata
  with the fields of a mapping `cfg` replaced."""
  if isinstance(cfg, ModelConfig):
    return cfg
  if isinstance(cfg, (str, os.PathLike)) or (cfg and official.is_official_config(cfg)):
    raise ConfigError(f'{source} is a workdir, whose model config is in its metadata: an '
                      'official config applies to an official checkpoint file only')
  if 'model' not in meta:
    raise InputError(f'{source} (step {step}) records no model config: no Motionformer run '
                     'of this trainer (give cfg=, the ModelConfig it is for)')
  return ModelConfig.from_config({**meta['model'], **(cfg or {})})


def _from_run(source, cfg, step, strict: bool, shardings):
  """(step, ModelConfig, params) of a run's newest readable checkpoint (or `step`), verified and
  in the config's layout: numpy arrays, or placed into `shardings` (restored straight into them
  where the checkpoint has the config's block layout)."""
  one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def read(step):
    meta = checkpoints.read_meta(mngr, step)
    own = _run_config(source, step, meta, cfg)
    recorded = meta['arrays']['params']  # {name: [shape, dtype, checksum]}, as written
    saved = traverse_util.unflatten_dict({tuple(n.split('/')): jax.ShapeDtypeStruct(
        tuple(shape), jnp.dtype(dtype)) for n, (shape, dtype, _) in recorded.items()})
    if shardings is not None and ('blocks' in saved) == own.scan_blocks:
      want = traverse_util.unflatten_dict({k: jax.ShapeDtypeStruct(s, jnp.dtype(own.param_dtype))
                                           for k, s in param_shapes(own).items()})
      return own, checkpoints.restore_params(mngr, step, want, shardings, meta)
    params = jax.device_get(checkpoints.restore_params(
        mngr, step, saved, jax.tree.map(lambda _: one, saved), meta))
    flat = traverse_util.flatten_dict(blocks_layout(params, own))
    check_fit(names({k: v.shape for k, v in flat.items()}), names(param_shapes(own)),
              f'{checkpoints.where(mngr, step)} (params)')
    params = traverse_util.unflatten_dict(
        {k: np.asarray(v, own.param_dtype) for k, v in flat.items()})
    return own, params if shardings is None else jax.device_put(params, shardings)

  with checkpoints.manager(source, read_only=True) as mngr:
    if step is not None:
      if step not in mngr.all_steps():
        raise MissingInputError(f'no checkpoint step {step} in {mngr.directory} (it holds steps '
                                f'{list(mngr.all_steps())})')
      return (step, *read(step))
    step, value = checkpoints.restore_newest(mngr, read, strict=strict)
  if step is None:
    raise MissingInputError(f'{source}/checkpoints holds no finished checkpoint')
  return (step, *value)


def _source(source, cfg, step, strict, log, shardings=None):
  """(step or None, ModelConfig, params fitting it, in its layout): where what a source is is
  decided. Numpy params, or placed into `shardings`."""
  if isinstance(source, (str, os.PathLike)) and (workdir_lib.path(source) / 'checkpoints').is_dir():
    step, own, params = _from_run(os.fspath(source), cfg, step, strict, shardings)
    log(f'Loaded {source}: checkpoint step {step}')
    return step, own, params
  if step is not None:
    raise ConfigError(f'step={step}: {source} is no workdir with checkpoint steps')
  if isinstance(source, (str, os.PathLike)) and workdir_lib.path(source).is_dir():
    raise MissingInputError(f'{source} holds no checkpoint (no checkpoints/ folder): a workdir '
                            'of this trainer, a python -m mformer_jax.convert output or an '
                            'official .pyth/.pth/.npz file was expected')
  log(f'Loading {source if isinstance(source, (str, os.PathLike)) else "a state dict"}')
  model, variables = released.read(source, lambda path: official.read_official(path, cfg), log)
  params = variables['params']
  return None, model.cfg, params if shardings is None else jax.device_put(params, shardings)


def load(source, cfg=None, *, like=None, dont_load=(), step=None, strict: bool = False,
         imagenet: bool = False, shardings=None, return_step: bool = False, log=logging.info):
  """(ModelConfig, numpy params) of `source`, checked. Arrays of a state dict passed in that
  need no conversion are not copied: the params share memory with it (as np.asarray would).

  source: a workdir of this trainer (it has WORKDIR/checkpoints; `python -m mformer_jax.convert`
    writes one): its newest readable step, verified, with the model config saved in its
    metadata. Anything else is a foreign file: an official .pyth/.pth/.npz path or a state dict
    (the model config from the file's own cfg or, failing that, its shapes: official.read_official);
    with imagenet=True a timm ViT state dict.
  cfg: None: the source's own config. A ModelConfig: the model the parameters are for. A mapping
    of ModelConfig fields replaces the source's own (e.g. {'dtype': 'float64'}); for a foreign
    file also an official config (the nested yacs dict, or the path of its YAML file).
  like: the fresh parameters of the model `cfg` (then a ModelConfig) to load into: the result
    has their structure, block layout and dtypes. Without it, the layout `cfg` builds.
  dont_load: regular expressions (full match) on '/'-joined parameter names of `like` that keep
    their fresh values, whatever the source holds there (HEAD_PATTERNS: a new label set).
  step: that step of a workdir (default: the newest readable; a broken newer one is skipped with
    a warning, or with strict an error naming the readable ones).
  imagenet: copy the ViT's tensors onto `like` by the official same-key-and-shape rule and
    inflate its patch kernel (official.init_from_imagenet); the rest stays fresh.
  shardings: the parameters' shardings (a tree like them): the result is placed there instead
    of numpy; a workdir's checkpoint in the config's block layout is restored straight into
    them, never whole on one host (FSDP-sharded evaluation).
  return_step: also return the workdir's step that was read (None for a foreign file), third.

  Whatever the source, the parameters go through the same mismatch check (tree.check_fit): a
  CheckpointMismatchError lists every missing, unexpected and mis-shaped name.
  """
  # Misuse of the function's own arguments (no input of a user's): ValueError, a traceback.
  if like is not None and not isinstance(cfg, ModelConfig):
    raise ValueError('like= needs cfg=, the ModelConfig of the model it belongs to')
  if (dont_load or imagenet) and like is None:
    raise ValueError('dont_load= and imagenet= need like=, the fresh parameters')
  what = source if isinstance(source, (str, os.PathLike)) else 'the state dict'
  if imagenet:
    log(f'Initialising from the ImageNet ViT {what}')
    params = official.init_from_imagenet({'params': like}, source, cfg, log=log)[0]['params']
    read_step, params = None, merge(params, cfg, like, dont_load, what)
  elif like is None:
    read_step, cfg, params = _source(source, cfg, step, strict, log, shardings)
    shardings = None  # placed already
  else:  # read as the source's own model, then fitted onto `like` (whose head may differ)
    read_step, _, params = _source(source, None, step, strict, log)
    params = merge(params, cfg, like, dont_load, what)
  if shardings is not None:
    params = jax.device_put(params, shardings)
  return (cfg, params, read_step) if return_step else (cfg, params)


def load_model(source, **overrides):
  """(model, {'params': device arrays}) of anything `load` reads, ready to apply (analysis,
  notebooks). overrides replace ModelConfig fields that do not change the parameters (e.g.
  dtype='float64', trajectory_impl='einsum', scan_blocks=True: the layout follows)."""
  return load_official(source, overrides or None)


def load_official(path_or_state_dict, cfg=None):
  """(model, variables) from a released model's name (weights.released: downloaded once), an
  official checkpoint file or state dict (or, as `load` is underneath, a workdir of this
  trainer). It also has `.class_names`: {head: names} where known (labels.of_source), else None.

  cfg: None reads the model config from the file's own `cfg` (yaml in .pyth, `meta__json` in
  golden .npz) or, failing that, from the state dict's shapes; a ModelConfig is used as is;
  an official config (the nested yacs dict {'VIT': ..., 'MODEL': ..., 'DATA': ...}, or the path
  of its YAML file) replaces the file's own; any other mapping overrides fields of whatever was
  read (e.g. {'dtype': 'float64', 'img_size': 336}).

  Trajectory attention runs what `ModelConfig.trajectory_kernel` resolves (trajectory_impl
  'auto': the exact chunked kernel where it equals the reference); {'trajectory_impl': 'einsum'}
  selects the reference, op for op like the official code. The parameters are placed on the
  default device: a jitted apply given host (numpy) arrays copies every parameter to the device
  again on every call.
  """
  model_cfg, params = load(path_or_state_dict, cfg)
  return labels.WithNames(Motionformer(model_cfg), {'params': _place(_flat_taken(params))},
                          labels.of_source(path_or_state_dict, model_cfg.heads))


def _flat_taken(params) -> dict:
  """The flattened leaves of `params`, emptied of them (so that `_place` holds their last
  references, where the caller held them alone)."""
  flat = traverse_util.flatten_dict(params)
  params.clear()
  return flat


def _place(flat: dict):
  """The tree of `flat`'s leaves on the default device, put one at a time and each host array
  dropped once placed. A file's arrays then die one by one as their device copies appear:
  loading holds the weights about once, not twice (host and device) at its peak (jax lets go
  of a host array at its next call, so each is freed while the next is placed). Empties `flat`."""
  return traverse_util.unflatten_dict(
      {k: jax.device_put(flat.pop(k)) for k in list(flat)})

"""Checkpoints: the run's own orbax CheckpointManager, and loading weights from elsewhere.

Three ways to get parameters (initialising is `model.init_variables`):
* `restore` / `latest_params`: our own checkpoints (a workdir of this trainer);
* `import_params`: foreign weights onto a fresh model (an official .pyth/.npz, a
  `mformer_jax.convert` folder, another run's workdir, or ImageNet ViT weights);
* `load_model`: (model, variables) of any of those, ready to apply (analysis, notebooks).

Layout: WORKDIR/checkpoints/<step>/{params, train, meta}. `train` holds the optimizer state, the
step and the base RNG key; the data position is the step itself (the input pipeline restarts at
`start_step`). Orbax writes each step into a temporary folder and renames it when complete, so a
kill -9 at any moment leaves the previous checkpoints intact; the half-written folder is removed
when the next run opens the manager.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import traverse_util
from orbax.checkpoint import checkpoint_managers as policies

from mformer_jax import convert
from mformer_jax.model import HEAD_PARAMS, ModelConfig, Motionformer

HEAD_KEYS = tuple(HEAD_PARAMS.values())


def path(p) -> epath.Path:
  """A local path made absolute, or a URL (gs://...: pods need a workdir every host sees)."""
  p = str(p)
  return epath.Path(p if '://' in p else os.path.abspath(p))


def manager(workdir: str, ck=None, *, read_only: bool = False) -> ocp.CheckpointManager:
  """Keeps the latest `ck.keep` checkpoints plus the `ck.keep_best` best by `ck.best_metric`."""
  keep = [policies.LatestN(n=ck.keep if ck else 1)]
  if ck and ck.keep_best > 0:
    keep.append(policies.BestN(get_metric_fn=lambda m: m[ck.best_metric], n=ck.keep_best,
                               keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policies.AnyPreservationPolicy(keep), read_only=read_only,
      cleanup_tmp_directories=not read_only, create=not read_only)
  # Handlers named up front, so that reading only some items (params) is a normal restore.
  handlers = {'params': ocp.StandardCheckpointHandler(), 'train': ocp.StandardCheckpointHandler(),
              'meta': ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(path(workdir) / 'checkpoints', options=options,
                               item_handlers=handlers)


def save(mngr, state, meta: dict, metrics=None) -> None:
  """Async save of the full train state (all hosts call it; orbax coordinates who writes)."""
  rest = {k: v for k, v in state.items() if k != 'params'}
  mngr.save(int(meta['step']), metrics=metrics, args=ocp.args.Composite(
      params=ocp.args.StandardSave(state['params']), train=ocp.args.StandardSave(rest),
      meta=ocp.args.JsonSave(meta)))


def _abstract(tree, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


def restore(mngr, step: int, abstract_state, shardings):
  """(state, meta) at `step`, placed directly into `shardings` (no host copy of the whole)."""
  target = _abstract(abstract_state, shardings)
  rest = {k: v for k, v in target.items() if k != 'params'}
  out = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(target['params']), train=ocp.args.StandardRestore(rest),
      meta=ocp.args.JsonRestore()))
  return {'params': out['params'], **out['train']}, out['meta']


def read_meta(mngr, step: int) -> dict:
  """The JSON metadata of a checkpoint alone (cheap: no arrays are read)."""
  return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']


def restore_params(mngr, step: int, abstract_params, shardings):
  """Only the parameters of a checkpoint (eval, predict, fine-tuning from an own run)."""
  return mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(_abstract(abstract_params, shardings))))['params']


def import_params(fresh_params, cfg: ModelConfig, *, checkpoint: str = '', imagenet: str = '',
                  reset_head: bool = False, log=print):
  """Foreign weights (numpy) onto the structure of `fresh_params` (our model's init).

  checkpoint: an official .pyth/.pth/.npz, a `mformer_jax.convert` folder or a workdir of this
  trainer; every tensor must exist with the right shape, else one error lists the differences.
  reset_head keeps the freshly initialised classifier (K400 -> SSv2 fine-tuning).
  imagenet: a timm ViT-B/16 state dict, loaded by the official same-key-and-shape rule.
  """
  if checkpoint and imagenet:
    raise ValueError('set init.checkpoint or init.imagenet, not both')
  if imagenet:
    return convert.init_from_imagenet({'params': fresh_params}, imagenet, cfg, log=log)[0]['params']
  log(f'Initialising from {checkpoint} (reset_head={reset_head})')
  fresh = traverse_util.flatten_dict(jax.device_get(fresh_params))
  if (path(checkpoint) / 'checkpoints').is_dir():
    loaded = latest_params(checkpoint)[1]
  elif path(checkpoint).is_dir():
    loaded = convert.load_params(checkpoint)[1]
  else:
    loaded = convert.load_official(checkpoint)[1]['params']
  loaded = traverse_util.flatten_dict(convert.blocks_layout(loaded, cfg))  # stacked or not
  if reset_head:
    loaded = {k: v for k, v in loaded.items() if k[0] not in HEAD_KEYS}
  problems = [f'missing {"/".join(k)}' for k in fresh
              if k not in loaded and not (reset_head and k[0] in HEAD_KEYS)]
  problems += [f'{"/".join(k)}: checkpoint {loaded[k].shape} vs model {v.shape}'
               for k, v in fresh.items() if k in loaded and loaded[k].shape != v.shape]
  if problems:
    hint = ('' if reset_head else
            ' (fine-tuning to a new label set? add --config.init.reset_head=True)')
    raise convert.CheckpointMismatchError(
        f'{checkpoint} does not fit the model{hint}:\n  ' + '\n  '.join(problems))
  out = {k: np.asarray(loaded.get(k, v), v.dtype) for k, v in fresh.items()}
  return traverse_util.unflatten_dict(out)


def latest_params(workdir: str):
  """(step, numpy params) of a run's latest checkpoint, whatever its head or device layout."""
  with manager(workdir, read_only=True) as mngr:
    step = mngr.latest_step()
    if step is None:
      raise FileNotFoundError(f'{workdir}/checkpoints holds no finished checkpoint')
    saved = mngr.item_metadata(step)['params']  # shapes and dtypes as written
    one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    params = restore_params(mngr, step, saved, jax.tree.map(lambda _: one, saved))
    return step, jax.device_get(params)


def load_model(source: str, **overrides):
  """(model, {'params': numpy params}) from any trained or converted model, ready to apply.

  source: a workdir of this trainer (its latest checkpoint; the model config saved with it), a
  `mformer_jax.convert` folder, or an official .pyth/.pth/.npz. overrides replace ModelConfig
  fields that do not change the parameters (e.g. dtype='float64', trajectory_impl='einsum');
  the parameters come in the layout the (overridden) config asks for (stacked or per block).
  """
  if (path(source) / 'checkpoints').is_dir():
    with manager(source, read_only=True) as mngr:
      step = mngr.latest_step()
      if step is None:
        raise FileNotFoundError(f'{source}/checkpoints holds no finished checkpoint')
      fields = read_meta(mngr, step)['model']
    params = latest_params(source)[1]
  elif path(source).is_dir():
    cfg, params = convert.load_params(source)
    fields = dict(cfg.__dict__)
  else:
    model, variables = convert.load_official(source, overrides or None)
    return model, variables
  cfg = ModelConfig.from_config({**fields, **overrides})
  params = jax.tree.map(lambda x: np.asarray(x, cfg.param_dtype), convert.blocks_layout(params, cfg))
  return Motionformer(cfg), {'params': params}

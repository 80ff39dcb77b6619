"""Official Motionformer checkpoints <-> Flax variables; ImageNet ViT initialisation; CLI.

Python API:
    model, variables = load_official('k400_motionformer_224_16x4.pyth')   # or .npz / a dict
    logits = model.apply(variables, clip, train=False)    # trajectory: the chunked exact kernel
    state_dict = export_official(variables, model.cfg)                     # exact round trip

    model, variables = load_official(path, {'trajectory_impl': 'einsum'})  # op-for-op reference

    model, variables = load_official(state_dict, cfg='configs/K400/motionformer_224_16x4.yaml')
    model, variables = load_official(state_dict, cfg={'VIT': {...}, 'MODEL': {...}, ...})

CLI (writes an orbax checkpoint the trainer/evaluator can start from):
    python -m mformer_jax.convert --input=k400_motionformer_224_16x4.pyth --output=/ckpts/k400_mf
    python -m mformer_jax.convert --input=x.npz --output=DIR --override=num_heads=12,img_size=336
    python -m mformer_jax.convert --input=x.pth --output=DIR \
        --official_config=configs/K400/motionformer_224_16x4.yaml

Weight surgery table (flax path -> official key, transform):

| flax                                   | official                        | transform                |
| -------------------------------------- | ------------------------------- | ------------------------ |
| cls_token, pos_embed, temp_embed       | same                            | -                        |
| patch_embed_3d_kernel (kt,p,p,C,D)     | patch_embed_3d.proj.weight      | (D,C,kt,p,p) -> T(2,3,4,1,0) |
| patch_embed_3d_bias                    | patch_embed_3d.proj.bias        | -                        |
| patch_embed_kernel (p,p,C,D) (unused)  | patch_embed.proj.weight         | (D,C,p,p) -> T(2,3,1,0)  |
| patch_embed_bias                       | patch_embed.proj.bias           | -                        |
| blocks_{i}/<mod>/<dense>/kernel        | blocks.{i}.<mod>.<dense>.weight | (out,in) -> (in,out)     |
| blocks_{i}/<mod>/<dense>/bias          | blocks.{i}.<mod>.<dense>.bias   | -                        |
| blocks_{i}/norm{1,2,3}/scale, bias     | blocks.{i}.norm{1,2,3}.weight, .bias | -                   |
| norm/scale, norm/bias                  | norm.weight, norm.bias          | -                        |
| pre_logits/kernel, bias                | pre_logits.fc.weight, .bias     | transpose                |
| head, head0 (verbs), head1 (nouns)     | head.*, head0.*, head1.*        | transpose                |

Models with `scan_blocks=True` keep the blocks stacked: blocks/<...> with a leading depth axis is
blocks_{0..depth-1}/<...> (`stack_blocks` / `unstack_blocks`); every function here accepts and
returns the layout of the config it is given, and the table applies to the unstacked form.
"""

from mformer_jax.errors import UserError
import dataclasses
import json
import os
import re
import sys
import zipfile
from typing import Any, Mapping, Optional, Union

import jax
import numpy as np
from flax import traverse_util

from mformer_jax import torch_pickle
from mformer_jax.model import ModelConfig, Motionformer, init_variables

StateDict = Mapping[str, np.ndarray]


class CheckpointMismatchError(UserError, ValueError):
  """The state dict does not fit the model: names the missing/unexpected/mis-shaped keys."""


class UnreadableCheckpointError(CheckpointMismatchError, torch_pickle.UnsupportedCheckpointError):
  """The file is no checkpoint we can read (not torch.save output or .npz, truncated, or a pickle
  naming code to run); one line naming the file. A CheckpointMismatchError, so that the entry
  points that report those in one line report this too."""


# ----------------------------------------------------------------------------------------------
# Key table
# ----------------------------------------------------------------------------------------------
_TOP = {
    'cls_token': 'cls_token', 'pos_embed': 'pos_embed', 'temp_embed': 'temp_embed',
    'patch_embed_3d_kernel': 'patch_embed_3d.proj.weight',
    'patch_embed_3d_bias': 'patch_embed_3d.proj.bias',
    'patch_embed_kernel': 'patch_embed.proj.weight', 'patch_embed_bias': 'patch_embed.proj.bias',
}
_CONV_PERM = {'patch_embed_3d_kernel': (2, 3, 4, 1, 0), 'patch_embed_kernel': (2, 3, 1, 0)}


def official_key(path: tuple[str, ...]) -> str:
  """Flax parameter path -> official state-dict key."""
  if len(path) == 1:
    return _TOP[path[0]]
  parts = []
  for part in path[:-1]:
    m = re.fullmatch(r'blocks_(\d+)', part)
    parts += ['blocks', m.group(1)] if m else [part]
  if parts == ['pre_logits']:
    parts = ['pre_logits', 'fc']
  leaf = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}[path[-1]]
  return '.'.join(parts + [leaf])


def _to_flax(path, value):
  if path[-1] in _CONV_PERM:
    return np.transpose(value, _CONV_PERM[path[-1]])
  if path[-1] == 'kernel':
    return np.transpose(value)
  return value


def _to_official(path, value):
  if path[-1] in _CONV_PERM:
    return np.transpose(value, np.argsort(_CONV_PERM[path[-1]]))
  if path[-1] == 'kernel':
    return np.transpose(value)
  return value


def stack_blocks(params: Mapping) -> dict:
  """blocks_0 .. blocks_{L-1} -> blocks with a leading depth axis (the scan_blocks layout)."""
  names = sorted((k for k in params if re.fullmatch(r'blocks_\d+', k)), key=lambda k: int(k[7:]))
  if not names:
    return dict(params)
  out = {k: v for k, v in params.items() if k not in names}
  out['blocks'] = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                               *[params[k] for k in names])
  return out


def unstack_blocks(params: Mapping) -> dict:
  """Inverse of `stack_blocks` (a no-op on unstacked parameters)."""
  if 'blocks' not in params:
    return dict(params)
  stacked = jax.device_get(params['blocks'])
  out = {k: v for k, v in params.items() if k != 'blocks'}
  for i in range(jax.tree.leaves(stacked)[0].shape[0]):
    out[f'blocks_{i}'] = jax.tree.map(lambda a, i=i: a[i], stacked)
  return out


def blocks_layout(params: Mapping, cfg: ModelConfig) -> dict:
  """`params` (either layout) in the layout that `cfg` builds."""
  return stack_blocks(params) if cfg.scan_blocks else unstack_blocks(params)


def _unscanned(cfg: ModelConfig) -> ModelConfig:
  return dataclasses.replace(cfg, scan_blocks=False)


# ----------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------
def read_checkpoint(path: str) -> tuple[dict[str, np.ndarray], Optional[dict]]:
  """(state_dict as numpy, official cfg dict or None) from a .pyth/.pth/.npz file.

  .pyth/.pth: torch.save output, read without torch (`torch_pickle`): a PySlowFast checkpoint
  (its `model_state`, and `cfg` as YAML), a timm/DeiT {'model': state dict}, or a bare state dict.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'checkpoint not found: {path}')
  if path.endswith('.npz'):
    try:
      with np.load(path, allow_pickle=False) as z:
        cfg = json.loads(str(z['meta__json'])).get('cfg') if 'meta__json' in z.files else None
        sd = {k: z[k] for k in z.files if '__' not in k}  # goldens carry io__/inter__/meta__ extras
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
      raise UnreadableCheckpointError(f'{path}: not a readable .npz state dict ({e})') from e
    return sd, cfg
  try:
    ckpt = torch_pickle.load(path)
  except torch_pickle.UnsupportedCheckpointError as e:
    raise UnreadableCheckpointError(str(e)) from None
  cfg = None
  if isinstance(ckpt, dict) and 'model_state' in ckpt:
    sd = ckpt['model_state']
    if isinstance(ckpt.get('cfg'), str):
      import yaml  # pylint: disable=g-import-not-at-top
      cfg = yaml.safe_load(ckpt['cfg'])
  elif isinstance(ckpt, dict) and isinstance(ckpt.get('model'), dict):
    sd = ckpt['model']  # timm/DeiT style
  else:
    sd = ckpt
  if not isinstance(sd, dict):
    raise UnreadableCheckpointError(f'{path} holds a {type(sd).__name__}, not a state dict')
  return {k: v for k, v in sd.items() if isinstance(v, np.ndarray)}, cfg


def _strip_prefix(sd: StateDict) -> dict[str, np.ndarray]:
  """Drop DDP 'module.' prefixes."""
  return {k[len('module.'):] if k.startswith('module.') else k: np.asarray(v) for k, v in sd.items()}


# ----------------------------------------------------------------------------------------------
# Model config from the official yaml cfg or from the state dict's shapes
# ----------------------------------------------------------------------------------------------
def is_official_config(cfg: Mapping[str, Any]) -> bool:
  """True for an official (yacs) cfg, whose keys are upper-case sections (VIT, MODEL, DATA, ...);
  False for ModelConfig fields, which are lower case; a mix of both is an error."""
  upper = [k for k in cfg if isinstance(k, str) and k.isupper()]
  if upper and len(upper) != len(cfg):
    raise ValueError(f'config mixes official sections {sorted(upper)} with other keys '
                     f'{sorted(set(map(str, cfg)) - set(upper))}; pass one or the other')
  return bool(upper)


def read_official_config(path: Union[str, os.PathLike]) -> dict[str, Any]:
  """The nested dict of an official YAML config (as in the official repository's configs/)."""
  import yaml  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise FileNotFoundError(f'official config not found: {path}')
  with open(path) as f:
    try:
      cfg = yaml.safe_load(f)
    except yaml.YAMLError as e:  # One line: the problem and where, not PyYAML's excerpt.
      mark = getattr(e, 'problem_mark', None)
      where = f' (line {mark.line + 1}, column {mark.column + 1})' if mark else ''
      raise ValueError(f'{path} is not valid YAML{where}: {getattr(e, "problem", e)}') from e
  if not isinstance(cfg, dict) or not cfg or not is_official_config(cfg):
    raise ValueError(f'{path} is not an official Motionformer config (expected upper-case '
                     'sections such as VIT, MODEL, DATA)')
  return cfg


def config_from_official(cfg: Mapping[str, Any]) -> dict[str, Any]:
  """ModelConfig fields from an official (yacs) cfg dict; what a YAML file leaves out takes the
  official defaults (slowfast/config/defaults.py)."""
  vit, data = cfg.get('VIT', {}), cfg.get('DATA', {})
  if vit.get('POS_EMBED', 'separate') != 'separate':
    raise ValueError(f"POS_EMBED={vit['POS_EMBED']!r} is not supported (no released model uses it)")
  if not vit.get('USE_MLP', False) or vit.get('HEAD_ACT', 'tanh') != 'tanh':
    raise ValueError('only the released head (pre_logits Linear + tanh) is supported')
  if vit.get('PATCH_SIZE_TEMP', 2) < 2:
    raise ValueError('PATCH_SIZE_TEMP=1 (2D per-frame embedding) is not supported')
  kt = vit.get('PATCH_SIZE_TEMP', 2)
  out = dict(
      num_classes=cfg.get('MODEL', {}).get('NUM_CLASSES', 400),
      epic_kitchens=cfg.get('TRAIN', {}).get('DATASET', '').lower() == 'epickitchens',
      num_frames=vit.get('TEMPORAL_RESOLUTION', 8) * kt,
      img_size=data.get('TRAIN_CROP_SIZE', 224),
      patch_size=vit.get('PATCH_SIZE', 16), tubelet_size=kt,
      embed_dim=vit.get('EMBED_DIM', 768), depth=vit.get('DEPTH', 12),
      num_heads=vit.get('NUM_HEADS', 12), mlp_ratio=vit.get('MLP_RATIO', 4),
      qkv_bias=vit.get('QKV_BIAS', True), attention=vit.get('ATTN_LAYER', 'trajectory'),
      trajectory_values='original' if vit.get('USE_ORIGINAL_TRAJ_ATTN_CODE', True) else 'projected',
      approx=vit.get('APPROX_ATTN_TYPE', 'none'), num_landmarks=vit.get('APPROX_ATTN_DIM', 128),
      dropout=vit.get('DROP', 0.0), attn_dropout=vit.get('ATTN_DROPOUT', 0.0),
      drop_path=vit.get('DROP_PATH', 0.0), head_dropout=vit.get('HEAD_DROPOUT', 0.0))
  return out


_SHAPE_KEYS = ('cls_token', 'patch_embed_3d.proj.weight', 'temp_embed', 'blocks.0.mlp.fc1.weight')


def config_from_state_dict(sd: StateDict) -> dict[str, Any]:
  """What the shapes determine. num_heads is not visible: ViT convention d=64 is assumed."""
  missing = [k for k in _SHAPE_KEYS if k not in sd]
  missing += [] if 'head.weight' in sd or 'head0.weight' in sd else ['head.weight (or head0/1)']
  if missing:
    keys = sorted(sd)
    raise CheckpointMismatchError(
        'not an official Motionformer state dict, so its shapes say nothing about the model:\n'
        f'  missing ({len(missing)}): {", ".join(missing)}\n'
        f'  its keys ({len(keys)}): {", ".join(keys[:12])}{", ..." if len(keys) > 12 else ""}')
  d = sd['cls_token'].shape[-1]
  kernel = sd['patch_embed_3d.proj.weight']
  depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r'blocks\.(\d+)\.', k)))
  if 'blocks.0.timeattn.qkv.weight' in sd:
    attention = 'divided'
  elif 'blocks.0.attn.proj_q.weight' in sd:
    attention = 'trajectory'
  else:
    attention = 'joint'
  out = dict(embed_dim=d, depth=depth, num_heads=max(d // 64, 1), patch_size=kernel.shape[-1],
             tubelet_size=kernel.shape[2], num_frames=sd['temp_embed'].shape[1] * kernel.shape[2],
             mlp_ratio=sd['blocks.0.mlp.fc1.weight'].shape[0] / d,
             qkv_bias='blocks.0.attn.qkv.bias' in sd, attention=attention)
  if 'head0.weight' in sd:
    out.update(epic_kitchens=True, num_verbs=sd['head0.weight'].shape[0],
               num_nouns=sd['head1.weight'].shape[0])
  else:
    out.update(num_classes=sd['head.weight'].shape[0])
  return out


# ----------------------------------------------------------------------------------------------
# Import / export
# ----------------------------------------------------------------------------------------------
def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """Official key -> shape for a model config (no computation, shapes only)."""
  shapes = jax.eval_shape(lambda: init_variables(Motionformer(_unscanned(cfg)), jax.random.key(0)))
  flat = traverse_util.flatten_dict(shapes['params'])
  return {official_key(p): tuple(_to_official(p, np.zeros(v.shape, np.int8)).shape)
          for p, v in flat.items()}


def params_from_state_dict(sd: StateDict, cfg: ModelConfig) -> dict:
  """Strict import: every key present, none extra, every shape right, else one error."""
  sd = _strip_prefix(sd)
  want = expected_shapes(cfg)
  missing = sorted(set(want) - set(sd))
  unexpected = sorted(set(sd) - set(want))
  misshaped = sorted(f'{k}: file {tuple(sd[k].shape)} vs model {want[k]}'
                     for k in set(want) & set(sd) if tuple(sd[k].shape) != want[k])
  if missing or unexpected or misshaped:
    lines = [f'checkpoint does not match the model ({cfg.attention}, depth {cfg.depth}, '
             f'dim {cfg.embed_dim}, {cfg.num_frames} frames):']
    for title, keys in (('missing', missing), ('unexpected', unexpected), ('mis-shaped', misshaped)):
      if keys:
        lines.append(f'  {title} ({len(keys)}): ' + ', '.join(keys))
    raise CheckpointMismatchError('\n'.join(lines))
  shapes = jax.eval_shape(lambda: init_variables(Motionformer(_unscanned(cfg)), jax.random.key(0)))
  flat = {p: _to_flax(p, sd[official_key(p)]).astype(cfg.param_dtype)
          for p in traverse_util.flatten_dict(shapes['params'])}
  return blocks_layout(traverse_util.unflatten_dict(flat), cfg)


def export_official(variables, cfg: ModelConfig) -> dict[str, np.ndarray]:
  """Flax variables -> official state dict (numpy, PyTorch layouts)."""
  del cfg  # the key table does not depend on it; kept for a symmetric API
  params = variables['params'] if 'params' in variables else variables
  flat = traverse_util.flatten_dict(unstack_blocks(jax.device_get(params)))
  return {official_key(p): np.ascontiguousarray(_to_official(p, np.asarray(v)))
          for p, v in flat.items()}


# The trajectory kernel load_official picks when the caller names none. 'chunked' equals the
# einsum reference in values and gradients (tests/test_fast_attention.py; the official goldens
# run through it, tests/test_goldens.py) and is the fastest exact path on CPU/TPU while never
# holding the N x N scores. It has no attention dropout, so such configs keep the reference.
FAST_EXACT_TRAJECTORY_IMPL = 'chunked'


def fast_exact_trajectory(cfg: ModelConfig) -> ModelConfig:
  """cfg with FAST_EXACT_TRAJECTORY_IMPL where it computes what einsum does, else unchanged."""
  if cfg.attention != 'trajectory' or cfg.attn_dropout:
    return cfg
  return dataclasses.replace(cfg, trajectory_impl=FAST_EXACT_TRAJECTORY_IMPL)


def load_official(path_or_state_dict: Union[str, StateDict],
                  cfg: Union[None, str, os.PathLike, ModelConfig, Mapping[str, Any]] = None):
  """(model, variables) from an official checkpoint file or state dict.

  cfg: None reads the model config from the file's own `cfg` (yaml in .pyth, `meta__json` in
  golden .npz) or, failing that, from the state dict's shapes; a ModelConfig is used as is;
  an official config (the nested yacs dict {'VIT': ..., 'MODEL': ..., 'DATA': ...}, or the path
  of its YAML file) replaces the file's own; any other mapping overrides fields of whatever was
  read (e.g. {'dtype': 'float64', 'img_size': 336}).

  Unless a ModelConfig or a mapping sets `trajectory_impl`, trajectory attention runs the
  fastest exact kernel (`fast_exact_trajectory`: 'chunked' where it equals the reference);
  {'trajectory_impl': 'einsum'} selects the reference, op for op like the official code.
  The parameters are placed on the default device: a jitted apply given host (numpy) arrays
  copies every parameter to the device again on every call.
  """
  model, variables = read_official(path_or_state_dict, cfg)
  return model, jax.device_put(variables)


def read_official(path_or_state_dict: Union[str, StateDict],
                  cfg: Union[None, str, os.PathLike, ModelConfig, Mapping[str, Any]] = None):
  """`load_official` with the parameters left on the host as numpy arrays (for weight surgery)."""
  file_cfg = None
  if isinstance(path_or_state_dict, (str, os.PathLike)):
    sd, file_cfg = read_checkpoint(os.fspath(path_or_state_dict))
  else:
    sd = _strip_prefix(path_or_state_dict)
  if isinstance(cfg, (str, os.PathLike)):
    cfg = read_official_config(cfg)
  if isinstance(cfg, ModelConfig):
    model_cfg = cfg
  elif cfg is not None and is_official_config(cfg):
    model_cfg = fast_exact_trajectory(ModelConfig.from_config(config_from_official(cfg)))
  else:
    fields = config_from_official(file_cfg) if file_cfg else config_from_state_dict(_strip_prefix(sd))
    overrides = dict(cfg or {})
    model_cfg = ModelConfig.from_config({**fields, **overrides})
    if 'trajectory_impl' not in overrides:  # the caller's choice wins, einsum included
      model_cfg = fast_exact_trajectory(model_cfg)
  model = Motionformer(model_cfg)
  return model, {'params': params_from_state_dict(sd, model_cfg)}


# ----------------------------------------------------------------------------------------------
# ImageNet ViT initialisation (official `load_pretrained` + centre-slice inflation)
# ----------------------------------------------------------------------------------------------
def init_from_imagenet(variables, vit: Union[str, StateDict], cfg: ModelConfig, *, log=print):
  """Copy every timm ViT tensor whose key and shape match; inflate the 2D patch kernel.

  Returns (new variables, report) with report = {'loaded': [...], 'inflated': [...],
  'fresh': [...], 'ignored': [...]} of official key names; `log` receives a table.
  """
  vit_sd = read_checkpoint(vit)[0] if isinstance(vit, (str, os.PathLike)) else _strip_prefix(vit)
  vit_sd = dict(vit_sd)
  if 'patch_embed.proj.weight' in vit_sd:  # timm _conv_filter: (D, 3*p*p) -> (D, 3, p, p)
    w = vit_sd['patch_embed.proj.weight']
    p = cfg.patch_size
    vit_sd['patch_embed.proj.weight'] = w.reshape(w.shape[0], 3, p, p)
  ours = export_official(variables, cfg)
  report = {'loaded': [], 'inflated': [], 'fresh': [], 'ignored': []}
  for key, value in ours.items():
    if key in vit_sd and tuple(vit_sd[key].shape) == value.shape:
      ours[key] = vit_sd[key].astype(value.dtype)
      report['loaded'].append(key)
    elif not key.startswith('patch_embed_3d'):
      report['fresh'].append(key)
  if 'patch_embed.proj.weight' in report['loaded']:
    kernel = np.zeros_like(ours['patch_embed_3d.proj.weight'])
    kernel[:, :, cfg.tubelet_size // 2] = ours['patch_embed.proj.weight']  # centre temporal slice
    ours['patch_embed_3d.proj.weight'] = kernel
    ours['patch_embed_3d.proj.bias'] = ours['patch_embed.proj.bias']
    report['inflated'] = ['patch_embed_3d.proj.weight', 'patch_embed_3d.proj.bias']
  else:
    report['fresh'] += ['patch_embed_3d.proj.weight', 'patch_embed_3d.proj.bias']
  report['ignored'] = sorted(k for k in vit_sd if k not in ours or
                             tuple(vit_sd[k].shape) != ours[k].shape)
  log(_format_report(report))
  return {**variables, 'params': params_from_state_dict(ours, cfg)}, report


def _format_report(report) -> str:
  rows = [f"ImageNet ViT initialisation: {len(report['loaded'])} loaded, "
          f"{len(report['inflated'])} inflated (centre slice), {len(report['fresh'])} freshly "
          f"initialised, {len(report['ignored'])} ViT tensors ignored"]
  for status in ('loaded', 'inflated', 'fresh', 'ignored'):
    for key in report[status]:
      rows.append(f'  {status:9s} {key}')
  return '\n'.join(rows)


# ----------------------------------------------------------------------------------------------
# Own format: orbax params + model_config.json
# ----------------------------------------------------------------------------------------------
def save_params(directory: str, params, cfg: ModelConfig) -> None:
  """Writes DIR/params (orbax) and DIR/model_config.json; the trainer's `init.checkpoint`."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = os.path.abspath(directory)
  os.makedirs(directory, exist_ok=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.join(directory, 'params'), params, force=True)
  with open(os.path.join(directory, 'model_config.json'), 'w') as f:
    json.dump(dataclasses.asdict(cfg), f, indent=1)


def load_params(directory: str):
  """(ModelConfig, params) written by `save_params` (numpy leaves)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = os.path.abspath(directory)
  cfg_path = os.path.join(directory, 'model_config.json')
  if not os.path.exists(cfg_path):
    raise FileNotFoundError(f'{directory} is not a converted checkpoint (no model_config.json); '
                            'create one with python -m mformer_jax.convert')
  with open(cfg_path) as f:
    cfg = ModelConfig.from_config(json.load(f))
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(os.path.join(directory, 'params'))
  return cfg, params


def _parse_overrides(text: str) -> dict[str, Any]:
  out = {}
  for item in filter(None, text.split(',')):
    key, _, value = item.partition('=')
    try:
      out[key.strip()] = json.loads(value)
    except json.JSONDecodeError:
      out[key.strip()] = value
  return out


def main(argv=None):
  import argparse  # pylint: disable=g-import-not-at-top
  ap = argparse.ArgumentParser(prog='python -m mformer_jax.convert', description=__doc__.split('\n')[0])
  ap.add_argument('--input', required=True, help='official .pyth/.pth or .npz state dict')
  ap.add_argument('--output', required=True, help='directory for the orbax checkpoint')
  ap.add_argument('--override', default='', help='ModelConfig fields, e.g. num_heads=12,img_size=336')
  ap.add_argument('--export_npz', default='', help='also write the official-format state dict here')
  ap.add_argument('--official_config', default='',
                  help="official YAML config (their configs/); replaces the checkpoint's own cfg")
  args = ap.parse_args(argv)
  try:
    fields = (config_from_official(read_official_config(args.official_config))
              if args.official_config else {})
    overrides = {**fields, **_parse_overrides(args.override)}
    model, variables = load_official(args.input, overrides or None)
  except (CheckpointMismatchError, ImportError, FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  save_params(args.output, variables['params'], model.cfg)
  n = sum(x.size for x in jax.tree.leaves(variables))
  print(f'converted {args.input}: {model.cfg.attention} attention, {model.cfg.num_frames} frames, '
        f'{n / 1e6:.2f}M parameters -> {args.output}')
  if args.export_npz:
    np.savez(args.export_npz, **export_official(variables, model.cfg))
    print(f'exported official state dict -> {args.export_npz}')
  return 0


if __name__ == '__main__':
  sys.exit(main())

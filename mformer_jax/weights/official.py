"""Official Motionformer checkpoints <-> Flax parameters; ImageNet ViT initialisation.

    model, variables = mf.load_official('k400_motionformer_224_16x4.pyth')  # or .npz / a dict
    state_dict = export_official(variables)                                  # exact round trip

`read_official` reads a foreign file or state dict (the model config from its own cfg, an
official YAML config, or its shapes); `weights.load` places it beside the other sources.

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
| blocks_{i}/ls{1,2}/gamma (LayerScale)  | blocks.{i}.ls{1,2}.gamma        | -                        |
| norm/scale, norm/bias                  | norm.weight, norm.bias          | -                        |
| pre_logits/kernel, bias                | pre_logits.fc.weight, .bias     | transpose                |
| head, head0 (verbs), head1 (nouns)     | head.*, head0.*, head1.*        | transpose                |

The table applies to the unstacked layout; every function here accepts and returns the layout
of the config it is given (`model.layout.blocks_layout`).
"""

import json
import os
import re
import zipfile
from typing import Any, Mapping, Optional, Union

import jax
import numpy as np
import yaml
from flax import traverse_util

from mformer_jax.errors import (CheckpointMismatchError, ConfigError, InputError,
                                MissingInputError)
from mformer_jax.model import ModelConfig, Motionformer
from mformer_jax.weights import torch_pickle
from mformer_jax.model.layout import (blocks_layout, check_fit, param_shapes, unscanned,
                                      unstack_blocks)

StateDict = Mapping[str, np.ndarray]


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
  leaf = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'gamma': 'gamma'}[path[-1]]
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


# ----------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------
def read_checkpoint(path: str) -> tuple[dict[str, np.ndarray], Optional[dict]]:
  """(state_dict as numpy, official cfg dict or None) from a .pyth/.pth/.npz file.

  .pyth/.pth: torch.save output, read without torch (`torch_pickle`): a PySlowFast checkpoint
  (its `model_state`, and `cfg` as YAML), a timm/DeiT {'model': state dict}, or a bare state dict.
  """
  if not os.path.exists(path):
    raise MissingInputError(f'checkpoint not found: {path}')
  if path.endswith('.npz'):
    try:
      with np.load(path, allow_pickle=False) as z:
        cfg = json.loads(str(z['meta__json'])).get('cfg') if 'meta__json' in z.files else None
        sd = {k: z[k] for k in z.files if '__' not in k}  # goldens carry io__/inter__/meta__ extras
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
      raise InputError(f'{path}: not a readable .npz state dict ({e})') from e
    return sd, cfg
  ckpt = torch_pickle.load(path)  # InputError naming the file, for anything but a checkpoint
  cfg = None
  if isinstance(ckpt, dict) and 'model_state' in ckpt:
    sd = ckpt['model_state']
    if isinstance(ckpt.get('cfg'), str):
      cfg = yaml.safe_load(ckpt['cfg'])
  elif isinstance(ckpt, dict) and isinstance(ckpt.get('model'), dict):
    sd = ckpt['model']  # timm/DeiT style
  else:
    sd = ckpt
  if not isinstance(sd, dict):
    raise InputError(f'{path} holds a {type(sd).__name__}, not a state dict')
  return {k: v for k, v in sd.items() if isinstance(v, np.ndarray)}, cfg


PREFIXES = ('module.', 'backbone.')  # DDP's and DINO's training wrappers


def strip_prefixes(sd: StateDict) -> dict[str, np.ndarray]:
  """The state dict without its training wrapper's key prefixes."""
  for prefix in PREFIXES:
    sd = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}
  return {k: np.asarray(v) for k, v in sd.items()}


# ----------------------------------------------------------------------------------------------
# Model config from the official yaml cfg or from the state dict's shapes
# ----------------------------------------------------------------------------------------------
def is_official_config(cfg: Mapping[str, Any]) -> bool:
  """True for an official (yacs) cfg, whose keys are upper-case sections (VIT, MODEL, DATA, ...);
  False for ModelConfig fields, which are lower case; a mix of both is an error."""
  upper = [k for k in cfg if isinstance(k, str) and k.isupper()]
  if upper and len(upper) != len(cfg):
    raise ConfigError(f'config mixes official sections {sorted(upper)} with other keys '
                     f'{sorted(set(map(str, cfg)) - set(upper))}; pass one or the other')
  return bool(upper)


def read_official_config(path: Union[str, os.PathLike]) -> dict[str, Any]:
  """The nested dict of an official YAML config (as in the official repository's configs/)."""
  if not os.path.isfile(path):
    raise MissingInputError(f'official config not found: {path}')
  with open(path) as f:
    try:
      cfg = yaml.safe_load(f)
    except yaml.YAMLError as e:  # One line: the problem and where, not PyYAML's excerpt.
      mark = getattr(e, 'problem_mark', None)
      where = f' (line {mark.line + 1}, column {mark.column + 1})' if mark else ''
      raise ConfigError(f'{path} is not valid YAML{where}: {getattr(e, "problem", e)}') from e
  if not isinstance(cfg, dict) or not cfg or not is_official_config(cfg):
    raise ConfigError(f'{path} is not an official Motionformer config (expected upper-case '
                     'sections such as VIT, MODEL, DATA)')
  return cfg


def config_from_official(cfg: Mapping[str, Any]) -> dict[str, Any]:
  """ModelConfig fields from an official (yacs) cfg dict; what a YAML file leaves out takes the
  official defaults (slowfast/config/defaults.py)."""
  vit, data = cfg.get('VIT', {}), cfg.get('DATA', {})
  if vit.get('POS_EMBED', 'separate') != 'separate':
    raise ConfigError(f"POS_EMBED={vit['POS_EMBED']!r} is not supported (no released model uses it)")
  if not vit.get('USE_MLP', False) or vit.get('HEAD_ACT', 'tanh') != 'tanh':
    raise ConfigError('only the released head (pre_logits Linear + tanh) is supported')
  if vit.get('PATCH_SIZE_TEMP', 2) < 2:
    raise ConfigError('PATCH_SIZE_TEMP=1 (2D per-frame embedding) is not supported')
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


def params_from_state_dict(sd: StateDict, cfg: ModelConfig) -> dict:
  """Strict import: every key present, none extra, every shape right, else one error.

  The parameters share memory with `sd` where its dtype is the config's param_dtype (the
  unstacked layout; a stacked one copies)."""
  sd = strip_prefixes(sd)
  paths = param_shapes(unscanned(cfg))
  check_fit({k: v.shape for k, v in sd.items()},
            {official_key(p): _to_official(p, np.zeros(s, np.int8)).shape for p, s in paths.items()},
            'the checkpoint', f' ({cfg.attention}, depth {cfg.depth}, dim {cfg.embed_dim}, '
            f'{cfg.num_frames} frames)')
  # No copy where the dtype already fits: the arrays stay (transposed) views of `sd`, copied
  # once, into the model's layout, when they are placed on a device. A copy here would hold a
  # third instance of the weights beside the state dict and the device's (+1x the model's size
  # in peak memory when loading).
  flat = {p: _to_flax(p, sd[official_key(p)]).astype(cfg.param_dtype, copy=False) for p in paths}
  return blocks_layout(traverse_util.unflatten_dict(flat), cfg)


def export_official(variables) -> dict[str, np.ndarray]:
  """Flax variables (or params) -> official state dict (numpy, PyTorch layouts)."""
  params = variables['params'] if 'params' in variables else variables
  flat = traverse_util.flatten_dict(unstack_blocks(jax.device_get(params)))
  return {official_key(p): np.ascontiguousarray(_to_official(p, np.asarray(v)))
          for p, v in flat.items()}


def read_official(path_or_state_dict: Union[str, StateDict],
                  cfg: Union[None, str, os.PathLike, ModelConfig, Mapping[str, Any]] = None):
  """(model, {'params': numpy}) of an official file or state dict (cfg as `load_official`'s):
  the reader of foreign files behind `weights.load`, for weight surgery too."""
  file_cfg = None
  if isinstance(path_or_state_dict, (str, os.PathLike)):
    sd, file_cfg = read_checkpoint(os.fspath(path_or_state_dict))
  else:
    sd = strip_prefixes(path_or_state_dict)
  if isinstance(cfg, (str, os.PathLike)):
    cfg = read_official_config(cfg)
  if isinstance(cfg, ModelConfig):
    model_cfg = cfg
  elif cfg is not None and is_official_config(cfg):
    model_cfg = ModelConfig.from_config(config_from_official(cfg))
  else:
    fields = config_from_official(file_cfg) if file_cfg else config_from_state_dict(strip_prefixes(sd))
    model_cfg = ModelConfig.from_config({**fields, **(cfg or {})})
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
  vit_sd = read_checkpoint(vit)[0] if isinstance(vit, (str, os.PathLike)) else strip_prefixes(vit)
  vit_sd = dict(vit_sd)
  if 'patch_embed.proj.weight' in vit_sd:  # timm _conv_filter: (D, 3*p*p) -> (D, 3, p, p)
    w = vit_sd['patch_embed.proj.weight']
    p = cfg.patch_size
    vit_sd['patch_embed.proj.weight'] = w.reshape(w.shape[0], 3, p, p)
  ours = export_official(variables)
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

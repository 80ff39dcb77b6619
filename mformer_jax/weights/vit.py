"""timm-format image ViT state dicts (timm's VisionTransformer, DINO's vision_transformer.py,
DINOv2's ViT-S/B/L/14 without registers) as the one-frame Motionformer: the image-ViT rows of
appendix Tables 1 and 2, and DINOv2 under the same protocols.

The architecture is read from the tensor shapes (`vit_config`); `load_timm_vit` builds the model
and loads every ViT tensor into it, the classifier ignored. DINOv2 is told by its LayerScale
(`blocks.i.ls1/ls2.gamma`, `ModelConfig.layer_scale`) and its `mask_token` (only its masked-image
training reads it: ignored).
"""
import os
import re

import jax

from mformer_jax.model import init_variables, make_model
from mformer_jax.weights import official
from mformer_jax.errors import CheckpointMismatchError

# What makes a model an image ViT: one frame in one-frame tubelets, joint attention (over one
# frame, plain ViT self-attention).
IMAGE_VIT = dict(num_frames=1, tubelet_size=1, attention='joint', approx='none')

VIT_KEYS = ('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias',
            'norm.weight', 'norm.bias')


VIT_BLOCK_KEYS = ('norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.proj.weight',
                  'attn.proj.bias', 'norm2.weight', 'norm2.bias', 'mlp.fc1.weight',
                  'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias')


VIT_OPTIONAL_BLOCK_KEYS = ('attn.qkv.bias',)


LAYER_SCALE_KEYS = ('ls1.gamma', 'ls2.gamma')  # in every block or in none


# Read and not used: the classifier (patch tokens are read after the final norm, before any of
# it) and DINOv2's mask token (it replaces masked patches in training only).
VIT_UNUSED = ('head.', 'head_dist.', 'fc_norm.', 'pre_logits.', 'mask_token')


def _unchunked(sd):
  """DINOv2 built with block_chunks > 0 keys its blocks `blocks.<chunk>.<i>.`, i counted over
  all blocks: the same tensors as `blocks.<i>.`."""
  return {re.sub(r'^blocks\.\d+\.(\d+)\.', r'blocks.\1.', k): v for k, v in sd.items()}


def _few(keys, n=6):
  keys = sorted(keys)
  return ', '.join(keys[:n]) + (f' (+{len(keys) - n} more)' if len(keys) > n else '')


def vit_config(sd, *, num_heads=0):
  """ModelConfig fields of the one-frame model for a timm-format ViT state dict.

  Embed dim from cls_token, depth from the block indices, patch size from the kernel, position
  grid from pos_embed, MLP ratio from fc1, qkv bias and LayerScale from their presence. The
  shapes do not show the head count: `num_heads`, else the ViT convention embed dim / 64 (right
  for DINO's and DINOv2's S, B and L). A file that is no such ViT raises
  CheckpointMismatchError naming the missing and the unsupported keys."""
  sd = _unchunked(sd)
  registers = [k for k in ('register_tokens', 'reg_token') if k in sd]  # DINOv2's, timm's name
  if registers:
    raise CheckpointMismatchError(
        f'a ViT with {sd[registers[0]].shape[1]} register tokens ({registers[0]}; DINOv2\'s '
        '*_reg models): registers are not supported; use the model without them (dinov2_vits14 '
        'for dinov2_vits14_reg)')
  depth = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r'blocks\.(\d+)\.', k))),
                  default=0)
  layer_scale = 'blocks.0.ls1.gamma' in sd
  block = [f'blocks.{i}.{k}' for i in range(depth)
           for k in VIT_BLOCK_KEYS + (LAYER_SCALE_KEYS if layer_scale else ())]
  optional = {f'blocks.{i}.{k}' for i in range(depth) for k in VIT_OPTIONAL_BLOCK_KEYS}
  known = set(VIT_KEYS) | set(block) | optional
  missing = [k for k in list(VIT_KEYS) + block if k not in sd]
  unsupported = [k for k in sd if k not in known and not k.startswith(VIT_UNUSED)]
  if missing or unsupported:
    why = [f'missing {_few(missing)}'] if missing else []
    if unsupported:
      why.append(f'unsupported {_few(unsupported)}')
    hint = ''
    if 'temp_embed' in sd:
      hint = ' (a Motionformer checkpoint: pass it as --checkpoint)'
    elif any('.mlp.w12.' in k for k in sd):
      hint = " (DINOv2 ViT-g's SwiGLU MLP is not supported)"
    elif any('gamma_1' in k for k in sd):
      hint = ' (LayerScale as gamma_1/gamma_2 (DeiT III, BEiT) is not supported; ls1/ls2.gamma is)'
    elif not sd:
      hint = ' (no tensors at the top level; a DINO training checkpoint holds the backbone ' \
             'under "teacher")'
    raise CheckpointMismatchError(
        f'not a timm ViT state dict: {"; ".join(why)}{hint}')
  d = sd['cls_token'].shape[-1]
  kernel = sd['patch_embed.proj.weight']
  patch = kernel.shape[-1] if kernel.ndim == 4 else int(round((kernel.shape[-1] / 3) ** 0.5))
  tokens = sd['pos_embed'].shape[1] - 1
  grid = int(round(tokens ** 0.5))
  if grid * grid != tokens or kernel.shape[0] != d or patch * patch * 3 != kernel[0].size:
    raise CheckpointMismatchError(
        f'not a timm ViT state dict: pos_embed {tuple(sd["pos_embed"].shape)} is not cls + a '
        f'square grid, or patch_embed.proj.weight {tuple(kernel.shape)} is not (D, 3, p, p)')
  heads = num_heads or max(d // 64, 1)
  if d % heads:
    raise CheckpointMismatchError(f'embed dim {d} is not divisible into {heads} heads')
  return dict(IMAGE_VIT, embed_dim=d, depth=depth, num_heads=heads, patch_size=patch,
              pretrain_img_size=grid * patch, img_size=grid * patch,
              mlp_ratio=sd['blocks.0.mlp.fc1.weight'].shape[0] / d,
              qkv_bias='blocks.0.attn.qkv.bias' in sd, num_classes=1, drop_path=0.0,
              layer_scale=1.0 if layer_scale else 0.0, pos_embed_resize='dino')


def load_timm_vit(vit, *, num_heads=0, overrides=None, log=print):
  """(model, variables): the one-frame model holding a timm-format ViT (.pth/.npz path or a
  state dict), every ViT tensor loaded (`official.init_from_imagenet`), the classifier ignored.

  The position table is resized by DINO's rule (`pos_embed_resize='dino'`): DINO's code is what
  ran the image ViTs of appendix Table 2, and DINOv2 without registers resizes by the same rule
  (posembed.py); `overrides` may say otherwise."""
  sd = _unchunked(official.strip_prefixes(official.read_checkpoint(str(vit))[0]
                                          if isinstance(vit, (str, os.PathLike)) else vit))
  fields = dict(vit_config(sd, num_heads=num_heads), **(overrides or {}))
  model = make_model(dict(fields, scan_blocks=False))
  variables = init_variables(model, jax.random.key(0))
  variables, report = official.init_from_imagenet(variables, sd, model.cfg, log=lambda _: None)
  vit_keys = [k for k in sd if not k.startswith(VIT_UNUSED)]
  unloaded = sorted(set(vit_keys) - set(report['loaded']))
  if unloaded:  # present but mis-shaped for the architecture the shapes gave
    raise CheckpointMismatchError(
        f'ViT tensors of unexpected shape: {_few(unloaded)} (embed dim {fields["embed_dim"]})')
  c = model.cfg
  log(f'image ViT{" (LayerScale: DINOv2)" if c.layer_scale else ""}: dim {c.embed_dim}, '
      f'depth {c.depth}, {c.num_heads} heads, patch {c.patch_size}, '
      f'{c.pretrain_img_size // c.patch_size}x{c.pretrain_img_size // c.patch_size} position grid; '
      f'{len(report["loaded"])} tensors loaded, ignored: {_few(report["ignored"]) or "none"}')
  return model, variables

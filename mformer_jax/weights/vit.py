"""timm-format image ViT state dicts (timm's VisionTransformer, DINO's vision_transformer.py) as
the one-frame Motionformer: the image-ViT rows of appendix Tables 1 and 2.

The architecture is read from the tensor shapes (`vit_config`); `load_timm_vit` builds the model
and loads every ViT tensor into it, the classifier ignored.
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


# The classifier: patch tokens are read after the final norm, before any of it.
VIT_CLASSIFIER = ('head.', 'head_dist.', 'fc_norm.', 'pre_logits.')


def _few(keys, n=6):
  keys = sorted(keys)
  return ', '.join(keys[:n]) + (f' (+{len(keys) - n} more)' if len(keys) > n else '')


def vit_config(sd, *, num_heads=0):
  """ModelConfig fields of the one-frame model for a timm-format ViT state dict.

  Embed dim from cls_token, depth from the block indices, patch size from the kernel, position
  grid from pos_embed, MLP ratio from fc1, qkv bias from its presence. The shapes do not show
  the head count: `num_heads`, else the ViT convention embed dim / 64. A file that is no such
  ViT raises CheckpointMismatchError naming the missing and the unsupported keys."""
  depth = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r'blocks\.(\d+)\.', k))),
                  default=0)
  block = [f'blocks.{i}.{k}' for i in range(depth) for k in VIT_BLOCK_KEYS]
  optional = {f'blocks.{i}.{k}' for i in range(depth) for k in VIT_OPTIONAL_BLOCK_KEYS}
  known = set(VIT_KEYS) | set(block) | optional
  missing = [k for k in list(VIT_KEYS) + block if k not in sd]
  unsupported = [k for k in sd if k not in known and not k.startswith(VIT_CLASSIFIER)]
  if missing or unsupported:
    why = [f'missing {_few(missing)}'] if missing else []
    if unsupported:
      why.append(f'unsupported {_few(unsupported)}')
    hint = ''
    if 'temp_embed' in sd:
      hint = ' (a Motionformer checkpoint: pass it as --checkpoint)'
    elif any('.ls1.' in k or 'gamma_1' in k for k in sd):
      hint = ' (LayerScale ViTs are not supported)'
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
              pos_embed_resize='dino')


def load_timm_vit(vit, *, num_heads=0, overrides=None, log=print):
  """(model, variables): the one-frame model holding a timm-format ViT (.pth/.npz path or a
  state dict), every ViT tensor loaded (`official.init_from_imagenet`), the classifier ignored.

  The position table is resized by DINO's rule (`pos_embed_resize='dino'`): DINO's code is what
  ran the image ViTs of appendix Table 2; `overrides` may say otherwise."""
  sd = official.strip_prefixes(official.read_checkpoint(str(vit))[0]
                               if isinstance(vit, (str, os.PathLike)) else vit)
  fields = dict(vit_config(sd, num_heads=num_heads), **(overrides or {}))
  model = make_model(dict(fields, scan_blocks=False))
  variables = init_variables(model, jax.random.key(0))
  variables, report = official.init_from_imagenet(variables, sd, model.cfg, log=lambda _: None)
  vit_keys = [k for k in sd if not k.startswith(VIT_CLASSIFIER)]
  unloaded = sorted(set(vit_keys) - set(report['loaded']))
  if unloaded:  # present but mis-shaped for the architecture the shapes gave
    raise CheckpointMismatchError(
        f'ViT tensors of unexpected shape: {_few(unloaded)} (embed dim {fields["embed_dim"]})')
  c = model.cfg
  log(f'image ViT: dim {c.embed_dim}, depth {c.depth}, {c.num_heads} heads, patch {c.patch_size}, '
      f'{c.pretrain_img_size // c.patch_size}x{c.pretrain_img_size // c.patch_size} position grid; '
      f'{len(report["loaded"])} tensors loaded, ignored: {_few(report["ignored"]) or "none"}')
  return model, variables

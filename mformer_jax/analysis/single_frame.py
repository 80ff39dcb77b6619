r"""The single-frame model of appendix Table 1: an image ViT on one frame of the clip.

`single_frame(config)` turns any experiment config into its one-frame twin: the data pipeline
samples the clip's window exactly as the video model's (data.num_frames x sampling_rate, or the
SSv2 segments) and keeps ONE frame of it (data.single_frame: a random one in training; at test
the middle frame of each view, so K400's 10 x 3 views see 10 different frames). The model is then
exactly an image ViT (num_frames = tubelet_size = 1, attention 'joint', which over one frame is
plain ViT self-attention), so a timm ViT-B/16 loads into it tensor for tensor: the tubelet kernel
is the 2D patch kernel itself (no inflation), and only temp_embed (zeros: one slot adds nothing),
pre_logits and the head are new.

  python -m mformer_jax.main --config=configs/single_frame.py:k400 --workdir=/tmp/k400_1frame \
      --config.data.data_dir=/data/k400_prepared --config.init.imagenet=jx_vit_base_p16_224.pth

Table 1 (top-1 with 1 frame, with 8 frames, difference) from evaluated workdirs; several seeds
comma-separated give the mean and [min, max] (the difference: of the means):

  python -m mformer_jax.analysis.single_frame ONE_FRAME_WORKDIR[,...] MULTI_FRAME_WORKDIR[,...]

`load_timm_vit(path)` builds the same one-frame model around a timm-format ViT state dict (DINO's
or a supervised one), its architecture read from the tensor shapes: the image-ViT rows of
appendix Table 2 (`analysis/davis.py --vit`).
"""
import argparse
import os
import re

from mformer_jax import errors
from mformer_jax.analysis import class_deltas

# What makes a model an image ViT: one frame in one-frame tubelets, joint attention (over one
# frame, plain ViT self-attention).
IMAGE_VIT = dict(num_frames=1, tubelet_size=1, attention='joint', approx='none')


def single_frame(config):
  """The one-frame twin of an experiment config (modified in place and returned)."""
  config.experiment = f'{config.experiment}_single_frame'
  config.data.single_frame = True
  config.model.update(IMAGE_VIT)
  return config


# ---------------------------------------------------------------------------------------------
# timm-format ViT state dicts (timm's VisionTransformer, DINO's vision_transformer.py).

VIT_KEYS = ('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias',
            'norm.weight', 'norm.bias')
VIT_BLOCK_KEYS = ('norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.proj.weight',
                  'attn.proj.bias', 'norm2.weight', 'norm2.bias', 'mlp.fc1.weight',
                  'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias')
VIT_OPTIONAL_BLOCK_KEYS = ('attn.qkv.bias',)
# The classifier: patch tokens are read after the final norm, before any of it.
VIT_CLASSIFIER = ('head.', 'head_dist.', 'fc_norm.', 'pre_logits.')
_PREFIXES = ('module.', 'backbone.')  # DDP and DINO's training wrapper


def _few(keys, n=6):
  keys = sorted(keys)
  return ', '.join(keys[:n]) + (f' (+{len(keys) - n} more)' if len(keys) > n else '')


def vit_config(sd, *, num_heads=0):
  """ModelConfig fields of the one-frame model for a timm-format ViT state dict.

  Embed dim from cls_token, depth from the block indices, patch size from the kernel, position
  grid from pos_embed, MLP ratio from fc1, qkv bias from its presence. The shapes do not show
  the head count: `num_heads`, else the ViT convention embed dim / 64. A file that is no such
  ViT raises convert.CheckpointMismatchError naming the missing and the unsupported keys."""
  from mformer_jax import convert  # pylint: disable=g-import-not-at-top
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
    raise convert.CheckpointMismatchError(
        f'not a timm ViT state dict: {"; ".join(why)}{hint}')
  d = sd['cls_token'].shape[-1]
  kernel = sd['patch_embed.proj.weight']
  patch = kernel.shape[-1] if kernel.ndim == 4 else int(round((kernel.shape[-1] / 3) ** 0.5))
  tokens = sd['pos_embed'].shape[1] - 1
  grid = int(round(tokens ** 0.5))
  if grid * grid != tokens or kernel.shape[0] != d or patch * patch * 3 != kernel[0].size:
    raise convert.CheckpointMismatchError(
        f'not a timm ViT state dict: pos_embed {tuple(sd["pos_embed"].shape)} is not cls + a '
        f'square grid, or patch_embed.proj.weight {tuple(kernel.shape)} is not (D, 3, p, p)')
  heads = num_heads or max(d // 64, 1)
  if d % heads:
    raise convert.CheckpointMismatchError(f'embed dim {d} is not divisible into {heads} heads')
  return dict(IMAGE_VIT, embed_dim=d, depth=depth, num_heads=heads, patch_size=patch,
              pretrain_img_size=grid * patch, img_size=grid * patch,
              mlp_ratio=sd['blocks.0.mlp.fc1.weight'].shape[0] / d,
              qkv_bias='blocks.0.attn.qkv.bias' in sd, num_classes=1, drop_path=0.0,
              pos_embed_resize='dino')


def load_timm_vit(vit, *, num_heads=0, overrides=None, log=print):
  """(model, variables): the one-frame model holding a timm-format ViT (.pth/.npz path or a
  state dict), every ViT tensor loaded (`convert.init_from_imagenet`), the classifier ignored.

  The position table is resized by DINO's rule (`pos_embed_resize='dino'`): DINO's code is what
  ran the image ViTs of appendix Table 2; `overrides` may say otherwise."""
  import jax  # pylint: disable=g-import-not-at-top
  from mformer_jax import convert, model as model_lib  # pylint: disable=g-import-not-at-top
  if isinstance(vit, (str, os.PathLike)):
    sd = convert.read_checkpoint(str(vit))[0]
  else:
    sd = dict(vit)
  for prefix in _PREFIXES:
    sd = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}
  fields = dict(vit_config(sd, num_heads=num_heads), **(overrides or {}))
  model = model_lib.make_model(dict(fields, scan_blocks=False))
  variables = model_lib.init_variables(model, jax.random.key(0))
  variables, report = convert.init_from_imagenet(variables, sd, model.cfg, log=lambda _: None)
  vit_keys = [k for k in sd if not k.startswith(VIT_CLASSIFIER)]
  unloaded = sorted(set(vit_keys) - set(report['loaded']))
  if unloaded:  # present but mis-shaped for the architecture the shapes gave
    raise convert.CheckpointMismatchError(
        f'ViT tensors of unexpected shape: {_few(unloaded)} (embed dim {fields["embed_dim"]})')
  c = model.cfg
  log(f'image ViT: dim {c.embed_dim}, depth {c.depth}, {c.num_heads} heads, patch {c.patch_size}, '
      f'{c.pretrain_img_size // c.patch_size}x{c.pretrain_img_size // c.patch_size} position grid; '
      f'{len(report["loaded"])} tensors loaded, ignored: {_few(report["ignored"]) or "none"}')
  return model, variables


def top1(run, metric='top1') -> float:
  """The metric of a run's latest evaluation report (workdir, report folder or metrics.json)."""
  path, report = class_deltas.read_report(run)
  if metric not in report:
    raise class_deltas.ReportError(f'{path} has no {metric!r} (has {sorted(report)[:8]})')
  return float(report[metric])


def _cell(values) -> str:
  mean = sum(values) / len(values)
  spread = f' [{100 * min(values):.1f}, {100 * max(values):.1f}]' if len(values) > 1 else ''
  return f'{100 * mean:.1f}{spread}'


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m mformer_jax.analysis.single_frame',
                              description='Table 1: top-1 of 1-frame and multi-frame runs.')
  p.add_argument('one_frame', help='workdir(s), comma-separated seeds')
  p.add_argument('multi_frame', help='workdir(s), comma-separated seeds')
  p.add_argument('--metric', default='top1')
  args = p.parse_args(argv)
  try:
    one = [top1(r, args.metric) for r in args.one_frame.split(',')]
    multi = [top1(r, args.metric) for r in args.multi_frame.split(',')]
  except errors.UserError as e:
    errors.exit_with(e)
  diff = sum(multi) / len(multi) - sum(one) / len(one)
  print(f'| {args.metric}, 1 frame | {args.metric}, multi-frame | difference | seeds |\n'
        f'| --- | --- | --- | --- |\n'
        f'| {_cell(one)} | {_cell(multi)} | {100 * diff:.1f} | {len(one)} / {len(multi)} |')
  return one, multi


if __name__ == '__main__':
  main()

"""Reference values of a tiny DINOv2-shaped ViT, for tests/test_dinov2.py.

Run OUTSIDE the project venv (torch is not a project dependency):
  python3.11 -m venv /tmp/venv_ref && /tmp/venv_ref/bin/pip install torch==2.13.0 numpy
  /tmp/venv_ref/bin/python tests/data/make_dinov2_reference.py tests/data/dinov2_reference.npz \
      [DINOV2_SRC]

The forward below is written here from DINOv2's published architecture (facebookresearch/dinov2,
`DinoVisionTransformer.forward_features` as its hub models build it: patch 14, LayerScale on both
residual branches, LayerNorm eps 1e-6, a learned cls token, a `mask_token` that only masked
training reads, no registers) and its position rule: the (M, M) table goes through torch's
`F.interpolate(mode='bicubic', antialias=False)` with scale factors ((Hp + 0.1) / M,
(Wp + 0.1) / M), in float32 whatever the model's dtype, and is used as it is when the patch
count is M * M and the image is square. The rest runs in float64. DINOV2_SRC, optional: a folder holding the `dinov2` package (a checkout of
facebookresearch/dinov2); given, DINOv2's own `DinoVisionTransformer` is built with the hub's
settings, loads the same state dict and must give the same `x_norm_patchtokens` and
`x_norm_clstoken` (to 1e-12) in every case, so the arrays are DINOv2's own forward's. The
committed file was made with it (torch 2.13.0+cpu, dinov2 at b8931f7; no xFormers: its plain
attention ran).

Writes:
  sd/<key>          the state dict, DINOv2's key names and order (dim 24, depth 2, 2 heads, MLP
                    ratio 4, qkv bias, a 4x4 position grid + cls, i.e. 56 px), float32 values
                    drawn from numpy (seed 14) so that no norm, bias or LayerScale gamma sits at
                    its init value.
  frames/<case>     (1, H, W, 3) uint8; native = 56x56 (the table's own grid), wide = 42x84
                    (a 3x6 grid: rows shrink, columns grow).
  patch/<case>      x_norm_patchtokens (1, Hp * Wp, 24) of the frames over 255 normalised by the
                    ImageNet mean and std, float64.
  cls/<case>        x_norm_clstoken (1, 24), float64.
  posembed/table    a (37, 37, 1) float64 table (the released models' 518-px grid);
  posembed/dinov2_34x60  its resize by the rule above to DAVIS's 480p frames under the DINO
                    protocol (476 x 840 px, patch 14), in float64.
"""
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
PATCH, DIM, DEPTH, HEADS, GRID = 14, 24, 2, 2, 4
OFFSET = 0.1  # the hub's interpolate_offset for the models without registers
rng = np.random.default_rng(14)


def state_dict():
  """Random values in DINOv2's key order and shapes."""
  def w(*shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (rng.standard_normal(shape) * (scale or 1 / math.sqrt(fan_in))).astype(np.float32)

  one = lambda n: (1 + 0.1 * rng.standard_normal(n)).astype(np.float32)
  sd = {'cls_token': w(1, 1, DIM, scale=0.5), 'pos_embed': w(1, 1 + GRID * GRID, DIM, scale=0.5),
        'mask_token': w(1, DIM, scale=0.5), 'patch_embed.proj.weight': w(DIM, 3, PATCH, PATCH),
        'patch_embed.proj.bias': w(DIM, scale=0.1)}
  for i in range(DEPTH):
    b = f'blocks.{i}.'
    sd.update({b + 'norm1.weight': one(DIM), b + 'norm1.bias': w(DIM, scale=0.1),
               b + 'attn.qkv.weight': w(3 * DIM, DIM), b + 'attn.qkv.bias': w(3 * DIM, scale=0.1),
               b + 'attn.proj.weight': w(DIM, DIM), b + 'attn.proj.bias': w(DIM, scale=0.1),
               b + 'ls1.gamma': (0.5 + rng.uniform(size=DIM)).astype(np.float32),
               b + 'norm2.weight': one(DIM), b + 'norm2.bias': w(DIM, scale=0.1),
               b + 'mlp.fc1.weight': w(4 * DIM, DIM), b + 'mlp.fc1.bias': w(4 * DIM, scale=0.1),
               b + 'mlp.fc2.weight': w(DIM, 4 * DIM), b + 'mlp.fc2.bias': w(DIM, scale=0.1),
               b + 'ls2.gamma': (0.5 + rng.uniform(size=DIM)).astype(np.float32)})
  sd.update({'norm.weight': one(DIM), 'norm.bias': w(DIM, scale=0.1)})
  return sd


def resize_table(table, hp, wp):
  """(1, M*M, D) -> (1, hp*wp, D) by DINOv2's call to torch's bicubic interpolation."""
  m = int(math.isqrt(table.shape[1]))
  grid = table.reshape(1, m, m, -1).permute(0, 3, 1, 2)
  out = F.interpolate(grid, scale_factor=((hp + OFFSET) / m, (wp + OFFSET) / m), mode='bicubic',
                      antialias=False)
  assert out.shape[-2:] == (hp, wp), out.shape
  return out.permute(0, 2, 3, 1).reshape(1, hp * wp, -1)


def layer_norm(x, sd, name):
  return F.layer_norm(x, x.shape[-1:], sd[name + '.weight'], sd[name + '.bias'], eps=1e-6)


def forward_features(sd, x):
  """x (B, 3, H, W) float64 -> (x_norm_patchtokens, x_norm_clstoken)."""
  b, _, h, w = x.shape
  hp, wp = h // PATCH, w // PATCH
  tokens = F.conv2d(x, sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'], stride=PATCH)
  tokens = tokens.flatten(2).transpose(1, 2)
  x = torch.cat([sd['cls_token'].expand(b, -1, -1), tokens], 1)
  pos = sd['pos_embed']
  if not (hp * wp == pos.shape[1] - 1 and h == w):
    pos = torch.cat([pos[:, :1], resize_table(pos[:, 1:].float(), hp, wp).to(pos.dtype)], 1)
  x = x + pos
  for i in range(DEPTH):
    p = lambda k, i=i: sd[f'blocks.{i}.{k}']
    y = layer_norm(x, sd, f'blocks.{i}.norm1')
    qkv = F.linear(y, p('attn.qkv.weight'), p('attn.qkv.bias'))
    q, k, v = qkv.reshape(b, -1, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
    att = torch.softmax(q @ k.transpose(-1, -2) * (DIM // HEADS) ** -0.5, -1)
    y = (att @ v).transpose(1, 2).reshape(b, -1, DIM)
    x = x + p('ls1.gamma') * F.linear(y, p('attn.proj.weight'), p('attn.proj.bias'))
    y = F.gelu(F.linear(layer_norm(x, sd, f'blocks.{i}.norm2'), p('mlp.fc1.weight'),
                        p('mlp.fc1.bias')))
    x = x + p('ls2.gamma') * F.linear(y, p('mlp.fc2.weight'), p('mlp.fc2.bias'))
  x = layer_norm(x, sd, 'norm')
  return x[:, 1:], x[:, 0]


def dinov2_own(src, sd64):
  """DINOv2's DinoVisionTransformer as its hub builds a model without registers."""
  sys.path.insert(0, src)
  from dinov2.models.vision_transformer import DinoVisionTransformer  # pylint: disable=g-import-not-at-top
  from dinov2.layers import MemEffAttention, NestedTensorBlock  # pylint: disable=g-import-not-at-top
  import functools  # pylint: disable=g-import-not-at-top
  model = DinoVisionTransformer(
      img_size=GRID * PATCH, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
      mlp_ratio=4, init_values=1.0, ffn_layer='mlp', block_chunks=0, num_register_tokens=0,
      interpolate_antialias=False, interpolate_offset=OFFSET,
      block_fn=functools.partial(NestedTensorBlock, attn_class=MemEffAttention))
  assert list(model.state_dict()) == list(sd64), 'key names or order differ from DINOv2'
  model.load_state_dict(sd64, strict=True)
  return model.double().eval()


def main(out_path, src=None):
  sd = state_dict()
  sd64 = {k: torch.from_numpy(v.astype(np.float64)) for k, v in sd.items()}
  own = dinov2_own(src, sd64) if src else None
  out = {f'sd/{k}': v for k, v in sd.items()}
  for case, (h, w) in {'native': (GRID * PATCH,) * 2, 'wide': (3 * PATCH, 6 * PATCH)}.items():
    frames = rng.integers(0, 256, (1, h, w, 3)).astype(np.uint8)
    x = torch.from_numpy(((frames / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2))
    with torch.no_grad():
      patch, cls = forward_features(sd64, x)
      if own is not None:
        theirs = own.forward_features(x)
        for mine, key in ((patch, 'x_norm_patchtokens'), (cls, 'x_norm_clstoken')):
          err = float((mine - theirs[key]).abs().max())
          assert err < 1e-12, (case, key, err)
          print(f'{case}: DINOv2 forward_features {key} agrees, max |diff| {err:.1e}')
    out[f'frames/{case}'], out[f'patch/{case}'], out[f'cls/{case}'] = (
        frames, patch.numpy(), cls.numpy())
  table = rng.standard_normal((37, 37, 1))
  out['posembed/table'] = table
  out['posembed/dinov2_34x60'] = resize_table(
      torch.from_numpy(table.reshape(1, -1, 1)), 34, 60)[0].numpy().reshape(34, 60, 1)
  np.savez_compressed(out_path, **out)
  print({k: v.shape for k, v in out.items() if not k.startswith('sd/')}, f'{len(sd)} tensors',
        f'torch {torch.__version__}', 'checked against DINOv2' if own else '')


if __name__ == '__main__':
  main(*sys.argv[1:])

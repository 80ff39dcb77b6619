"""Motionformer (ViT-B video transformer with trajectory attention) in Flax linen.

    model = Motionformer(ModelConfig(...))
    logits = model.apply(variables, clip, train=False)   # clip: (B, T, H, W, 3) in [-1, 1]

Returns logits (not the softmax the official eval forward returns); Epic-Kitchens models return
{'verb': (B, 97), 'noun': (B, 300)} (`ModelConfig.heads` decides). Parameter names mirror the
official state dict (the table: `weights/official.py`).
"""
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jax.sharding import PartitionSpec as P

from mformer_jax.model import attention, fast_attention, posembed, remat
from mformer_jax.model.attention import Dense
from mformer_jax.errors import ConfigError

ATTENTIONS = ('trajectory', 'joint', 'divided', 'space')
APPROXIMATIONS = ('none', 'orthoformer', 'nystrom', 'performer')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float64': jnp.float64}
# Classifier heads by output name -> official parameter name. A single-head model's output is
# called 'label' (its batch key and report name); Epic-Kitchens models have a verb and a noun head.
HEAD_PARAMS = {'label': 'head', 'verb': 'head0', 'noun': 'head1'}


def head_prefix(head: str) -> str:
  """Metric-name prefix of a head: '' for the single head (top1, accuracy), 'verb_' etc."""
  return '' if head == 'label' else f'{head}_'


def outputs_by_head(out) -> dict:
  """The model's output as {head: logits} whatever the number of heads."""
  return out if isinstance(out, dict) else {'label': out}


REMAT_POLICIES = {
    'none': None,
    'full': jax.checkpoint_policies.nothing_saveable,
    'dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    'tied': None,  # like 'full', scheduled so that it saves memory on XLA:CPU too (remat.py)
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything the model needs; built once from `config.model` by `from_config`."""
  num_classes: int = 400
  epic_kitchens: bool = False        # two heads: head0 = verbs, head1 = nouns
  num_verbs: int = 97
  num_nouns: int = 300
  num_frames: int = 16               # input frames T; T' = T / tubelet_size token slots
  img_size: int = 224                # crop size (the model itself works from the input shape)
  patch_size: int = 16
  tubelet_size: int = 2
  pretrain_img_size: int = 224       # pos_embed is always sized for this grid (official quirk)
  pos_embed_resize: str = 'official'  # official | dino: resize rule of pos_embed (posembed.py)
  embed_dim: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  layer_scale: float = 0.0           # LayerScale's init value (DINOv2: ls1/ls2.gamma); 0 = none
  attention: str = 'trajectory'      # trajectory | joint | divided | space (single-frame study)
  trajectory_values: str = 'original'  # original (released ckpts) | projected (paper eq. 6)
  approx: str = 'none'               # none | orthoformer | nystrom | performer
  num_landmarks: int = 128
  nystrom_iters: int = 6
  performer_features: int = 256
  dropout: float = 0.0
  attn_dropout: float = 0.0
  drop_path: float = 0.2
  head_dropout: float = 0.0
  dtype: str = 'float32'             # compute dtype; params are float32 (float64 for x64 checks)
  remat: str = 'none'                # none | full | dots | tied: recompute per block (remat.py)
  trajectory_impl: str = 'auto'      # auto | einsum (reference) | frames | chunked (exact, lean)
  query_chunk: int = 0               # chunked: queries per chunk (0 = one frame)
  attention_backend: str = 'xla'     # frames: dot_product_attention impl, xla | cudnn | auto
  scan_blocks: bool = False          # one lax.scan over the blocks; params['blocks'] stacked

  def __post_init__(self):
    checks = [('attention', ATTENTIONS), ('approx', APPROXIMATIONS), ('dtype', tuple(DTYPES)),
              ('trajectory_values', ('original', 'projected')), ('remat', tuple(REMAT_POLICIES)),
              ('trajectory_impl', ('auto', *fast_attention.IMPLS)),
              ('attention_backend', fast_attention.BACKENDS),
              ('pos_embed_resize', posembed.RULES)]
    for field, allowed in checks:
      if getattr(self, field) not in allowed:
        raise ConfigError(f'model.{field}={getattr(self, field)!r}; expected one of {allowed}')
    if self.num_frames % self.tubelet_size:
      raise ConfigError(f'num_frames={self.num_frames} is not a multiple of tubelet_size')
    if self.approx != 'none' and self.attention != 'trajectory':
      raise ConfigError('approx applies to trajectory attention only')
    if self.trajectory_impl not in ('auto', 'einsum') and self.attn_dropout:
      raise ConfigError(f'trajectory_impl={self.trajectory_impl!r} has no attention dropout')
    if self.query_chunk < 0:
      raise ConfigError(f'query_chunk={self.query_chunk} must be >= 0 (0 = one frame)')
    if self.layer_scale < 0:
      raise ConfigError(f'layer_scale={self.layer_scale} must be >= 0 (0 = no LayerScale)')

  @property
  def temporal_slots(self) -> int:
    """F = T / tubelet_size token slots in time."""
    return self.num_frames // self.tubelet_size

  @property
  def trajectory_kernel(self) -> str:
    """The trajectory attention implementation that runs: `trajectory_impl`, where 'auto' (the
    default, kept as such in configs so that a later attn_dropout override still works) is
    'chunked' wherever that computes exactly what the einsum reference does (trajectory
    attention without attention dropout; values and gradients, tests/test_fast_attention.py),
    and 'einsum' otherwise."""
    if self.trajectory_impl != 'auto':
      return self.trajectory_impl
    return 'chunked' if self.attention == 'trajectory' and not self.attn_dropout else 'einsum'

  @property
  def heads(self) -> dict[str, int]:
    """{output name: classes}: {'label': C}, or Epic-Kitchens' {'verb': V, 'noun': N}. The
    pipeline's label keys, the loss, the evaluator and predict all follow this."""
    if self.epic_kitchens:
      return {'verb': self.num_verbs, 'noun': self.num_nouns}
    return {'label': self.num_classes}

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]

  @property
  def param_dtype(self):
    return jnp.float64 if self.dtype == 'float64' else jnp.float32

  @classmethod
  def from_config(cls, cfg) -> 'ModelConfig':
    """From a dict / ConfigDict; unknown keys are an error naming them."""
    cfg = dict(cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg)
    unknown = sorted(set(cfg) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ConfigError(f'unknown model config keys: {unknown}')
    return cls(**cfg)


def split_batch(x):
  """`x` (batch first) kept split over the mesh axis 'data' like the batch, inside a step traced
  under `jax.sharding.use_abstract_mesh(mesh.abstract_mesh)` (the trainer's and evaluator's);
  unchanged elsewhere (one device, tests, analysis). Why: with FSDP the partitioner otherwise
  carries a split parameter's layout onto the activations and moves the whole global batch
  between chips at every layer (mformer_jax.plan showed it: benchmarks/results/tpu-compile/
  plan.md, FSDP); pinned, it gathers the parameters instead, as FSDP means to."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or 'data' not in mesh.axis_names:
    return x
  return jax.lax.with_sharding_constraint(x, P('data'))


class DropPath(nn.Module):
  """Per-sample stochastic depth, scaled by 1/keep (timm semantics)."""
  rate: float

  @nn.compact
  def __call__(self, x, *, train: bool):
    if not train or (isinstance(self.rate, float) and self.rate == 0.0):
      return x  # (under scan_blocks the rate is a traced per-layer value)
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, 0).astype(x.dtype)


class Mlp(nn.Module):
  hidden: int
  dropout: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, *, train: bool):
    dense = functools.partial(Dense, dtype=self.dtype, param_dtype=self.param_dtype)
    y = nn.gelu(dense(self.hidden, name='fc1')(x), approximate=False)  # torch GELU is exact erf
    y = nn.Dropout(self.dropout)(y, deterministic=not train)
    y = dense(x.shape[-1], name='fc2')(y)
    return nn.Dropout(self.dropout)(y, deterministic=not train)


class LayerScale(nn.Module):
  """A learned per-channel scale of a residual branch (CaiT; DINOv2's `ls1`/`ls2.gamma`)."""
  init_value: float
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    gamma = self.param('gamma', nn.initializers.constant(self.init_value), (x.shape[-1],),
                       self.param_dtype)
    return x * gamma.astype(x.dtype)


class Block(nn.Module):
  """Pre-norm block. Divided blocks run a time-attention residual first (no DropPath on it).
  With `layer_scale` the attention and MLP branches are scaled per channel before the residual
  add (the divided time branch, which no LayerScale model has, is not)."""
  cfg: ModelConfig
  drop_path: float

  @nn.compact
  def __call__(self, x, train: bool = False, first_landmarks=None, drop_path=None):
    """Positional arguments for nn.remat; drop_path overrides the rate (scan_blocks)."""
    c = self.cfg
    x = split_batch(x)  # in a step over a mesh: activations stay split like the batch
    kw = dict(dtype=c.compute_dtype, param_dtype=c.param_dtype)
    norm = functools.partial(nn.LayerNorm, epsilon=1e-6, **kw)
    f = c.temporal_slots
    if c.attention == 'trajectory':
      attn = attention.TrajectoryAttention(
          c.num_heads, f, values=c.trajectory_values, approx=c.approx, num_landmarks=c.num_landmarks,
          nystrom_iters=c.nystrom_iters, performer_features=c.performer_features,
          attn_dropout=c.attn_dropout, qkv_bias=c.qkv_bias, impl=c.trajectory_kernel,
          query_chunk=c.query_chunk, backend=c.attention_backend, name='attn', **kw)
      attn_fn = functools.partial(attn, train=train, first_landmarks=first_landmarks)
    elif c.attention == 'joint':
      attn_fn = functools.partial(attention.JointAttention(
          c.num_heads, attn_dropout=c.attn_dropout, qkv_bias=c.qkv_bias, name='attn', **kw),
                                  train=train)
    else:  # divided / space: spatial attention within each slot
      attn_fn = functools.partial(attention.DividedAttention(
          c.num_heads, f, 'space', qkv_bias=c.qkv_bias, name='attn', **kw), train=train)
    drop_path = DropPath(self.drop_path if drop_path is None else drop_path)

    if c.attention == 'divided':
      time_attn = attention.DividedAttention(c.num_heads, f, 'time', qkv_bias=c.qkv_bias,
                                             name='timeattn', **kw)
      time_out = time_attn(norm(name='norm3')(x), train=train)
      self.sow('intermediates', 'timeattn_out', time_out)
      x = x + time_out
    scale = lambda name: (LayerScale(c.layer_scale, c.param_dtype, name=name) if c.layer_scale
                          else lambda y: y)
    a = attn_fn(norm(name='norm1')(x))
    self.sow('intermediates', 'attn_out', a)
    x = x + drop_path(scale('ls1')(a), train=train)
    mlp = Mlp(int(x.shape[-1] * c.mlp_ratio), c.dropout, name='mlp', **kw)
    return split_batch(x + drop_path(scale('ls2')(mlp(norm(name='norm2')(x), train=train)),
                                     train=train))


def drop_path_rates(cfg: ModelConfig) -> np.ndarray:
  """Stochastic depth per block, rising linearly from 0 (official)."""
  return np.linspace(0, cfg.drop_path, cfg.depth) if cfg.depth > 1 else np.zeros(1)


class Motionformer(nn.Module):
  cfg: ModelConfig

  def setup(self):
    c = self.cfg
    d, p, tubelet = c.embed_dim, c.patch_size, c.tubelet_size
    tn = nn.initializers.truncated_normal(0.02)
    pdt = c.param_dtype
    grid = c.pretrain_img_size // p
    self.cls_token = self.param('cls_token', tn, (1, 1, d), pdt)
    self.pos_embed = self.param('pos_embed', tn, (1, 1 + grid * grid, d), pdt)
    self.temp_embed = self.param('temp_embed', nn.initializers.zeros, (1, c.temporal_slots, d), pdt)
    # Tubelet embedding as a Conv3d with kernel = stride, stored in flax Conv layout
    # (tubelet, p, p, C, D). Official init: zero kernel (ImageNet weights go into the centre slice).
    self.patch_embed_3d = {
        'kernel': self.param('patch_embed_3d_kernel', nn.initializers.zeros, (tubelet, p, p, 3, d), pdt),
        'bias': self.param('patch_embed_3d_bias', nn.initializers.zeros, (d,), pdt)}
    # The official state dict always carries the (unused) 2D patch embedding; keep it so that
    # parameter counts and round-trips match and ImageNet kernels have a home.
    self.patch_embed_2d = {
        'kernel': self.param('patch_embed_kernel', nn.initializers.lecun_normal(), (p, p, 3, d), pdt),
        'bias': self.param('patch_embed_bias', nn.initializers.zeros, (d,), pdt)}
    if c.scan_blocks:  # one Block whose parameters get a leading depth axis (_scan_blocks)
      self.blocks = Block(c, 0.0, name='blocks')
    else:
      block = Block
      if c.remat not in ('none', 'tied'):
        block = nn.remat(Block, policy=REMAT_POLICIES[c.remat], static_argnums=(2,))
      self.blocks = [block(c, float(r), name=f'blocks_{i}')
                     for i, r in enumerate(drop_path_rates(c))]
    kw = dict(dtype=c.compute_dtype, param_dtype=pdt)
    self.norm = nn.LayerNorm(epsilon=1e-6, name='norm', **kw)
    self.pre_logits = Dense(d, name='pre_logits', **kw)
    self.head_drop = nn.Dropout(c.head_dropout)
    self.heads = {name: Dense(classes, name=HEAD_PARAMS[name], **kw)
                  for name, classes in c.heads.items()}

  def _scan_blocks(self, x, train: bool, first_landmarks):
    """All blocks as one lax.scan: XLA compiles one block instead of `depth` copies, so the
    program (and the process's memory for it) is ~depth x smaller and compiles faster (the
    measured compile times: benchmarks/results/).

    Under scan every remat policy recomputes inside the loop body ('tied' = 'full': a loop
    cannot hoist recomputation). Sown intermediates come stacked; the Orthoformer's fixed eval
    key (no 'landmarks' RNG) is the same in every block.
    """
    c = self.cfg
    rates = jnp.asarray(drop_path_rates(c), jnp.float32) if c.drop_path else None

    def body(block, x, per_layer):
      rate, fl = per_layer
      return block(x, train, fl, rate), None

    if c.remat != 'none':
      body = nn.remat(body, policy=REMAT_POLICIES[c.remat], prevent_cse=False)
    scan = nn.scan(body, variable_axes={'params': 0, 'intermediates': 0},
                   split_rngs={'params': True, 'dropout': True, 'landmarks': True},
                   length=c.depth)
    return scan(self.blocks, x, (rates, first_landmarks))[0]

  def tubelets(self, clip):
    """(B, T, H, W, 3) -> (B, N, D) tokens in (t, h, w) row-major order."""
    c = self.cfg
    b, frames, hh, ww, ch = clip.shape
    p, tubelet = c.patch_size, c.tubelet_size
    if frames % tubelet or hh % p or ww % p:
      raise ValueError(f'clip {clip.shape} is not divisible into {tubelet}x{p}x{p} tubelets')
    x = clip.reshape(b, frames // tubelet, tubelet, hh // p, p, ww // p, p, ch)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)            # (B, F, Hp, Wp, tubelet, p, p, C)
    kernel = self.patch_embed_3d['kernel'].astype(c.compute_dtype)
    x = jnp.einsum('bthwklmc,klmcd->bthwd', x.astype(c.compute_dtype), kernel)
    x = x + self.patch_embed_3d['bias'].astype(c.compute_dtype)
    return x.reshape(b, -1, c.embed_dim)

  def position_embedding(self, patch_grid):
    """(1, 1+N, D) for a (Hp, Wp) patch grid: cls slot = pos_embed[0]; token (t, p) = resized
    spatial[p] + temp_embed[t]."""
    c = self.cfg
    grid = c.pretrain_img_size // c.patch_size
    spatial = self.pos_embed[0, 1:]
    if tuple(patch_grid) != (grid, grid):
      mh, mw = posembed.spatial_resize_matrices(grid, patch_grid, c.pos_embed_resize)
      table = spatial.reshape(grid, grid, -1)
      table = jnp.einsum('ih,hwd,jw->ijd', jnp.asarray(mh, spatial.dtype), table,
                         jnp.asarray(mw, spatial.dtype))
      spatial = table.reshape(-1, spatial.shape[-1])
    tokens = (self.temp_embed[0][:, None, :] + spatial[None]).reshape(-1, spatial.shape[-1])
    return jnp.concatenate([self.pos_embed[:, :1], tokens[None]], axis=1)

  def embed(self, clip):
    """Clip -> the first block's input: cls + tubelet tokens + position embedding, (B, 1+N, D)."""
    c = self.cfg
    if clip.ndim != 5 or clip.shape[-1] != 3:
      raise ValueError(f'expected a clip (B, T, H, W, 3), got shape {clip.shape}')
    if clip.shape[1] != c.num_frames:
      raise ValueError(f'model built for {c.num_frames} frames, got {clip.shape[1]}')
    x = self.tubelets(clip)
    self.sow('intermediates', 'patch_embed_3d_out', x)
    b = x.shape[0]
    pos = self.position_embedding((clip.shape[2] // c.patch_size, clip.shape[3] // c.patch_size))
    self.sow('intermediates', 'pos_embed_total', pos)
    cls = jnp.broadcast_to(self.cls_token, (b, 1, c.embed_dim))
    x = (jnp.concatenate([cls, x], axis=1) + pos).astype(c.compute_dtype)
    self.sow('intermediates', 'block0_in', x)
    return x

  def features(self, clip, *, train: bool = False, first_landmarks=None):
    """Encoder: clip -> all tokens after the final LayerNorm, (B, 1+N, D)."""
    c = self.cfg
    x = self.embed(clip)
    if c.scan_blocks:
      return self.norm(self._scan_blocks(x, train, first_landmarks))
    for i, blk in enumerate(self.blocks):
      fl = None if first_landmarks is None else first_landmarks[i]
      if c.remat == 'tied':
        x = remat.tied_call(blk, x, train, fl)
      else:
        x = blk(x, train, fl) if c.remat != 'none' else blk(x, train=train, first_landmarks=fl)
      self.sow('intermediates', f'block{i}_out', x)
    return self.norm(x)

  def logits(self, x, *, train: bool = False, return_features=False):
    """Last block's output (B, 1+N, D) -> logits (or {'verb', 'noun'}), from the cls token.
    Not named `head`: a method named like a parameter ('head') shadows it under
    flax.nnx.bridge.ToNNX, which exposes the module's methods as attributes."""
    return self._classify(self.norm(x), train, return_features)

  def _classify(self, x, train: bool, return_features: bool):
    feat = jnp.tanh(self.pre_logits(x[:, 0]))
    y = self.head_drop(feat, deterministic=not train)
    out = {k: head(y).astype(jnp.promote_types(y.dtype, jnp.float32))
           for k, head in self.heads.items()}
    out = out['label'] if len(out) == 1 else out  # a plain array for single-head models
    return (out, feat) if return_features else out

  def __call__(self, clip, *, train: bool = False, first_landmarks=None, return_features=False):
    """Logits (B, classes), or {'verb', 'noun'} for Epic-Kitchens.

    first_landmarks: optional (depth, B*heads) int array replaying the Orthoformer's first
    landmark per block and (batch, head) row, batch-major.
    return_features: also return the (B, D) pre-logits feature (after tanh).
    """
    x = self.features(clip, train=train, first_landmarks=first_landmarks)
    return self._classify(x, train, return_features)


def make_model(model_config) -> Motionformer:
  """The model of a `config.model` block (ConfigDict or dict) or of a ModelConfig."""
  if not isinstance(model_config, ModelConfig):
    model_config = ModelConfig.from_config(model_config)
  return Motionformer(model_config)


def init_variables(model: Motionformer, rng, batch_size: int = 1, *, random_tubelet=False):
  """Fresh variables for `model` (from a zero clip of the configured shape).

  random_tubelet: a random tubelet kernel instead of the official zeros. The official kernel
  starts at zero because ImageNet weights are inflated into it; from scratch that is a saddle
  point for motion (every clip embeds to the same tokens, so no gradient can shape a
  motion-selective filter, and the synthetic demo stays at chance).
  """
  c = model.cfg
  clip = jnp.zeros((batch_size, c.num_frames, c.img_size, c.img_size, 3), c.param_dtype)
  variables = model.init({'params': rng}, clip, train=False)
  if random_tubelet:
    kernel = variables['params']['patch_embed_3d_kernel']
    init = nn.initializers.lecun_normal(in_axis=(0, 1, 2, 3), out_axis=4)
    params = {**variables['params'], 'patch_embed_3d_kernel': init(
        jax.random.fold_in(rng, 1), kernel.shape, kernel.dtype)}
    variables = {**variables, 'params': params}
  return variables

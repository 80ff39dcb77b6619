"""The Long Range Arena encoder with pluggable attention (exact, Orthoformer, Nystrom, Performer).

The Nystromformer repository's LRA model (the code behind the paper's Table 5): token + learned
position embeddings, pre-LayerNorm blocks (attention, then a GELU MLP), a final LayerNorm,
pooling over the real tokens (mean) or the first one (CLS), and a ReLU MLP classifier. The
attention is `mformer_jax.model.approx.self_attention`; padded tokens are masked out of every key sum.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from mformer_jax.model import approx, flops
from mformer_jax.errors import ConfigError
from mformer_jax.lra import listops

_init = nn.initializers.normal(0.02)


class SelfAttention(nn.Module):
  num_heads: int
  attention: str = 'exact'          # exact | orthoformer | nystrom | performer
  num_landmarks: int = 64           # Orthoformer / Nystrom
  performer_features: int = 256
  pinv_iters: int = 6

  @nn.compact
  def __call__(self, x, mask):
    b, n, dim = x.shape
    h = self.num_heads
    q, k, v = jnp.split(nn.Dense(3 * dim, name='qkv')(x), 3, axis=-1)
    rows = lambda t: t.reshape(b, n, h, dim // h).transpose(0, 2, 1, 3).reshape(b * h, n, dim // h)
    kw, mask = {}, jnp.repeat(mask, h, axis=0)
    # The main model's fixed per-layer key where no RNG stream is given (eval, benchmarks).
    fixed = approx.layer_key(self.name or '')
    if self.attention == 'orthoformer':
      kw = dict(num_landmarks=min(self.num_landmarks, n))
      if self.has_rng('landmarks'):
        kw['rng'] = self.make_rng('landmarks')
      else:
        kw['first_index'] = approx.eval_first_index(fixed, b, h, n, mask)
    elif self.attention == 'nystrom':
      kw = dict(num_landmarks=self.num_landmarks, pinv_iters=self.pinv_iters)
    elif self.attention == 'performer':
      # Features fixed per layer (a constant, like a buffer), as in the main model.
      kw = dict(features=approx.orthogonal_gaussian(fixed, self.performer_features, dim // h))
    out = approx.self_attention(rows(q), rows(k), rows(v), method=self.attention,
                                mask=mask, **kw)
    out = out.reshape(b, h, n, dim // h).transpose(0, 2, 1, 3).reshape(b, n, dim)
    return nn.Dense(dim, name='out')(out)


class Block(nn.Module):
  num_heads: int
  mlp_dim: int
  dropout: float = 0.1
  attention_kw: dict = None

  @nn.compact
  def __call__(self, x, mask, train: bool = False):
    drop = lambda y: nn.Dropout(self.dropout, deterministic=not train)(y)
    y = SelfAttention(self.num_heads, **(self.attention_kw or {}), name='attn')(
        nn.LayerNorm(name='norm1')(x), mask)
    x = x + drop(y)
    y = nn.Dense(self.mlp_dim, name='fc1')(nn.LayerNorm(name='norm2')(x))
    y = nn.Dense(x.shape[-1], name='fc2')(drop(nn.gelu(y, approximate=False)))
    return x + drop(y)


class Encoder(nn.Module):
  """Token ids (B, N) (0 = padding) -> class logits (B, num_classes)."""
  num_classes: int = 10
  max_length: int = 2000
  vocab_size: int = len(listops.VOCAB)
  num_layers: int = 2
  dim: int = 64
  num_heads: int = 2
  mlp_dim: int = 128
  dropout: float = 0.1
  pooling: str = 'mean'             # mean (Nystromformer) | cls (official LRA)
  attention: str = 'exact'
  num_landmarks: int = 64
  performer_features: int = 256
  pinv_iters: int = 6

  @nn.compact
  def __call__(self, tokens, train: bool = False, features: bool = False):
    """features=True: the (B, N, dim) encoder outputs after the final LayerNorm instead."""
    n = tokens.shape[1]
    if n > self.max_length:
      raise ValueError(f'sequence of {n} tokens exceeds max_length={self.max_length}')
    mask = tokens != listops.PAD
    x = nn.Embed(self.vocab_size, self.dim, embedding_init=_init, name='embed')(tokens)
    x = x + self.param('pos_embed', _init, (1, self.max_length, self.dim))[:, :n]
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    attention_kw = dict(attention=self.attention, num_landmarks=self.num_landmarks,
                        performer_features=self.performer_features, pinv_iters=self.pinv_iters)
    for i in range(self.num_layers):
      x = Block(self.num_heads, self.mlp_dim, self.dropout, attention_kw, name=f'block{i}')(
          x, mask, train)
    x = nn.LayerNorm(name='norm')(x)
    if features:
      return x
    if self.pooling == 'mean':
      m = mask[..., None].astype(x.dtype)
      x = jnp.sum(x * m, 1) / jnp.maximum(jnp.sum(m, 1), 1)
    elif self.pooling == 'cls':
      x = x[:, 0]
    else:
      raise ConfigError(f'pooling={self.pooling!r}; expected mean or cls')
    x = nn.relu(nn.Dense(self.mlp_dim, name='head_hidden')(x))
    return nn.Dense(self.num_classes, name='head')(x)


def macs(model: Encoder, seq_len: int = 0, batch_size: int = 1) -> int:
  """Multiply-accumulates of one inference forward, from the model (mformer_jax.flops)."""
  tokens = jax.ShapeDtypeStruct((batch_size, seq_len or model.max_length), jnp.int32)
  variables = jax.eval_shape(lambda t: model.init(jax.random.key(0), t), tokens)
  return flops.count_macs(jax.make_jaxpr(lambda v, t: model.apply(v, t))(variables, tokens).jaxpr)

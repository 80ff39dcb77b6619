"""What every artifact computes: the model's eval-mode forward on a float32 clip batch, as a
dict of named outputs, with a symbolic batch dimension.

    fn = inference_function(model, variables)
    fn(clip)   # {'logits': (B, C), 'features': (B, D)}; Epic-Kitchens: logits_verb, logits_noun
"""
import dataclasses

import jax
import jax.numpy as jnp

from mformer_jax.model import ModelConfig, Motionformer

BATCH = 'b'  # the symbolic batch dimension's name


def output_names(cfg: ModelConfig) -> tuple[str, ...]:
  """The artifact's outputs, in order: 'logits' for a single-head model, 'logits_verb' and
  'logits_noun' for Epic-Kitchens (`ModelConfig.heads` decides), then the pre-logits
  'features' (B, embed_dim)."""
  heads = cfg.heads
  logits = ('logits',) if len(heads) == 1 else tuple(f'logits_{h}' for h in heads)
  return logits + ('features',)


def inference_function(model: Motionformer, variables):
  """clip (B, T, S, S, 3) float32, normalised as `mformer_jax.data.to_model_input` makes it ->
  {output name: float32 array}; the parameters are closed over (they become constants of the
  artifact). Eval mode as predict runs it: no RNG stream, so an Orthoformer takes its fixed
  eval-time landmarks (`model.approx.eval_first_index`), the same for a clip in any batch."""
  names = output_names(model.cfg)

  def forward(clip):
    out, features = model.apply(variables, clip, train=False, return_features=True)
    logits = [out] if len(names) == 2 else [out[h] for h in model.cfg.heads]
    return {n: x.astype(jnp.float32) for n, x in zip(names, logits + [features])}

  return forward


def clip_spec(cfg: ModelConfig, batch=None) -> jax.ShapeDtypeStruct:
  """The input: (B, T, S, S, 3) float32 at the config's frames and crop; B symbolic (named
  BATCH) unless an int is given."""
  if batch is None:
    batch, = jax.export.symbolic_shape(BATCH)
  return jax.ShapeDtypeStruct((batch, cfg.num_frames, cfg.img_size, cfg.img_size, 3),
                              jnp.float32)


def export_config(cfg: ModelConfig, graph: bool = False) -> ModelConfig:
  """`cfg` as an artifact runs it; the parameters are the same (their block layout follows
  scan_blocks: `model.layout.blocks_layout`). Rematerialisation, a training-memory knob, is off.

  graph: for a graph written op by op (ONNX), no loops: the chunked trajectory kernel and
  scan_blocks are lax loops, which ONNX holds as Loop nodes (onnxruntime rejects the chunked
  kernel's), so the einsum reference runs instead, with the same numbers
  (tests/test_fast_attention.py), and the blocks are unrolled."""
  cfg = dataclasses.replace(cfg, remat='none')
  if graph and cfg.trajectory_kernel == 'chunked':
    cfg = dataclasses.replace(cfg, trajectory_impl='einsum')
  if graph and cfg.scan_blocks:
    cfg = dataclasses.replace(cfg, scan_blocks=False)
  return cfg


def export(model: Motionformer, variables, platforms=('cpu',)) -> jax.export.Exported:
  """jax.export of `inference_function` for a clip batch of any size, lowered for `platforms`."""
  fn = inference_function(model, variables)
  return jax.export.export(jax.jit(fn), platforms=platforms)(clip_spec(model.cfg))

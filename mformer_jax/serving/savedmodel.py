"""A TF SavedModel of an exported model: the StableHLO module inside one XlaCallModule op (what
jax2tf's native serialization builds), signature `serving_default`.

Why not `jax2tf.convert` as is: jax 0.12 writes StableHLO 1.18 (four weeks old by its own rule)
and TensorFlow 2.21 reads up to 1.13.7 ("unregistered operation 'vhlo.custom_call_v2'"), and
TensorFlow's shape refinement of a symbolic batch stops at `stablehlo.composite` ops (the
serializer's form of chlo ops such as the exact GELU's erfc; openxla/stablehlo#2779). So the
module is rewritten here, composites as calls of their decompositions (same computation), and
serialized for the StableHLO version this TensorFlow reads.
"""
import jax
import jax.extend.mlir as jax_mlir
from jax.extend.mlir import ir
from jax.extend.mlir.dialects import stablehlo
from jax.interpreters import mlir

import tensorflow as tf
from tensorflow.compiler.mlir.stablehlo import stablehlo as tf_stablehlo
from tensorflow.compiler.tf2xla.python import xla as tfxla

SIGNATURE = 'serving_default'
INPUT = 'clip'


def _composites_as_calls(module: ir.Module) -> int:
  """Replaces every `stablehlo.composite` in `module` by a `func.call` of its decomposition, in
  place; returns how many there were."""
  found = []

  def visit(op):
    if op.name == 'stablehlo.composite':
      found.append(op)
    return ir.WalkResult.ADVANCE

  module.operation.walk(visit)
  for op in found:
    with ir.InsertionPoint(op), op.location:
      call = ir.Operation.create('func.call', results=[r.type for r in op.results],
                                 operands=list(op.operands),
                                 attributes={'callee': op.attributes['decomposition']})
    for old, new in zip(op.results, call.results):
      old.replace_all_uses_with(new)
    op.erase()
  if found and not module.operation.verify():
    raise AssertionError('the module with composites as calls does not verify')
  return len(found)


def target_version() -> str:
  """The newest StableHLO version both this jax and this TensorFlow know."""
  return tf_stablehlo.get_smaller_version(tf_stablehlo.get_current_version(),
                                          stablehlo.get_current_version())


def module_for_tensorflow(exported: jax.export.Exported) -> bytes:
  """`exported`'s module, composites as calls, serialized for `target_version()`."""
  with mlir.make_ir_context() as context:
    module = jax_mlir.deserialize_portable_artifact(exported.mlir_module_serialized, context)
    _composites_as_calls(module)
    return jax_mlir.serialize_portable_artifact(module, target_version())


def tf_module(exported: jax.export.Exported) -> tf.Module:
  """A tf.Module whose `serve` (a tf.function of one float32 clip batch, any B) runs `exported`
  and returns {output name: tensor} (its outputs must be a dict)."""
  (aval,), names = exported.in_avals, tuple(exported.out_tree.node_data()[1])
  if exported.in_tree.num_leaves != 1 or len(names) != len(exported.out_avals):
    raise ValueError('expected one input and a dict of outputs')
  dims = lambda shape: [d if isinstance(d, int) else None for d in shape]
  module_bytes = module_for_tensorflow(exported)
  kept = exported.module_kept_var_idx

  def serve(clip):
    out = tfxla.call_module(
        [clip] if kept else [], version=exported.calling_convention_version,
        module=module_bytes, Tout=[tf.as_dtype(a.dtype) for a in exported.out_avals],
        Sout=[dims(a.shape) for a in exported.out_avals],
        platforms=[p.upper() for p in exported.platforms],
        use_shardy_partitioner=jax.config.jax_use_shardy_partitioner)
    return dict(zip(names, out))

  spec = tf.TensorSpec(dims(aval.shape), tf.as_dtype(aval.dtype), name=INPUT)
  holder = tf.Module()
  holder.serve = tf.function(serve, input_signature=[spec], autograph=False)
  return holder


def save(exported: jax.export.Exported, path: str) -> None:
  """Writes the SavedModel of `exported` to the folder `path`."""
  holder = tf_module(exported)
  tf.saved_model.save(holder, path, signatures={SIGNATURE: holder.serve})

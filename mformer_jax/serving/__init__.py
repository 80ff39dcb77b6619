"""Inference artifacts of a Motionformer, to serve it without this code: StableHLO
(`jax.export`), a TF SavedModel (XlaCallModule, as jax2tf's native serialization), ONNX
(jax2onnx, an optional extra). `python -m mformer_jax.export` is the command; docs/export.md the
guide.

    written = serving.write('k400.pyth', 'stablehlo', 'k400.stablehlo')

`forward` (what every artifact computes: eval mode, the fixed landmark key, named outputs, the
symbolic batch), `artifact` (checks, loading, writing), `savedmodel`, `onnx_graph`.
"""
from mformer_jax.serving.artifact import FORMATS, Written, check_output, load, write
from mformer_jax.serving.forward import (export, export_config, inference_function,
                                         output_names)

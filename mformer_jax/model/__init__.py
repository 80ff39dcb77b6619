"""The model: Motionformer (`motionformer`), its attention modules (`attention`, with the
trajectory kernels of `fast_attention` and the approximations of `approx`), position embeddings
(`posembed`), rematerialisation (`remat`), FLOP counts (`flops`) and attention maps (`attention_maps`).

Imports nothing of the package but `errors`: the bottom of the layers."""
from mformer_jax.model.attention import DividedAttention, JointAttention, TrajectoryAttention
from mformer_jax.model.motionformer import (APPROXIMATIONS, ATTENTIONS, DTYPES, HEAD_PARAMS,
                                            REMAT_POLICIES, Block, ModelConfig, Motionformer,
                                            drop_path_rates, head_prefix, init_variables,
                                            make_model, outputs_by_head, split_batch)

"""Weights from anywhere: a workdir of this trainer, an official .pyth/.pth/.npz, a timm ViT.

    cfg, params = weights.load(source, cfg, like=fresh_params, dont_load=weights.HEAD_PATTERNS)
    model, variables = weights.load_model(source)          # ready to apply
    model, variables = weights.load_official('k400_motionformer_224_16x4')  # a released name

`tree` (the mismatch check, block layouts, merging), `official` (the key table, readers, the
yacs config, export, ImageNet inflation), `vit` (timm ViTs as the one-frame model),
`torch_pickle` (torch.save files read without torch), `load` (the loader), `released` (the
released models by name: download, cache, integrity), `labels` (their class names).
"""
from mformer_jax.weights.load import load, load_model, load_official
from mformer_jax.errors import CheckpointMismatchError
from mformer_jax.model.layout import check_fit
from mformer_jax.weights.official import (export_official, init_from_imagenet, read_checkpoint,
                                          read_official)
from mformer_jax.weights.tree import HEAD_PATTERNS
from mformer_jax.weights.vit import load_timm_vit

"""The diffusion transformer backbone."""

from longplay.transformer.dit import (
    ContextKV,
    CrossAttention,
    DiffusionTransformer,
    DiTBlock,
    DiTContext,
    SelfAttention,
    rotary_dim_for,
)

__all__ = [
    "ContextKV",
    "CrossAttention",
    "DiTBlock",
    "DiTContext",
    "DiffusionTransformer",
    "SelfAttention",
    "rotary_dim_for",
]

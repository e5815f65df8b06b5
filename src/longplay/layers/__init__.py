"""Shared neural building blocks with no knowledge of any model."""

from longplay.layers.activations import SnakeBeta
from longplay.layers.compiling import Compiler, compile_unavailable_reason
from longplay.layers.conv import WeightNormedConv, WNConv1d, WNConvTranspose1d
from longplay.layers.embeddings import (
    FourierFeatures,
    apply_rotary,
    rotary_angles,
    rotary_inverse_frequencies,
)
from longplay.layers.sharing import TransientState, shared_weights_copy

__all__ = [
    "Compiler",
    "FourierFeatures",
    "SnakeBeta",
    "TransientState",
    "WNConv1d",
    "WNConvTranspose1d",
    "WeightNormedConv",
    "apply_rotary",
    "compile_unavailable_reason",
    "rotary_angles",
    "rotary_inverse_frequencies",
    "shared_weights_copy",
]

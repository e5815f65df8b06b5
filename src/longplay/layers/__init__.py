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
from longplay.layers.quantize import int8_unavailable_reason, quantize_linears_int8
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
    "int8_unavailable_reason",
    "quantize_linears_int8",
    "rotary_angles",
    "rotary_inverse_frequencies",
    "shared_weights_copy",
]

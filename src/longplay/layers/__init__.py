"""Shared neural building blocks with no knowledge of any model."""

from longplay.layers.activations import SnakeBeta
from longplay.layers.conv import WNConv1d, WNConvTranspose1d

__all__ = ["SnakeBeta", "WNConv1d", "WNConvTranspose1d"]

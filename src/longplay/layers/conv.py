"""Weight-normalised 1-D convolutions (Salimans & Kingma 2016).

The weight is ``g * v / ||v||`` with the norm taken over every dimension but the
first (PyTorch's ``weight_norm(dim=0)``). Parameters are named ``weight_g``,
``weight_v`` and ``bias`` as in the public checkpoints, and the direction is
recomputed on each call so that training and inference share one module.

Shape legend: B batch, D channels, N positions along time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _weight_norm(weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
    """g * v / ||v||, the norm over all dims but 0 (g: [O, 1, 1], v: [O, I, K])."""
    norm = weight_v.flatten(1).norm(dim=1).view(-1, *([1] * (weight_v.dim() - 1)))
    return weight_v * (weight_g / norm)


class _WeightNormed(nn.Module):
    """Holds ``weight_v`` [A, B, K], ``weight_g`` [A, 1, 1] and an optional ``bias``,
    initialised like PyTorch's convolutions with ||v|| = g."""

    def __init__(self, shape: tuple[int, int, int], bias_size: int, fan_in: int,
                 bias: bool) -> None:
        super().__init__()
        v = torch.empty(shape)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.flatten(1).norm(dim=1).view(-1, 1, 1).clone())
        if bias:
            bound = 1.0 / math.sqrt(fan_in)
            self.bias = nn.Parameter(torch.empty(bias_size).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    @property
    def weight(self) -> torch.Tensor:
        """The effective convolution weight, shaped like ``weight_v``."""
        return _weight_norm(self.weight_g, self.weight_v)


class WNConv1d(_WeightNormed):
    """Conv1d with weight normalisation; same arguments as ``nn.Conv1d``.
    weight_v: [O, I, K], weight_g: [O, 1, 1]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, bias: bool = True) -> None:
        super().__init__((out_channels, in_channels, kernel_size), out_channels,
                         in_channels * kernel_size, bias)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, I, N] -> [B, O, N']."""
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)


class WNConvTranspose1d(_WeightNormed):
    """ConvTranspose1d with weight normalisation over dim 0 of its weight.
    weight_v: [I, O, K], weight_g: [I, 1, 1]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True) -> None:
        super().__init__((in_channels, out_channels, kernel_size), out_channels,
                         out_channels * kernel_size, bias)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, I, N] -> [B, O, N * stride] (for kernel 2*stride, padding ceil(stride/2))."""
        return F.conv_transpose1d(x, self.weight, self.bias, self.stride, self.padding)

"""Positional and timestep embeddings.

Shape legend: B batch, N positions, H heads, E head width.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierFeatures(nn.Module):
    """Random Fourier features of a scalar: [cos(2 pi t W), sin(2 pi t W)].

    ``weight`` [out_dim // 2, 1] is drawn N(0, 1) and learned (Gaussian Fourier
    features, Tancik et al. 2020), as the Stable Audio DiT's timestep embedding.
    """

    def __init__(self, out_dim: int, std: float = 1.0) -> None:
        super().__init__()
        if out_dim % 2:
            raise ValueError(f"out_dim must be even, got {out_dim}")
        self.weight = nn.Parameter(torch.randn(out_dim // 2, 1) * std)  # [F/2, 1]

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t [B] -> [B, out_dim]."""
        angles = 2 * math.pi * t[:, None].to(self.weight.dtype) @ self.weight.T  # [B, F/2]
        return torch.cat([angles.cos(), angles.sin()], dim=-1)


def rotary_inverse_frequencies(rotary_dim: int, base: float = 10000.0) -> torch.Tensor:
    """[rotary_dim / 2] inverse frequencies 1 / base^(2i / rotary_dim)."""
    return 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim))


def rotary_angles(num_positions: int, rotary_dim: int, base: float = 10000.0,
                  device: torch.device | None = None) -> torch.Tensor:
    """[N, rotary_dim] angles p * inv_freq, the half repeated ("rotate half" layout, RoFormer)."""
    inv_freq = rotary_inverse_frequencies(rotary_dim, base).to(device)
    angles = torch.arange(num_positions, dtype=torch.float32, device=device)[:, None] * inv_freq
    return torch.cat([angles, angles], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``cos.shape[-1]`` channels of each head of x [B, H, N, E];
    cos/sin: [N, R] with R <= E. The remaining channels pass unchanged (partial RoPE)."""
    rot = cos.shape[-1]
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    first, second = x_rot.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    out = x_rot.float() * cos + rotated.float() * sin
    return torch.cat([out.to(x.dtype), x_pass], dim=-1)

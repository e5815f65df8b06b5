"""Timing conditioning: ``seconds_start`` and ``seconds_total`` (SYSTEM.md section 3).

Shape legend: B batch, D output width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from longplay.conditioning.types import ConditioningTokens

FOURIER_FEATURES = 256  # [x, sin(2 pi x w), cos(2 pi x w)] with 128 learned w -> 257 inputs


class TimingEmbedder(nn.Module):
    """A number in seconds -> one token.

    The value is clamped to [min_seconds, max_seconds], normalised to [0, 1], expanded
    to learned Fourier features [x, sin(2 pi x w), cos(2 pi x w)] (w: 128 values,
    initialised N(0, 1)) and projected linearly to ``out_dim``.
    """

    def __init__(self, out_dim: int, min_seconds: float = 0.0, max_seconds: float = 512.0) -> None:
        super().__init__()
        if max_seconds <= min_seconds:
            raise ValueError(f"max_seconds ({max_seconds}) must exceed min_seconds ({min_seconds})")
        self.min_seconds = float(min_seconds)
        self.max_seconds = float(max_seconds)
        self.frequencies = nn.Parameter(torch.randn(FOURIER_FEATURES // 2))  # [128]
        self.proj = nn.Linear(FOURIER_FEATURES + 1, out_dim)

    def forward(self, seconds: torch.Tensor | Sequence[float]) -> ConditioningTokens:
        """seconds [B] -> tokens [B, 1, D] (mask [B, 1], all True)."""
        param = self.frequencies
        seconds = torch.as_tensor(seconds, dtype=torch.float32, device=param.device)
        if seconds.dim() != 1:
            raise ValueError(f"seconds must be a 1-D batch of numbers, got {tuple(seconds.shape)}")
        if not torch.isfinite(seconds).all():
            raise ValueError(f"timing values must be finite, got {seconds.tolist()}")
        x = (seconds.clamp(self.min_seconds, self.max_seconds) - self.min_seconds) / (
            self.max_seconds - self.min_seconds)
        x = x.to(param.dtype)[:, None]  # [B, 1]
        angles = 2 * math.pi * x * param[None]  # [B, 128]
        features = torch.cat([x, angles.sin(), angles.cos()], dim=-1)  # [B, 257]
        tokens = self.proj(features)[:, None]  # [B, 1, D]
        return ConditioningTokens(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool,
                                                     device=tokens.device))

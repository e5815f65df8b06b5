"""Periodic activations for audio networks.

Shape legend: B batch, D channels, N positions along time.
"""

from __future__ import annotations

import torch
from torch import nn


class SnakeBeta(nn.Module):
    """SnakeBeta: ``y = x + 1 / (beta + 1e-9) * sin(alpha * x)^2`` per channel.

    ``alpha`` and ``beta`` are stored as logarithms (initialised to 0, i.e. 1.0),
    as in BigVGAN and the Stable Audio "Oobleck" autoencoder, so that the
    learned frequencies stay positive.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))  # [D], log-scale
        self.beta = nn.Parameter(torch.zeros(channels))  # [D], log-scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, D, N] -> [B, D, N]."""
        alpha = self.alpha.exp()[None, :, None]  # [1, D, 1]
        inv_beta = 1.0 / (self.beta.exp()[None, :, None] + 1e-9)  # [1, D, 1]
        if torch.is_grad_enabled() and x.requires_grad:
            return x + inv_beta * torch.sin(alpha * x).pow(2)
        # Inference: the same arithmetic with one temporary instead of four, which
        # matters for the peak memory of long decodes.
        out = torch.mul(x, alpha)
        out.sin_().square_().mul_(inv_beta).add_(x)
        return out

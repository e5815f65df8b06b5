"""The Gaussian latent of the VAE bottleneck (SYSTEM.md section 2).

Shape legend: B batch, D latent channels, T latent frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MIN_STD = 1e-4


@dataclass(frozen=True)
class LatentDistribution:
    """Diagonal Gaussian posterior q(z | audio).

    Attributes:
        mean: [B, D, T] posterior means.
        scale: [B, D, T] raw (pre-softplus) scales, as the encoder outputs them.
    """

    mean: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def from_encoder_output(cls, h: torch.Tensor) -> LatentDistribution:
        """h: [B, 2D, T] (means, then raw scales, along channels)."""
        if h.shape[1] % 2:
            raise ValueError(f"encoder output needs an even channel count, got {h.shape[1]}")
        mean, scale = h.chunk(2, dim=1)
        return cls(mean=mean, scale=scale)

    @property
    def std(self) -> torch.Tensor:
        """[B, D, T] standard deviation: softplus(scale) + 1e-4."""
        return F.softplus(self.scale) + MIN_STD

    def sample(self, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """z = mean + std * eps, eps from ``noise`` [B, D, T] or drawn from ``generator``."""
        if noise is None:
            noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype,
                                device=self.mean.device)
        elif noise.shape != self.mean.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, the latents "
                             f"{tuple(self.mean.shape)}")
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        """[B, D, T] the posterior mean (deterministic latents)."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL to N(0, I) as in stable-audio-tools: mean over batch and time of the sum
        over channels of (mean^2 + var - log var - 1), without the usual 1/2. Scalar."""
        var = self.std.square()
        return (self.mean.square() + var - var.log() - 1).sum(dim=1).mean()

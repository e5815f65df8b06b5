"""Blocks of the Oobleck autoencoder (SYSTEM.md section 2).

Shape legend: B batch, D channels, N positions along time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from longplay.layers import SnakeBeta, WNConv1d, WNConvTranspose1d

RESIDUAL_DILATIONS = (1, 3, 9)

DECODE_BYTES_PER_SAMPLE_CHANNEL = 5.5
"""Peak decoder activation memory per output sample, per channel of the decoder's
last (full-rate) stage, per byte of the activation dtype: measured on the full-size
VAE (benchmarks/vae_decode.py; about 5.5 MiB per latent frame in fp32)."""


class ResidualUnit(nn.Module):
    """Snake -> dilated conv k7 -> Snake -> conv k1, plus the input."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.act1 = SnakeBeta(channels)
        self.conv1 = WNConv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.act2 = SnakeBeta(channels)
        self.conv2 = WNConv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, D, N] -> [B, D, N]."""
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


class EncoderBlock(nn.Module):
    """Residual units (dilations 1, 3, 9) -> Snake -> strided conv (k = 2*stride)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.res_units = nn.ModuleList(ResidualUnit(in_channels, d) for d in RESIDUAL_DILATIONS)
        self.act = SnakeBeta(in_channels)
        self.downsample = WNConv1d(
            in_channels, out_channels, 2 * stride, stride=stride, padding=(stride + 1) // 2
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, D_in, N] -> [B, D_out, N // stride]."""
        for unit in self.res_units:
            x = unit(x)
        return self.downsample(self.act(x))


class NearestUpsample(WNConv1d):
    """Each position repeated ``factor`` times, then a convolution of kernel 2*factor
    without bias, padded as PyTorch's ``padding="same"`` ((k - 1) // 2 before, k // 2
    after): stable-audio-tools' ``use_nearest_upsample`` (its weights are this conv's).

    Unlike a transposed convolution, whose output samples take turns through the
    ``factor`` phases of its kernel, every output sample here sees the same kernel: a
    constant input (a bias, DC) stays constant, so the upsampling cannot turn it into a
    comb of tones at multiples of the input rate."""

    def __init__(self, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__(in_channels, out_channels, 2 * factor, bias=False)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, I, N] -> [B, O, N * factor]."""
        x = F.interpolate(x, scale_factor=self.factor, mode="nearest")
        kernel = 2 * self.factor
        return super().forward(F.pad(x, ((kernel - 1) // 2, kernel // 2)))


class DecoderBlock(nn.Module):
    """Snake -> upsampling by ``stride`` -> residual units (dilations 1, 3, 9).

    The upsampling is a transposed conv (k = 2*stride), as the public VAE's, or with
    ``nearest_upsample`` a :class:`NearestUpsample`."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 nearest_upsample: bool = False) -> None:
        super().__init__()
        self.act = SnakeBeta(in_channels)
        self.upsample: nn.Module
        if nearest_upsample:
            self.upsample = NearestUpsample(in_channels, out_channels, stride)
        else:
            self.upsample = WNConvTranspose1d(
                in_channels, out_channels, 2 * stride, stride=stride, padding=(stride + 1) // 2
            )
        self.res_units = nn.ModuleList(ResidualUnit(out_channels, d) for d in RESIDUAL_DILATIONS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, D_in, N] -> [B, D_out, N * stride]."""
        x = self.upsample(self.act(x))
        for unit in self.res_units:
            x = unit(x)
        return x


class OobleckEncoder(nn.Module):
    """Audio [B, C, S] -> means and raw scales [B, 2*D_latent, S / hop]."""

    def __init__(self, audio_channels: int, channels: int, channel_mults: tuple[int, ...],
                 strides: tuple[int, ...], latent_dim: int) -> None:
        super().__init__()
        widths = [channels * m for m in (1, *channel_mults)]
        self.stem = WNConv1d(audio_channels, widths[0], 7, padding=3)
        self.blocks = nn.ModuleList(
            EncoderBlock(widths[i], widths[i + 1], s) for i, s in enumerate(strides)
        )
        self.act = SnakeBeta(widths[-1])
        self.head = WNConv1d(widths[-1], 2 * latent_dim, 3, padding=1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio: [B, C, S] -> [B, 2*D_latent, floor(S / hop)] (means, then raw scales)."""
        x = self.stem(audio)
        for block in self.blocks:
            x = block(x)
        return self.head(self.act(x))


class OobleckDecoder(nn.Module):
    """Latents [B, D_latent, T] -> audio [B, C, T * hop]. No output tanh by default."""

    def __init__(self, audio_channels: int, channels: int, channel_mults: tuple[int, ...],
                 strides: tuple[int, ...], latent_dim: int, final_tanh: bool = False,
                 nearest_upsample: bool = False) -> None:
        super().__init__()
        widths = [channels * m for m in (1, *channel_mults)]
        self.final_tanh = final_tanh
        self.stem = WNConv1d(latent_dim, widths[-1], 7, padding=3)
        self.blocks = nn.ModuleList(
            DecoderBlock(widths[i + 1], widths[i], s, nearest_upsample)
            for i, s in reversed(list(enumerate(strides)))
        )
        self.act = SnakeBeta(widths[0])
        self.head = WNConv1d(widths[0], audio_channels, 7, padding=3, bias=False)
        self.hop_length = math.prod(strides)

    def bytes_per_latent_frame(self, itemsize: int) -> float:
        """Estimated peak activation bytes of decoding one latent frame: proportional to
        the samples of a frame and the width of the full-rate stage
        (``DECODE_BYTES_PER_SAMPLE_CHANNEL``)."""
        channels = self.head.weight_v.shape[1]
        return DECODE_BYTES_PER_SAMPLE_CHANNEL * channels * self.hop_length * itemsize

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """latents: [B, D_latent, T] -> audio [B, C, T * hop]."""
        x = self.stem(latents)
        for block in self.blocks:
            x = block(x)
        x = self.head(self.act(x))
        return torch.tanh(x) if self.final_tanh else x

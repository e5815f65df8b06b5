"""EnCodec's multi-scale STFT discriminator, the adversary of VAE training
(Défossez et al. 2022, "High Fidelity Neural Audio Compression", section 3.4; SYSTEM.md
section 2).

Each scale looks at the complex STFT of the audio, real and imaginary parts stacked as
input channels, through a small 2-D convolution stack that is dilated along time and
strided along frequency.

Shape legend: B batch, C audio channels, S samples, T STFT frames, F frequency bins
(fft_size // 2 + 1, halved by each strided convolution), D filters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["DiscriminatorOutput", "MultiScaleSTFTDiscriminator", "STFTDiscriminator"]

DEFAULT_FFT_SIZES = (2048, 1024, 512, 256, 128)


@dataclass(frozen=True)
class DiscriminatorOutput:
    """What a (multi-scale) discriminator says about a batch of audio.

    Attributes:
        logits: one [B, 1, T_k, F_k] map per scale k; higher means "real".
        features: per scale, the activation after each hidden convolution,
            [B, D, T_k, F] each (the inputs of the feature-matching loss).
    """

    logits: list[torch.Tensor]
    features: list[list[torch.Tensor]]


def _conv2d(in_channels: int, out_channels: int, kernel_size: tuple[int, int],
            stride: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1)) -> nn.Conv2d:
    """Weight-normalised Conv2d that keeps T and F (up to stride): 'same' padding."""
    padding = ((kernel_size[0] - 1) * dilation[0] // 2, (kernel_size[1] - 1) * dilation[1] // 2)
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                     dilation=dilation)
    return weight_norm(conv)


class STFTDiscriminator(nn.Module):
    """One scale of the discriminator.

    Complex STFT (Hann window of fft_size, hop_length, no centring, normalised by the
    window's energy as torchaudio's ``Spectrogram(normalized=True)`` in EnCodec) ->
    [real | imag] as 2C channels, laid out [B, 2C, T, F] ->
    Conv(2C -> D, (3, 9)) -> for each dilation d: Conv(D -> D, (3, 9), dilation (d, 1),
    stride (1, 2)) -> Conv(D -> D, (3, 3)) -> output Conv(D -> 1, (3, 3)).
    Every convolution but the output one is followed by LeakyReLU; all are weight-normed.
    """

    def __init__(self, channels: int = 2, filters: int = 64, fft_size: int = 1024,
                 hop_length: int | None = None, kernel_size: tuple[int, int] = (3, 9),
                 dilations: tuple[int, ...] = (1, 2, 4), stride: tuple[int, int] = (1, 2),
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        hop_length = fft_size // 4 if hop_length is None else hop_length
        if channels < 1 or filters < 1 or fft_size < 2 or hop_length < 1:
            raise ValueError(
                f"need channels, filters, hop_length >= 1 and fft_size >= 2, got channels="
                f"{channels}, filters={filters}, fft_size={fft_size}, hop_length={hop_length}"
            )
        self.channels = channels
        self.fft_size = fft_size
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(fft_size), persistent=False)

        time_kernel = kernel_size[0]
        self.input_conv = _conv2d(2 * channels, filters, kernel_size)
        self.dilated_convs = nn.ModuleList(
            _conv2d(filters, filters, kernel_size, stride=stride, dilation=(d, 1))
            for d in dilations
        )
        self.mixing_conv = _conv2d(filters, filters, (time_kernel, time_kernel))
        self.output_conv = _conv2d(filters, 1, (time_kernel, time_kernel))
        self.activation = nn.LeakyReLU(negative_slope)

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, C, S] -> [B, 2C, T, F]: real parts of every channel, then imaginary."""
        batch, channels, num_samples = audio.shape
        spec = torch.stft(audio.reshape(batch * channels, num_samples), n_fft=self.fft_size,
                          hop_length=self.hop_length, window=self.window, center=False,
                          return_complex=True)  # [B*C, F, T]
        spec = spec / self.window.square().sum().sqrt()
        spec = spec.reshape(batch, channels, *spec.shape[-2:])  # [B, C, F, T]
        return torch.cat([spec.real, spec.imag], dim=1).transpose(-1, -2)  # [B, 2C, T, F]

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """audio [B, C, S], S >= fft_size -> (logits [B, 1, T, F'],
        features [[B, D, T, F_l] per layer])."""
        if audio.dim() != 3 or audio.shape[1] != self.channels:
            raise ValueError(f"expected audio [B, {self.channels}, S], got "
                             f"{tuple(audio.shape)}")
        if audio.shape[-1] < self.fft_size:
            raise ValueError(f"audio of {audio.shape[-1]} samples is shorter than the "
                             f"discriminator FFT ({self.fft_size})")
        h = self.spectrogram(audio)  # [B, 2C, T, F]
        features = []
        for conv in (self.input_conv, *self.dilated_convs, self.mixing_conv):
            h = self.activation(conv(h))
            features.append(h)
        return self.output_conv(h), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """EnCodec's MS-STFT discriminator: one :class:`STFTDiscriminator` per FFT size,
    hop fft_size / 4, window fft_size (SYSTEM.md: 2048 ... 128, 64 filters)."""

    def __init__(self, channels: int = 2, filters: int = 64,
                 fft_sizes: tuple[int, ...] = DEFAULT_FFT_SIZES,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        if not fft_sizes:
            raise ValueError("fft_sizes must name at least one scale")
        self.channels = channels
        self.fft_sizes = tuple(fft_sizes)
        self.scales = nn.ModuleList(
            STFTDiscriminator(channels, filters, fft_size, fft_size // 4,
                              negative_slope=negative_slope)
            for fft_size in self.fft_sizes
        )

    def forward(self, audio: torch.Tensor) -> DiscriminatorOutput:
        """audio [B, C, S] with S >= max(fft_sizes) -> logits and features of every scale."""
        logits, features = [], []
        for scale in self.scales:
            scale_logits, scale_features = scale(audio)
            logits.append(scale_logits)
            features.append(scale_features)
        return DiscriminatorOutput(logits=logits, features=features)

"""The spectral VAE: an encoder of STFT magnitudes and an inverse-STFT decoder, at the
same latent rate and width as the Oobleck VAE (``VAEConfig(architecture="spectral")``).

Not in the paper. It is longplay's answer to a VAE small enough to train on a few CPU
cores that still keeps pitch: the Oobleck decoder of that size (2M parameters, 16
channels at the audio rate) learns the spectral envelope of music but not its
harmonics, and its upsampling stages leave tonal artefacts. Here every layer runs at the
STFT's frame rate (86 Hz for a hop of 512 at 44.1 kHz) or at the latent rate, so the
same compute buys a network ten times as wide, and the decoder writes its output as
STFT magnitudes and phases, turned into audio by one inverse STFT (the head of Vocos,
Siuzdenko et al. 2023, "Vocos: Closing the gap between time-domain and Fourier-based
neural vocoders"): harmonics are single bins to get right, there is no upsampling to
leave a comb of tones, and the two lowest bins are held at zero, so decoded audio has no
DC.

``strides`` is ``(frame_hop, down)``: an STFT of window and size ``4 * frame_hop`` and
hop ``frame_hop``, then a strided convolution by ``down``; the latent hop is their
product. ``channel_mults`` gives the width of the two stages (``channels * mult``),
``encoder_blocks`` / ``decoder_blocks`` their numbers of ConvNeXt blocks (frame rate
first).

Beside the networks, each side has a linear path between the compressed magnitudes and
the latent (``SpectralEncoder.linear``, ``SpectralDecoder.linear``: one latent frame's
``down`` STFT frames of every channel, to and from its latent vector). It starts at zero,
so the VAE is the networks alone, unless :func:`init_linear_paths` sets it from a
principal component analysis of training audio: then the VAE starts as the best linear
autoencoder of log-magnitudes at the latent's size, which keeps which bins are loud (the
harmonics of the music), and the networks are trained as corrections to it (zero at the
start). A network trained from random weights on a few CPU cores learns the spectral
envelope in a few thousand steps but not the harmonics; the linear path has them from
the first step.

Shape legend: B batch, C audio channels, S samples, F = 2 * frame_hop + 1 frequency bins,
N STFT frames (S / frame_hop), D latent channels, T latent frames (N / down).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from longplay.autoencoder.distribution import MIN_STD

FRAME_KERNEL = 7
"""Depthwise kernel of the blocks at the frame rate (about 80 ms at a hop of 512)."""
LATENT_KERNEL = 3
"""Depthwise kernel of the blocks at the latent rate."""
MLP_RATIO = 3
MAX_LOG_MAGNITUDE = 8.0
"""Upper clamp of the decoder's log-magnitudes (e^8 ≈ 3000; a full-scale sine under a
Hann window of 2048 peaks near 512)."""
FEATURE_FLOOR = 1e-3
"""The encoder reads ``log(1 + |X| / FEATURE_FLOOR)``: zero for silence, so that the
features of quiet bins (most bins of tonal music) are not one large common value that
hides which bins are loud."""
INITIAL_LOG_MAGNITUDE = -4.0
"""The decoder's log-magnitudes at initialisation (e^-4 per bin, 89 dB below the peak bin
of a full-scale sine), so that training builds the spectrum up from near silence rather
than from loud noise."""
DC_BINS = 2
"""The lowest bins the decoder leaves empty (DC and sample_rate / n_fft, 21.5 Hz at 44.1 kHz
and n_fft 2048): a Hann-windowed frame without them has zero mean, so the decoded audio
has no DC offset (below the lowest note of a piano, 27.5 Hz)."""
OVERLAP = 4
"""STFT window (and size) over hop: a Hann window with 75 % overlap."""
LINEAR_INIT_MAGNITUDE_FLOOR = 1e-4
""":func:`init_linear_paths` fits the decoder's linear path to ``log(|X| + floor)``
(-134 dB below the peak bin of a full-scale sine), so that silent bins are a finite
target."""
LINEAR_INIT_STD = 0.05
"""The posterior's standard deviation after :func:`init_linear_paths` (the latent means
then have unit variance per channel)."""


def fft_size(frame_hop: int) -> int:
    """The STFT window and size of a spectral VAE with ``frame_hop``: ``OVERLAP`` hops."""
    return OVERLAP * frame_hop


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm over channels -> Linear (x3) -> GELU -> Linear, scaled
    per channel and added to the input (ConvNeXt, as Vocos uses it along time)."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2,
                                groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.fc1 = nn.Linear(channels, MLP_RATIO * channels)
        self.fc2 = nn.Linear(MLP_RATIO * channels, channels)
        self.scale = nn.Parameter(torch.full((channels,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, W, N] -> [B, W, N]."""
        h = self.dwconv(x).transpose(1, 2)
        h = self.fc2(F.gelu(self.fc1(self.norm(h)))) * self.scale
        return x + h.transpose(1, 2)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of [B, W, N]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _stack(channels: int, count: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(*(ConvNeXtBlock(channels, kernel_size) for _ in range(count)))


def _window(n_fft: int, like: torch.Tensor) -> torch.Tensor:
    return torch.hann_window(n_fft, device=like.device, dtype=like.dtype)


class SpectralEncoder(nn.Module):
    """audio [B, C, S] -> posterior parameters [B, 2D, S / hop] (means, then raw scales):
    compressed magnitudes of a centred STFT -> 1x1 conv -> LayerNorm -> ConvNeXt blocks at
    the frame rate -> strided conv -> ConvNeXt blocks at the latent rate -> LayerNorm ->
    1x1 conv, plus the linear path. S must be a multiple of the hop."""

    def __init__(self, audio_channels: int, channels: int, channel_mults: tuple[int, int],
                 strides: tuple[int, int], blocks: tuple[int, int], latent_dim: int) -> None:
        super().__init__()
        self.frame_hop, self.down = strides
        self.n_fft = fft_size(self.frame_hop)
        frame_width, latent_width = (channels * m for m in channel_mults)
        self.stem = nn.Conv1d(audio_channels * (self.n_fft // 2 + 1), frame_width, 1)
        self.stem_norm = ChannelNorm(frame_width)
        self.frame_blocks = _stack(frame_width, blocks[0], FRAME_KERNEL)
        self.downsample = nn.Conv1d(frame_width, latent_width, self.down, stride=self.down)
        self.latent_blocks = _stack(latent_width, blocks[1], LATENT_KERNEL)
        self.head_norm = ChannelNorm(latent_width)
        self.head = nn.Conv1d(latent_width, 2 * latent_dim, 1)
        # compressed magnitudes of a latent frame's STFT frames -> posterior parameters
        self.linear = nn.Conv1d(audio_channels * (self.n_fft // 2 + 1), 2 * latent_dim,
                                self.down, stride=self.down)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        # Its input is scaled by 1 / sqrt(fan-in) (StyleGAN's equalised learning rate):
        # thousands of inputs and no norm after it, so an optimiser step of the usual
        # size on the raw weights would move the latent by several units.
        self.linear_gain = (self.linear.in_channels * self.down) ** -0.5

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, C, S] -> the STFT the encoder reads, [B, C, F, S / frame_hop] complex
        (float32 at least): frame n centred on sample n * frame_hop (reflect-padded at the
        edges), on the decoder's grid."""
        b, c, s = audio.shape
        wave = audio.reshape(b * c, s)
        wave = wave if wave.dtype in (torch.float32, torch.float64) else wave.float()
        spec = torch.stft(wave, self.n_fft, self.frame_hop, window=_window(self.n_fft, wave),
                          center=True, return_complex=True)
        frames = s // self.frame_hop
        return spec[..., :frames].reshape(b, c, spec.shape[-2], frames)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, C, S] -> compressed magnitudes ``log(1 + |X| / FEATURE_FLOOR)``
        [B, C * F, S / frame_hop] of :meth:`stft`."""
        features = self.stft(audio).abs().div(FEATURE_FLOOR).log1p()
        return features.flatten(1, 2).to(audio.dtype)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        features = self.features(audio)
        h = self.frame_blocks(self.stem_norm(self.stem(features)))
        return (self.head(self.head_norm(self.latent_blocks(self.downsample(h))))
                + self.linear(features * self.linear_gain))


class SpectralDecoder(nn.Module):
    """latents [B, D, T] -> audio [B, C, T * hop]: 3-wide conv -> LayerNorm -> ConvNeXt
    blocks at the latent rate -> transposed conv (kernel = stride, so no overlap) ->
    ConvNeXt blocks at the frame rate -> LayerNorm -> linear head to log-magnitudes and
    phases of every channel's bins (the log-magnitudes plus the linear path's) -> inverse
    STFT. The lowest ``DC_BINS`` bins are zero."""

    def __init__(self, audio_channels: int, channels: int, channel_mults: tuple[int, int],
                 strides: tuple[int, int], blocks: tuple[int, int], latent_dim: int) -> None:
        super().__init__()
        self.audio_channels = audio_channels
        self.frame_hop, self.up = strides
        self.n_fft = fft_size(self.frame_hop)
        self.bins = self.n_fft // 2 + 1
        frame_width, latent_width = (channels * m for m in channel_mults)
        self.stem = nn.Conv1d(latent_dim, latent_width, LATENT_KERNEL,
                              padding=LATENT_KERNEL // 2)
        self.stem_norm = ChannelNorm(latent_width)
        self.latent_blocks = _stack(latent_width, blocks[1], LATENT_KERNEL)
        self.upsample = nn.ConvTranspose1d(latent_width, frame_width, self.up, stride=self.up)
        self.frame_blocks = _stack(frame_width, blocks[0], FRAME_KERNEL)
        self.norm = nn.LayerNorm(frame_width)
        self.head = nn.Linear(frame_width, audio_channels * 2 * self.bins)
        with torch.no_grad():  # start near silence: log-magnitudes of about INITIAL_LOG_MAGNITUDE
            self.head.bias.view(audio_channels, 2, self.bins)[:, 0] = INITIAL_LOG_MAGNITUDE
        # a latent frame -> log-magnitudes of its STFT frames (kernel = stride: no overlap)
        self.linear = nn.ConvTranspose1d(latent_dim, audio_channels * self.bins, self.up,
                                         stride=self.up)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def spectrum(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, D, T] -> complex STFT [B, C, F, T * up] (the lowest ``DC_BINS`` bins
        zero), complex64 or complex128."""
        h = self.latent_blocks(self.stem_norm(self.stem(latents)))
        h = self.frame_blocks(self.upsample(h))
        # [B, N, C * 2 * F], in float32 at least: the complex STFT has no half types
        h = self.head(self.norm(h.transpose(1, 2))).float()
        b, n, _ = h.shape
        h = h.reshape(b, n, self.audio_channels, 2, self.bins).permute(0, 2, 3, 4, 1)
        log_magnitude = h[:, :, 0] + self.linear(latents).float().view(b, self.audio_channels,
                                                                       self.bins, n)
        magnitude = log_magnitude.clamp(max=MAX_LOG_MAGNITUDE).exp()
        # No DC: bins 0 and 1 are zero, so each frame stays zero-mean once the Hann
        # synthesis window (which moves energy by one bin) is applied.
        magnitude = F.pad(magnitude[:, :, DC_BINS:], (0, 0, DC_BINS, 0))
        return torch.polar(magnitude, h[:, :, 1] + self.carrier_phase(n, h))

    def bytes_per_latent_frame(self, itemsize: int) -> float:
        """Estimated peak activation bytes of decoding one latent frame. Per STFT frame:
        the widest activations (the blocks' MLP), the head's and the linear path's outputs
        and the complex spectrum (float32 whatever the dtype), and the overlap-add; with a
        margin of 1.25."""
        width = self.norm.normalized_shape[0]
        per_frame = (2 * MLP_RATIO * width * itemsize
                     + 4 * (self.head.out_features + self.linear.out_channels) * 4
                     + 4 * self.n_fft * self.audio_channels)
        return 1.25 * per_frame * self.up

    def carrier_phase(self, frames: int, like: torch.Tensor) -> torch.Tensor:
        """[F, frames] the phase of a steady sinusoid at each bin's centre frequency in
        each frame: ``2 pi k n hop / n_fft`` = ``(pi / 2) k (n mod 4)``. The head predicts
        the phase relative to it, so that an output that stays the same from frame to frame
        is a set of steady tones, not a pulse train at the frame rate (a comb at multiples
        of sample_rate / hop). Frame n is counted from the start of the latents; chunks
        start at latent frames, and ``up`` is a multiple of 4, so it is the same in a chunk
        as in the whole."""
        k = torch.arange(self.bins, device=like.device)
        n = torch.arange(frames, device=like.device)
        quarter_turns = (k[:, None] * n[None, :]) % OVERLAP  # exact, in integers
        return quarter_turns.to(like.dtype) * (2 * torch.pi / OVERLAP)

    def synthesize(self, spec: torch.Tensor) -> torch.Tensor:
        """complex STFT [B, C, F, N] -> audio [B, C, N * hop] (float32 at least), by the
        inverse STFT the decoder ends with."""
        b, c, f, n = spec.shape
        # A centred STFT of N * hop samples has N + 1 frames: the last one repeated.
        spec = torch.cat([spec, spec[..., -1:]], dim=-1).reshape(b * c, f, n + 1)
        audio = torch.istft(spec, self.n_fft, self.frame_hop, window=_window(self.n_fft, spec.real),
                            center=True, length=n * self.frame_hop)
        return audio.reshape(b, c, n * self.frame_hop)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.synthesize(self.spectrum(latents)).to(latents.dtype)


def _latent_frames(x: torch.Tensor, down: int) -> torch.Tensor:
    """[B, K, N] -> [B * (N // down), K * down]: each latent frame's ``down`` frames, in
    the order of a Conv1d weight's (in channel, kernel tap)."""
    b, k, n = x.shape
    t = n // down
    x = x[..., : t * down].reshape(b, k, t, down)
    return x.permute(0, 2, 1, 3).reshape(b * t, k * down)


@torch.no_grad()
def init_linear_paths(encoder: SpectralEncoder, decoder: SpectralDecoder,
                      audio: torch.Tensor) -> dict[str, float]:
    """Set the linear paths of a spectral VAE from a principal component analysis of
    ``audio``, and zero the networks' heads, so that the VAE starts as the best linear
    autoencoder of the compressed magnitudes at the latent's size:

    - encoder: the latent means are the first D principal components of each latent
      frame's compressed magnitudes (``down`` STFT frames of every channel), each scaled
      to unit variance over ``audio``; the posterior's standard deviation is
      ``LINEAR_INIT_STD``;
    - decoder: the least-squares map from those means to the log-magnitudes
      ``log(|X| + LINEAR_INIT_MAGNITUDE_FLOOR)`` of the same frames; phases start at
      each bin's carrier (steady tones).

    Args:
        encoder, decoder: of one spectral VAE.
        audio: [B, C, S] training windows, S a multiple of the latent hop; at least as
            many latent frames in all as the latent has channels (in practice a few
            thousand: a few hundred windows of a second).

    Returns:
        ``explained_variance``: the share of the features' variance that the D
        components hold, and ``frames``: the number of latent frames fitted.

    Raises:
        ValueError: fewer latent frames than latent channels, or silent audio.
    """
    latent_dim = encoder.linear.out_channels // 2
    features = encoder.features(audio.float())  # [B, C * F, N]
    x = _latent_frames(features, encoder.down).double()  # [M, C * F * down]
    if x.shape[0] < latent_dim:
        raise ValueError(f"{x.shape[0]} latent frames of audio cannot fit {latent_dim} "
                         "principal components: give more or longer training windows")
    mean = x.mean(dim=0)
    centred = x - mean
    total = centred.pow(2).sum()
    if total <= 0:
        raise ValueError("the audio to fit the linear paths to is silent (or constant): "
                         "give windows of training music")
    # The leading principal axes (randomised SVD: K = C F down is thousands wide; it draws
    # from the global random state, which the trainer seeds).
    rank = min(latent_dim + 32, *x.shape)
    _, singular, axes = torch.svd_lowrank(centred, q=rank, niter=6)
    values, vectors = singular[:latent_dim].pow(2), axes[:, :latent_dim]
    std = (values.clamp(min=1e-12) / max(x.shape[0] - 1, 1)).sqrt()
    projection = vectors / std  # [K, D]: unit-variance codes
    codes = centred @ projection  # [M, D]

    magnitude = features.double().expm1() * FEATURE_FLOOR
    target = _latent_frames((magnitude + LINEAR_INIT_MAGNITUDE_FLOOR).log(), decoder.up)
    bins = decoder.linear.out_channels
    # ConvTranspose1d's bias is per output channel (bin), shared by the `up` frames.
    bias = target.view(-1, bins, decoder.up).mean(dim=(0, 2))
    residual = target - bias.repeat_interleave(decoder.up)
    weight = torch.linalg.lstsq(codes, residual).solution  # [D, bins * up]

    enc, dec = encoder.linear, decoder.linear
    enc.weight.zero_()
    enc.bias.zero_()
    enc.weight[:latent_dim] = (projection.T / encoder.linear_gain).reshape(
        latent_dim, -1, encoder.down).to(enc.weight)
    enc.bias[:latent_dim] = -(mean @ projection).to(enc.bias)
    # raw scale s with softplus(s) + MIN_STD = LINEAR_INIT_STD
    enc.bias[latent_dim:] = math.log(math.expm1(LINEAR_INIT_STD - MIN_STD))
    dec.weight.copy_(weight.reshape(latent_dim, bins, decoder.up).to(dec.weight))
    dec.bias.copy_(bias.to(dec.bias))
    for head in (encoder.head, decoder.head):
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    return {"explained_variance": float(values.sum() / total), "frames": int(x.shape[0])}

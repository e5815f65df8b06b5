"""Training losses of the VAE (SYSTEM.md section 2): an A-weighted multi-resolution STFT
reconstruction loss on mid/side and left/right, hinge GAN losses, feature matching, KL.

Shape legend: B batch, C audio channels, S samples, F frequency bins, T STFT frames,
D latent channels or discriminator filters.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from longplay.audio.spectral import mel_filterbank, stft_complex, stft_magnitude
from longplay.autoencoder.discriminators import MultiScaleSTFTDiscriminator
from longplay.autoencoder.distribution import LatentDistribution

__all__ = [
    "DEFAULT_MEL_SCALES",
    "DEFAULT_STFT_FFT_SIZES",
    "AWeighting",
    "DiscriminatorLosses",
    "GeneratorLosses",
    "LowBandLoss",
    "MultiResolutionSTFTLoss",
    "MultiScaleMelLoss",
    "ReconstructionLoss",
    "VAELossWeights",
    "VAELosses",
    "VAEReconstructionLoss",
    "a_weighting_fir",
    "discriminator_hinge_loss",
    "feature_matching_loss",
    "generator_hinge_loss",
]

DEFAULT_STFT_FFT_SIZES = (2048, 1024, 512, 256, 128, 64, 32)

# (window length, mel bands) of the multi-scale mel loss, the scales of the Descript
# Audio Codec's mel reconstruction loss.
DEFAULT_MEL_SCALES = ((32, 5), (64, 10), (128, 20), (256, 40), (512, 80), (1024, 160),
                      (2048, 320))

# Pole frequencies (Hz) and the 1 kHz gain correction (dB) of the analog A-weighting
# filter of IEC 61672 (IEC/CD 1672), as auraloss and stable-audio-tools use them.
_A_WEIGHTING_POLES_HZ = (20.598997, 107.65265, 737.86223, 12194.217)
_A_WEIGHTING_1KHZ_DB = 1.9997


# --- A-weighting pre-filter ---------------------------------------------------------------


def _a_weighting_analog_gain(frequencies_hz: np.ndarray) -> np.ndarray:
    """|H_A(j 2 pi f)| of the analog A-weighting filter
    H_A(s) = k4 s^4 / ((s + w1)^2 (s + w2) (s + w3) (s + w4)^2), w_i = 2 pi f_i."""
    f1, f2, f3, f4 = _A_WEIGHTING_POLES_HZ
    s = 2j * np.pi * np.asarray(frequencies_hz, dtype=np.float64)
    w1, w2, w3, w4 = (2 * np.pi * f for f in (f1, f2, f3, f4))
    numerator = w4**2 * 10 ** (_A_WEIGHTING_1KHZ_DB / 20) * s**4
    denominator = (s + w1) ** 2 * (s + w2) * (s + w3) * (s + w4) ** 2
    return np.abs(numerator / denominator)


def a_weighting_fir(sample_rate: int, num_taps: int = 101) -> np.ndarray:
    """Linear-phase FIR approximation of the digital A-weighting filter.

    As auraloss's ``FIRFilter(filter_type="aw")``, the target is the magnitude response of
    the bilinear transform of the analog A-weighting filter, that is the analog gain at
    the pre-warped frequency 2 fs tan(w / 2) / (2 pi), fitted by a symmetric (type I) FIR
    in the least-squares sense over [0, fs / 2] (auraloss calls ``scipy.signal.firls``;
    here the fit is a dense-grid least squares in numpy). Two differences, both towards
    the A-weighting curve: the fit is constrained to a zero at DC (the analog filter has a
    fourth-order zero there; the unconstrained 101-tap fit leaks about -19 dB at DC and
    50 Hz, against -30 dB for A-weighting at 50 Hz), and the taps are scaled to exactly
    0 dB at 1 kHz.

    Args:
        sample_rate: in Hz, above 2 kHz so that 1 kHz is below Nyquist.
        num_taps: odd filter length (delay (num_taps - 1) / 2 samples).

    Returns:
        [num_taps] float64 taps, symmetric.
    """
    if sample_rate <= 2000:
        raise ValueError(f"sample_rate must exceed 2000 Hz, got {sample_rate}")
    if num_taps < 3 or num_taps % 2 == 0:
        raise ValueError(f"num_taps must be odd and >= 3, got {num_taps}")
    half = num_taps // 2
    # Mid-point grid on (0, pi): the warped frequency is infinite at pi itself.
    num_points = max(4096, 16 * num_taps)
    omega = np.pi * (np.arange(num_points) + 0.5) / num_points  # [P] rad/sample
    warped_hz = sample_rate * np.tan(omega / 2) / np.pi
    target = _a_weighting_analog_gain(warped_hz)  # [P]

    # Zero-phase amplitude A(w) = a_0 + 2 sum_k a_k cos(k w), with h[half +- k] = a_k.
    k = np.arange(half + 1)
    basis = np.cos(np.outer(omega, k))  # [P, half + 1]
    basis[:, 1:] *= 2
    # Equality-constrained least squares, A(0) = sum(h) = 0, by its KKT system.
    dc_row = np.concatenate([[1.0], np.full(half, 2.0)])[None, :]  # [1, half + 1]
    kkt = np.block([[basis.T @ basis, dc_row.T], [dc_row, np.zeros((1, 1))]])
    rhs = np.concatenate([basis.T @ target, [0.0]])
    amplitudes = np.linalg.solve(kkt, rhs)[: half + 1]
    taps = np.concatenate([amplitudes[:0:-1], amplitudes])  # [num_taps]

    gain_1khz = np.abs(np.exp(-2j * np.pi * 1000.0 * np.arange(num_taps) / sample_rate) @ taps)
    return taps / gain_1khz


class AWeighting(nn.Module):
    """Filters every channel of [B, C, S] audio with :func:`a_weighting_fir`, zero-padded
    so that the output is aligned with and as long as the input (as auraloss).

    The taps are a non-persistent buffer: they follow ``.to(device)`` but are rebuilt
    from ``sample_rate``, never loaded.
    """

    def __init__(self, sample_rate: int, num_taps: int = 101) -> None:
        super().__init__()
        taps = torch.from_numpy(a_weighting_fir(sample_rate, num_taps)).float()
        self.register_buffer("taps", taps.view(1, 1, -1), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, C, S] -> [B, C, S]."""
        batch, channels, num_samples = audio.shape
        # conv1d is a correlation; the taps are symmetric, so it is also the convolution.
        filtered = F.conv1d(audio.reshape(batch * channels, 1, num_samples),
                            self.taps.to(audio.dtype), padding=self.taps.shape[-1] // 2)
        return filtered.view(batch, channels, num_samples)


# --- Reconstruction ------------------------------------------------------------------------


def _float_pair(prediction: torch.Tensor,
                target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Checks two [B, C, S] signals of one shape and promotes them to at least float32, so
    that STFTs and logs stay accurate under half-precision autocast."""
    if prediction.shape != target.shape or prediction.dim() != 3:
        raise ValueError("prediction and target must both be [B, C, S], got "
                         f"{tuple(prediction.shape)} and {tuple(target.shape)}")
    dtype = torch.promote_types(prediction.dtype, torch.float32)
    return prediction.to(dtype), target.to(dtype)


class MultiResolutionSTFTLoss(nn.Module):
    """Multi-resolution STFT loss (Parallel WaveGAN, Yamamoto et al. 2020), as auraloss's
    ``MultiResolutionSTFTLoss`` with ``perceptual_weighting=True`` in stable-audio-tools.

    Every channel of every item is one signal x (prediction) with target y. Both are
    A-weighted (optional), then for each FFT size N (hop N / 4, Hann window of N, centred
    frames) with magnitudes |X| = max(|STFT(x)|, min_magnitude), stacked over all the
    signals of the call into one [B*C, F, T] tensor:

        L_N = || |Y| - |X| ||_F / || |Y| ||_F       (spectral convergence, whole batch)
            + mean over signals, bins and frames of | log|Y| - log|X| |  (log magnitude L1)

    and the loss is the mean of L_N over the resolutions. ``min_magnitude`` = 1e-4 is
    auraloss's clamp of the power at 1e-8; it also keeps a silent target (the side of a
    mono recording) from dividing by zero.

    The spectral convergence is one ratio of norms over the whole batch, as auraloss
    computes it, not a mean of per-signal ratios: a per-signal ratio explodes on a
    near-silent window (a rest, a fade, the side of a centred instrument), where any
    output divided by a norm of about ``min_magnitude`` costs hundreds, and a few such
    windows then outweigh the rest of the batch and drive the autoencoder to quiet,
    input-independent output.
    """

    def __init__(self, sample_rate: int, fft_sizes: tuple[int, ...] = DEFAULT_STFT_FFT_SIZES,
                 a_weighting: bool = True, min_magnitude: float = 1e-4) -> None:
        super().__init__()
        if not fft_sizes or min(fft_sizes) < 4:
            raise ValueError(f"fft_sizes must be non-empty and each >= 4, got {fft_sizes}")
        if min_magnitude <= 0:
            raise ValueError(f"min_magnitude must be positive, got {min_magnitude}")
        self.sample_rate = sample_rate
        self.fft_sizes = tuple(fft_sizes)
        self.min_magnitude = min_magnitude
        self.weighting = AWeighting(sample_rate) if a_weighting else None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """prediction, target: [B, C, S] with S > max(fft_sizes) / 2 -> scalar."""
        prediction, target = _float_pair(prediction, target)
        if self.weighting is not None:
            prediction, target = self.weighting(prediction), self.weighting(target)
        total = prediction.new_zeros(())
        for fft_size in self.fft_sizes:
            x = stft_magnitude(prediction, fft_size, fft_size // 4).clamp(min=self.min_magnitude)
            y = stft_magnitude(target, fft_size, fft_size // 4).clamp(min=self.min_magnitude)
            # x, y: [B, C, F, T]
            convergence = torch.linalg.vector_norm(y - x) / torch.linalg.vector_norm(y)
            log_magnitude = F.l1_loss(x.log(), y.log())
            total = total + convergence + log_magnitude
        return total / len(self.fft_sizes)


LONG_WINDOW_FFT_SIZES = (8192, 4096)
"""The long-window STFT loss: the MR-STFT loss's terms at windows of 186 and 93 ms
(bins of 5.4 and 10.8 Hz), without A-weighting. The MR-STFT windows (2048 samples and
shorter) cannot tell a tone from a comb of lines 21.5 Hz apart or more; these resolve
the partials of a melody, and how far they lie from the input's."""


class MultiScaleMelLoss(nn.Module):
    """Multi-scale mel loss (as in the Descript Audio Codec), an optional extra
    reconstruction term: not part of the Stable Audio objective (its weight defaults to 0).

    Every channel of every item is one signal. For each (window N, bands M) scale, with
    hop N / 4, a centred Hann STFT and mel magnitudes X = filterbank_M @ |STFT(x)| (Slaney
    scale, area-normalised, f_min 0, f_max Nyquist):

        L_N = mean | log10 max(X, eps) - log10 max(Y, eps) | + mean | X - Y |,  eps = 1e-5

    and the loss is the sum of L_N over the scales. A mel band pools neighbouring STFT
    bins, so it weighs the spectral envelope more and the exact placement of harmonics
    less than the linear-frequency MR-STFT loss.
    """

    def __init__(self, sample_rate: int,
                 scales: tuple[tuple[int, int], ...] = DEFAULT_MEL_SCALES,
                 eps: float = 1e-5) -> None:
        super().__init__()
        if not scales or any(n < 4 or m < 1 for n, m in scales):
            raise ValueError(f"scales must be non-empty (window >= 4, bands >= 1), got {scales}")
        self.scales = tuple(scales)
        self.eps = eps
        for n, m in self.scales:
            self.register_buffer(f"filterbank_{n}_{m}",
                                 mel_filterbank(sample_rate, n, m).float(), persistent=False)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """prediction, target: [B, C, S] -> scalar."""
        prediction, target = _float_pair(prediction, target)
        dtype = prediction.dtype
        total = prediction.new_zeros(())
        for n, m in self.scales:
            fb = getattr(self, f"filterbank_{n}_{m}").to(dtype)  # [M, F]
            x = fb @ stft_magnitude(prediction, n, n // 4)  # [B, C, M, T]
            y = fb @ stft_magnitude(target, n, n // 4)
            total = (total + F.l1_loss(x.clamp(min=self.eps).log10(), y.clamp(min=self.eps).log10())
                     + F.l1_loss(x, y))
        return total


class LowBandLoss(nn.Module):
    """What the A-weighted MR-STFT loss hardly sees: DC and the lowest octaves. An optional
    extra term (its weight defaults to 0), not part of the Stable Audio objective.

    A-weighting is -50 dB at 20 Hz and -30 dB at 50 Hz, and the short windows of the
    MR-STFT cannot resolve a bass line's fundamentals, so a decoder trained on it alone
    may add DC and lose the low octave unnoticed. Every channel of every item is one
    signal; for each FFT size N (hop N / 4, centred Hann frames), with the complex
    coefficients X = STFT(x), Y = STFT(y) of the bins below ``cutoff_hz`` (DC included)
    and m = max(|.|, min_magnitude) their magnitudes:

        L_N = || Y - X ||_F / || Y ||_F + mean | log m(Y) - log m(X) |

    The first term compares complex coefficients, so it also asks for the phase of the
    low band (a waveform term restricted to it: the low octaves carry most of music's
    energy, hence most of what SI-SDR measures). The loss is the mean of L_N over the
    sizes plus the per-signal DC error relative to the target's level, mean over signals
    of |mean(x) - mean(y)| / (rms(y) + dc_floor). The floor (1e-2, -40 dBFS) keeps the
    DC of quiet windows (rests, fades) from outweighing everything else: relative to
    1e-3 a small VAE's early DC made the term dominate its gradients, and its output
    settled on one quiet average for every input.
    The defaults (4096 and 2048: bins of 10.8 and 21.5 Hz at 44.1 kHz, up to 500 Hz)
    resolve the fundamentals of a bass line and the first harmonics above them.
    """

    def __init__(self, sample_rate: int, fft_sizes: tuple[int, ...] = (4096, 2048),
                 cutoff_hz: float = 500.0, min_magnitude: float = 1e-4,
                 dc_floor: float = 1e-2) -> None:
        super().__init__()
        if not fft_sizes or min(fft_sizes) < 4:
            raise ValueError(f"fft_sizes must be non-empty and each >= 4, got {fft_sizes}")
        if not 0 < cutoff_hz <= sample_rate / 2:
            raise ValueError(f"cutoff_hz must be in (0, {sample_rate / 2}], got {cutoff_hz}")
        self.sample_rate = sample_rate
        self.fft_sizes = tuple(fft_sizes)
        self.cutoff_hz = cutoff_hz
        self.min_magnitude = min_magnitude
        self.dc_floor = dc_floor

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """prediction, target: [B, C, S] with S > max(fft_sizes) / 2 -> scalar."""
        prediction, target = _float_pair(prediction, target)
        total = prediction.new_zeros(())
        for fft_size in self.fft_sizes:
            bins = int(self.cutoff_hz * fft_size / self.sample_rate) + 1
            x = stft_complex(prediction, fft_size, fft_size // 4)[..., :bins, :]
            y = stft_complex(target, fft_size, fft_size // 4)[..., :bins, :]
            convergence = torch.linalg.vector_norm(y - x) / (torch.linalg.vector_norm(y)
                                                             + self.min_magnitude)
            log_x = x.abs().clamp(min=self.min_magnitude).log()
            log_y = y.abs().clamp(min=self.min_magnitude).log()
            total = total + convergence + F.l1_loss(log_x, log_y)
        dc_error = (prediction.mean(dim=-1) - target.mean(dim=-1)).abs()  # [B, C]
        level = target.pow(2).mean(dim=-1).sqrt() + self.dc_floor
        return total / len(self.fft_sizes) + (dc_error / level).mean()


@dataclass(frozen=True)
class ReconstructionLoss:
    """The terms of :class:`VAEReconstructionLoss`, weighted as they enter ``total``.

    Attributes:
        total: scalar, mid_side + left_right.
        mid_side: scalar, [MRSTFT(L + R) + MRSTFT(L - R)] / 2.
        left_right: scalar, 0.5 MRSTFT(L) + 0.5 MRSTFT(R).
    """

    total: torch.Tensor
    mid_side: torch.Tensor
    left_right: torch.Tensor


class VAEReconstructionLoss(nn.Module):
    """Stereo reconstruction loss of SYSTEM.md section 2 (stable-audio-tools' "mrstft"
    spectral loss with ``SumAndDifferenceSTFTLoss`` plus the per-channel terms):

        1.0 * [MRSTFT(L + R) + MRSTFT(L - R)] / 2 + 0.5 * MRSTFT(L) + 0.5 * MRSTFT(R).

    Each of the four signals (L + R, L - R, L, R) is its own call, as in stable-audio-tools,
    so that each term's spectral convergence is normalised by that signal's own energy
    over the batch (a quiet side channel is not swamped by the mid).
    """

    def __init__(self, sample_rate: int, fft_sizes: tuple[int, ...] = DEFAULT_STFT_FFT_SIZES,
                 a_weighting: bool = True) -> None:
        super().__init__()
        self.stft_loss = MultiResolutionSTFTLoss(sample_rate, fft_sizes, a_weighting)

    def forward(self, reconstruction: torch.Tensor, audio: torch.Tensor) -> ReconstructionLoss:
        """reconstruction (prediction), audio (target): [B, 2, S]."""
        if audio.dim() != 3 or audio.shape[1] != 2 or reconstruction.shape != audio.shape:
            raise ValueError("reconstruction and audio must both be stereo [B, 2, S], got "
                             f"{tuple(reconstruction.shape)} and {tuple(audio.shape)}")
        pred_ms, target_ms = _sum_and_difference(reconstruction), _sum_and_difference(audio)
        mid_side = 0.5 * (self._term(pred_ms, target_ms, 0) + self._term(pred_ms, target_ms, 1))
        left_right = 0.5 * (self._term(reconstruction, audio, 0)
                            + self._term(reconstruction, audio, 1))
        return ReconstructionLoss(total=mid_side + left_right, mid_side=mid_side,
                                  left_right=left_right)


    def _term(self, prediction: torch.Tensor, target: torch.Tensor,
              channel: int) -> torch.Tensor:
        """The multi-resolution loss of one channel of [B, 2, S] signals."""
        return self.stft_loss(prediction[:, channel:channel + 1],
                              target[:, channel:channel + 1])


def _sum_and_difference(audio: torch.Tensor) -> torch.Tensor:
    """[B, 2, S] (L, R) -> [B, 2, S] (L + R, L - R), unscaled as in auraloss."""
    left, right = audio.unbind(dim=1)
    return torch.stack([left + right, left - right], dim=1)


# --- Adversarial ---------------------------------------------------------------------------


def _check_scales(real: list, fake: list) -> None:
    if not fake or len(real) != len(fake):
        raise ValueError(f"need the same non-zero number of discriminator outputs, got "
                         f"{len(real)} real and {len(fake)} fake")


def discriminator_hinge_loss(real_logits: list[torch.Tensor],
                             fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the discriminator (Lim & Ye 2017), mean over discriminators k of

        mean(relu(1 - D_k(x))) + mean(relu(1 + D_k(x_hat))).

    real_logits, fake_logits: one logit map per discriminator, any shapes. Returns a scalar.
    """
    _check_scales(real_logits, fake_logits)
    losses = [F.relu(1 - real).mean() + F.relu(1 + fake).mean()
              for real, fake in zip(real_logits, fake_logits, strict=True)]
    return torch.stack(losses).mean()


def generator_hinge_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the generator, mean over discriminators k of mean(relu(1 - D_k(x_hat))).

    This is the clipped form of the hinge generator loss (EnCodec, Défossez et al. 2022,
    section 3.4; audiocraft's "hinge2"). stable-audio-tools' ``get_hinge_losses`` uses the
    unclipped -mean(D_k(x_hat)) instead, which has the same gradient wherever
    D_k(x_hat) < 1 but keeps pushing beyond. fake_logits: one logit map per
    discriminator. Returns a scalar.
    """
    if not fake_logits:
        raise ValueError("need at least one discriminator output")
    return torch.stack([F.relu(1 - fake).mean() for fake in fake_logits]).mean()


def feature_matching_loss(real_features: list[list[torch.Tensor]],
                          fake_features: list[list[torch.Tensor]],
                          eps: float = 1e-8) -> torch.Tensor:
    """EnCodec's relative feature-matching loss (Défossez et al. 2022, section 3.4):

        mean over discriminators k and layers l of
            mean(|D_k^l(x_hat) - D_k^l(x)|) / (mean(|D_k^l(x)|) + eps),

    each layer's L1 distance divided by the mean magnitude of the real features, every
    (k, l) weighted equally. The real features are targets: they are detached.

    real_features, fake_features: per discriminator, per layer, tensors of equal shapes.
    Returns a scalar.
    """
    _check_scales(real_features, fake_features)
    losses = []
    for real_layers, fake_layers in zip(real_features, fake_features, strict=True):
        _check_scales(real_layers, fake_layers)
        for real, fake in zip(real_layers, fake_layers, strict=True):
            if real.shape != fake.shape:
                raise ValueError(f"feature shapes differ: real {tuple(real.shape)}, "
                                 f"fake {tuple(fake.shape)}")
            real = real.detach()
            losses.append((fake - real).abs().mean() / (real.abs().mean() + eps))
    return torch.stack(losses).mean()


# --- The training objective ---------------------------------------------------------------


@dataclass(frozen=True)
class VAELossWeights:
    """Weights of the generator objective (SYSTEM.md section 2)."""

    reconstruction: float = 1.0
    adversarial: float = 0.1
    feature_matching: float = 5.0
    kl: float = 1e-4
    mel: float = 0.0
    """Weight of the optional :class:`MultiScaleMelLoss` (not in SYSTEM.md; 0 = off)."""
    low_band: float = 0.0
    """Weight of the optional :class:`LowBandLoss` (not in SYSTEM.md; 0 = off)."""
    long_window: float = 0.0
    """Weight of the optional long-window STFT loss (:data:`LONG_WINDOW_FFT_SIZES`,
    unweighted; not in SYSTEM.md; 0 = off)."""

    def __post_init__(self) -> None:
        for name in ("reconstruction", "adversarial", "feature_matching", "kl", "mel",
                     "low_band", "long_window"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"loss weight {name} must be finite and >= 0, got {value}")


@dataclass(frozen=True)
class GeneratorLosses:
    """Losses of one generator (encoder + decoder) step, unweighted except ``total``.

    Attributes:
        total: scalar to back-propagate, the weighted sum of the terms below.
        reconstruction: the :class:`ReconstructionLoss` terms.
        adversarial: scalar generator hinge loss; 0 without a discriminator.
        feature_matching: scalar relative feature L1; 0 without a discriminator.
        kl: scalar KL of the latent posterior to N(0, I).
        mel: scalar multi-scale mel loss; 0 when its weight is 0 (not computed).
        low_band: scalar low-band loss; 0 when its weight is 0 (not computed).
        long_window: scalar long-window STFT loss; 0 when its weight is 0 (not computed).
    """

    total: torch.Tensor
    reconstruction: ReconstructionLoss
    adversarial: torch.Tensor
    feature_matching: torch.Tensor
    kl: torch.Tensor
    mel: torch.Tensor
    low_band: torch.Tensor
    long_window: torch.Tensor


@dataclass(frozen=True)
class DiscriminatorLosses:
    """Losses of one discriminator step.

    Attributes:
        total: scalar discriminator hinge loss, to back-propagate.
    """

    total: torch.Tensor


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Turns off gradients for the module's parameters (not its inputs), then restores
    them: the generator step back-propagates through the discriminator without
    computing or accumulating the discriminator's own gradients."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class VAELosses(nn.Module):
    """The two halves of an adversarial VAE training step (generator and discriminator
    steps alternate, SYSTEM.md section 2); holds the reconstruction loss and its filters.
    """

    def __init__(self, sample_rate: int, fft_sizes: tuple[int, ...] = DEFAULT_STFT_FFT_SIZES,
                 a_weighting: bool = True) -> None:
        super().__init__()
        self.reconstruction_loss = VAEReconstructionLoss(sample_rate, fft_sizes, a_weighting)
        self.mel_loss = MultiScaleMelLoss(sample_rate)
        self.low_band_loss = LowBandLoss(sample_rate)
        self.long_window_loss = MultiResolutionSTFTLoss(sample_rate, LONG_WINDOW_FFT_SIZES,
                                                        a_weighting=False)

    def generator_losses(self, audio: torch.Tensor, reconstruction: torch.Tensor,
                         latent_dist: LatentDistribution,
                         discriminator: MultiScaleSTFTDiscriminator | None = None,
                         weights: VAELossWeights | None = None) -> GeneratorLosses:
        """Objective of the encoder and decoder.

        total = w_rec * reconstruction.total + w_kl * KL + w_mel * mel + w_low * low_band
                + w_long * long_window + w_adv * generator_hinge + w_fm * feature_matching,

        the last two only with a discriminator (None during warm-up), the mel, low-band and
        long-window terms only when their weights are positive.

        Args:
            audio: [B, 2, S] the real audio.
            reconstruction: [B, 2, S] the decoder's output, with its graph.
            latent_dist: the posterior the reconstruction was decoded from.
            discriminator: the adversary, or None for reconstruction + KL only. Its
                parameters get no gradients from this loss.
            weights: defaults to :class:`VAELossWeights` ().
        """
        weights = VAELossWeights() if weights is None else weights
        rec = self.reconstruction_loss(reconstruction, audio)
        kl = latent_dist.kl()
        total = weights.reconstruction * rec.total + weights.kl * kl
        mel = rec.total.new_zeros(())
        if weights.mel > 0:
            mel = self.mel_loss(reconstruction, audio)
            total = total + weights.mel * mel
        low_band = rec.total.new_zeros(())
        if weights.low_band > 0:
            low_band = self.low_band_loss(reconstruction, audio)
            total = total + weights.low_band * low_band
        long_window = rec.total.new_zeros(())
        if weights.long_window > 0:
            long_window = self.long_window_loss(reconstruction, audio)
            total = total + weights.long_window * long_window
        if discriminator is None:
            adversarial = feature_matching = rec.total.new_zeros(())
        else:
            with torch.no_grad():
                real = discriminator(audio)
            with _frozen(discriminator):
                fake = discriminator(reconstruction)
            adversarial = generator_hinge_loss(fake.logits)
            feature_matching = feature_matching_loss(real.features, fake.features)
            total = (total + weights.adversarial * adversarial
                     + weights.feature_matching * feature_matching)
        return GeneratorLosses(total=total, reconstruction=rec, adversarial=adversarial,
                               feature_matching=feature_matching, kl=kl, mel=mel,
                               low_band=low_band, long_window=long_window)

    def discriminator_losses(self, audio: torch.Tensor, reconstruction: torch.Tensor,
                             discriminator: MultiScaleSTFTDiscriminator) -> DiscriminatorLosses:
        """Hinge objective of the discriminator; the reconstruction is detached.

        audio, reconstruction: [B, C, S] real and decoded audio.
        """
        real = discriminator(audio)
        fake = discriminator(reconstruction.detach())
        return DiscriminatorLosses(total=discriminator_hinge_loss(real.logits, fake.logits))

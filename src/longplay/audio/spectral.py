"""STFT magnitudes and a Slaney-style mel filterbank (no librosa/scipy dependency).

The mel scale is Slaney's (the Auditory Toolbox, librosa's default ``htk=False``):
linear below 1 kHz with 200/3 Hz per mel (so 1 kHz is mel 15), logarithmic above
with a step of ln(6.4)/27 per mel. Each triangular filter spans three consecutive
points of ``n_mels + 2`` equally spaced mel values and is scaled by
``2 / (f_right - f_left)`` so that its area in Hz is constant (librosa's
``norm="slaney"``).

Shape legend: F frequency bins (n_fft // 2 + 1), T frames, M mel bands, S samples.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["hz_to_mel", "mel_filterbank", "mel_to_hz", "stft_magnitude"]

_F_SP = 200.0 / 3.0  # Hz per mel in the linear part
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15.0
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(frequencies: np.ndarray | float) -> np.ndarray:
    """Slaney mel value of frequencies in Hz (any shape, returns the same shape)."""
    f = np.asarray(frequencies, dtype=np.float64)
    mels = f / _F_SP
    log_part = f >= _MIN_LOG_HZ
    safe = np.where(log_part, f, _MIN_LOG_HZ)
    return np.where(log_part, _MIN_LOG_MEL + np.log(safe / _MIN_LOG_HZ) / _LOG_STEP, mels)


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel` (any shape, returns the same shape)."""
    m = np.asarray(mels, dtype=np.float64)
    log_part = m >= _MIN_LOG_MEL
    return np.where(log_part, _MIN_LOG_HZ * np.exp(_LOG_STEP * (m - _MIN_LOG_MEL)), _F_SP * m)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """Triangular Slaney mel filters with Slaney area normalisation.

    Args:
        sample_rate: sample rate of the analysed signal in Hz.
        n_fft: FFT size; the filters cover its n_fft // 2 + 1 non-negative bins.
        n_mels: number of bands M.
        f_min: lower edge of the first filter in Hz.
        f_max: upper edge of the last filter in Hz (Nyquist when None).

    Returns:
        [M, F] float32 weights; ``filterbank @ magnitude[F, T]`` gives [M, T].
    """
    if sample_rate <= 0 or n_fft <= 0 or n_mels <= 0:
        raise ValueError(
            "sample_rate, n_fft and n_mels must be positive, got "
            f"sample_rate={sample_rate}, n_fft={n_fft}, n_mels={n_mels}."
        )
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}.")
    fft_freqs = np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)  # [F] bin centres in Hz
    mel_points = np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    hz_points = mel_to_hz(mel_points)  # [M + 2] filter edges and centres
    widths = np.diff(hz_points)  # [M + 1]
    # distance of each bin from each edge point, [M + 2, F]
    ramps = hz_points[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]  # [M, F], 1 at the centre, 0 at the left edge
    falling = ramps[2:] / widths[1:, None]  # [M, F], 1 at the centre, 0 at the right edge
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def stft_complex(
    audio: torch.Tensor,
    n_fft: int,
    hop_length: int,
    *,
    center: bool = True,
) -> torch.Tensor:
    """Short-time Fourier transform with a periodic Hann window (complex).

    Args:
        audio: [..., S] floating signal (any leading dimensions).
        n_fft: window length and FFT size.
        hop_length: samples between frames.
        center: reflect-pad n_fft // 2 samples on both sides so that frame t is
            centred on sample t * hop_length (needs S > n_fft // 2).

    Returns:
        [..., F, T] complex coefficients with F = n_fft // 2 + 1, of the complex dtype
        matching ``audio``'s.
    """
    if n_fft <= 0 or hop_length <= 0:
        raise ValueError(
            f"n_fft and hop_length must be positive, got n_fft={n_fft}, hop_length={hop_length}."
        )
    if audio.dim() == 0 or not audio.is_floating_point():
        raise ValueError(
            f"an STFT needs a floating tensor [..., S], got shape {tuple(audio.shape)} "
            f"and dtype {audio.dtype}."
        )
    length = int(audio.shape[-1])
    if center and length <= n_fft // 2:
        raise ValueError(
            f"signal of {length} samples is too short for a centred STFT with n_fft={n_fft} "
            f"(reflect padding needs more than {n_fft // 2} samples); use longer audio."
        )
    if not center and length < n_fft:
        raise ValueError(
            f"signal of {length} samples is shorter than n_fft={n_fft}; use longer audio or "
            "center=True."
        )
    lead = audio.shape[:-1]
    window = torch.hann_window(n_fft, periodic=True, dtype=audio.dtype, device=audio.device)
    spec = torch.stft(
        audio.reshape(-1, length),
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=n_fft,
        window=window,
        center=center,
        pad_mode="reflect",
        return_complex=True,
    )  # [N, F, T]
    return spec.reshape(*lead, spec.shape[-2], spec.shape[-1])


def stft_magnitude(
    audio: torch.Tensor,
    n_fft: int,
    hop_length: int,
    *,
    center: bool = True,
) -> torch.Tensor:
    """Magnitude of :func:`stft_complex`: [..., S] -> [..., F, T] in the dtype of
    ``audio``."""
    return stft_complex(audio, n_fft, hop_length, center=center).abs()

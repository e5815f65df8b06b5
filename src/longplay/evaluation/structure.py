"""Musical structure of long-form audio through self-similarity matrices (SYSTEM.md section 6).

The paper compares self-similarity matrices (SSMs) of generated and real music; this module
makes them (from chroma or MFCC frames), finds section boundaries with Foote's novelty curve
(J. Foote, "Automatic audio segmentation using a measure of audio novelty", ICME 2000) and
summarises an SSM by two numbers, :class:`StructureScore`.

Shape legend: C audio channels, S samples, T frames, D feature width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from longplay.audio.images import write_png
from longplay.audio.spectral import mel_filterbank, stft_magnitude
from longplay.evaluation.plots import with_axes

__all__ = [
    "StructureScore",
    "checkerboard_kernel",
    "chroma_features",
    "mfcc_features",
    "novelty_curve",
    "save_ssm_png",
    "self_similarity",
    "structure_score",
]

_A4_HZ = 440.0
_A_PITCH_CLASS = 9  # pitch classes count from C = 0


def _mono(audio: torch.Tensor) -> torch.Tensor:
    """[C, S] or [S] floating audio -> [S] channel mean, float32."""
    if audio.dim() not in (1, 2) or not audio.is_floating_point():
        raise ValueError(f"audio must be a floating tensor [C, S] or [S], got shape "
                         f"{tuple(audio.shape)} and dtype {audio.dtype}.")
    mono = audio.float() if audio.dim() == 1 else audio.float().mean(dim=0)
    return mono.cpu()


def self_similarity(features: torch.Tensor, *, standardize: bool = False) -> torch.Tensor:
    """Cosine self-similarity matrix [T, T] of features [T, D] (frames as rows).

    ``ssm[i, j] = x_i . x_j / (|x_i| |x_j|)`` in [-1, 1] (0 for an all-zero frame). With
    ``standardize`` each feature dimension is first shifted to zero mean and scaled to unit
    variance over time, so that a component shared by all frames (e.g. overall loudness in
    MFCC 0) does not make every pair look alike.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be [T, D], got shape {tuple(features.shape)}.")
    x = features.detach().to("cpu", torch.float64)
    if standardize:
        x = (x - x.mean(dim=0)) / x.std(dim=0, correction=0).clamp(min=1e-12)
    x = F.normalize(x, dim=1, eps=1e-12)
    return (x @ x.T).float()


def chroma_features(audio: torch.Tensor, sample_rate: int, *, n_fft: int = 4096,
                    hop_length: int = 2048, f_min: float = 55.0,
                    f_max: float = 5000.0) -> torch.Tensor:
    """12-bin chroma [T, 12] of audio [C, S] or [S] (channel mean), C = 0 ... B = 11.

    Each STFT bin with centre frequency f in [f_min, min(f_max, Nyquist)] is assigned to the
    pitch class ``(round(12 log2(f / 440)) + 9) mod 12`` (A4 = 440 Hz is class 9) and the
    bins' power |X|^2 is summed per class. Each frame is then divided by its largest class
    (frames of silence stay zero).
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}.")
    power = stft_magnitude(_mono(audio), n_fft, hop_length).double() ** 2  # [n_fft//2+1, T]
    freqs = torch.arange(power.shape[0], dtype=torch.float64) * (sample_rate / n_fft)
    used = (freqs >= f_min) & (freqs <= min(f_max, sample_rate / 2))
    if not used.any():
        raise ValueError(f"no STFT bin lies in [{f_min}, {f_max}] Hz at sample_rate "
                         f"{sample_rate} with n_fft {n_fft}.")
    classes = (torch.round(12 * torch.log2(freqs[used] / _A4_HZ)).long() + _A_PITCH_CLASS) % 12
    folding = F.one_hot(classes, 12).double()  # [bins used, 12]
    chroma = power[used].T @ folding  # [T, 12]
    return (chroma / chroma.amax(dim=1, keepdim=True).clamp(min=1e-12)).float()


def _dct_ii_matrix(num_inputs: int, num_outputs: int) -> torch.Tensor:
    """Orthonormal DCT-II basis [num_outputs, num_inputs]:
    ``w[k, n] = s_k cos(pi k (2n + 1) / (2N))`` with s_0 = sqrt(1/N), s_k = sqrt(2/N)."""
    n = torch.arange(num_inputs, dtype=torch.float64)
    k = torch.arange(num_outputs, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi * k * (2 * n + 1) / (2 * num_inputs))
    basis[0] *= math.sqrt(1.0 / num_inputs)
    basis[1:] *= math.sqrt(2.0 / num_inputs)
    return basis


def mfcc_features(audio: torch.Tensor, sample_rate: int, *, n_mfcc: int = 20, n_mels: int = 64,
                  n_fft: int = 2048, hop_length: int = 1024) -> torch.Tensor:
    """MFCCs [T, n_mfcc] of audio [C, S] or [S] (channel mean).

    ``mfcc = DCT-II_ortho(log(mel + 1e-6))[:n_mfcc]`` per frame, where mel is the Slaney mel
    filterbank (``n_mels`` bands, 0 Hz to Nyquist) applied to the STFT magnitude.
    """
    if not 0 < n_mfcc <= n_mels:
        raise ValueError(f"need 0 < n_mfcc <= n_mels, got n_mfcc={n_mfcc}, n_mels={n_mels}.")
    magnitude = stft_magnitude(_mono(audio), n_fft, hop_length)  # [n_fft//2+1, T]
    mel = mel_filterbank(sample_rate, n_fft, n_mels) @ magnitude  # [n_mels, T]
    log_mel = torch.log(mel.double() + 1e-6)
    return (_dct_ii_matrix(n_mels, n_mfcc) @ log_mel).T.float()  # [T, n_mfcc]


def checkerboard_kernel(kernel_size: int) -> torch.Tensor:
    """Foote's Gaussian-tapered checkerboard kernel [kernel_size, kernel_size] (even size 2L).

    ``+g`` in the past-past and future-future quadrants, ``-g`` in the two cross quadrants,
    ``g[i, j] = exp(-((u_i^2 + u_j^2) / 2) / (L/2)^2)`` with ``u = index - L + 0.5`` the offset
    from the kernel centre; scaled so that the absolute values sum to 1.
    """
    if kernel_size < 2 or kernel_size % 2:
        raise ValueError(f"kernel_size must be an even number >= 2, got {kernel_size}.")
    half = kernel_size // 2
    offsets = torch.arange(kernel_size, dtype=torch.float64) - half + 0.5
    taper = torch.exp(-0.5 * (offsets / (half / 2)) ** 2)
    sign = torch.where(offsets < 0, -1.0, 1.0).double()
    kernel = torch.outer(sign * taper, sign * taper)
    return kernel / kernel.abs().sum()


def novelty_curve(ssm: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Foote novelty [T] of an SSM [T, T]: correlation with the checkerboard kernel along the
    diagonal, ``novelty[t] = sum_ij K[i, j] ssm[t - L + i, t - L + j]`` (L = kernel_size / 2),
    i.e. the contrast between frames [t - L, t) and [t, t + L). Frames where the kernel does
    not fit inside the matrix (t < L or t > T - L) get 0, so that the matrix edges do not
    count as boundaries. A high value at t marks a boundary just before frame t.
    """
    if ssm.dim() != 2 or ssm.shape[0] != ssm.shape[1]:
        raise ValueError(f"ssm must be square [T, T], got shape {tuple(ssm.shape)}.")
    kernel = checkerboard_kernel(kernel_size)
    num_frames = ssm.shape[0]
    matrix = ssm.detach().to("cpu", torch.float64)
    half = kernel_size // 2
    novelty = torch.zeros(num_frames, dtype=torch.float64)
    for t in range(half, num_frames - half + 1):
        window = matrix[t - half:t + half, t - half:t + half]
        novelty[t] = (kernel * window).sum()
    return novelty


@dataclass(frozen=True)
class StructureScore:
    """Summary of the sectional structure visible in an SSM.

    Attributes:
        num_boundaries: number of novelty peaks: frames t whose novelty is a local maximum
            (greater than at t - 1, at least that at t + 1) and above mean + std of the
            novelty curve (over all T frames).
        block_contrast: mean SSM value over pairs of distinct frames (i != j) in the same
            segment minus the mean over pairs in different segments, for the segments that
            the boundaries cut [0, T) into; 0.0 when there is no boundary.
        boundaries: the boundary frames (a segment starts at each).
    """

    num_boundaries: int
    block_contrast: float
    boundaries: tuple[int, ...]


def _default_kernel_size(num_frames: int) -> int:
    return max(4, 2 * (num_frames // 16))


def structure_score(ssm: torch.Tensor, kernel_size: int | None = None) -> StructureScore:
    """Boundaries and block contrast of an SSM [T, T] (definitions in :class:`StructureScore`).

    Args:
        ssm: [T, T] self-similarity matrix, e.g. from :func:`self_similarity`.
        kernel_size: even checkerboard size in frames; by default 2 * (T // 16), at least 4
            (sections shorter than half of it are not resolved).
    """
    if ssm.dim() != 2 or ssm.shape[0] != ssm.shape[1] or ssm.shape[0] < 3:
        raise ValueError(f"ssm must be square [T, T] with T >= 3, got shape {tuple(ssm.shape)}.")
    num_frames = ssm.shape[0]
    size = _default_kernel_size(num_frames) if kernel_size is None else kernel_size
    novelty = novelty_curve(ssm, size)
    threshold = novelty.mean() + novelty.std(correction=0)
    boundaries = tuple(
        t for t in range(1, num_frames - 1)
        if novelty[t] > novelty[t - 1] and novelty[t] >= novelty[t + 1] and novelty[t] > threshold
    )
    if not boundaries:
        return StructureScore(0, 0.0, ())
    labels = torch.zeros(num_frames, dtype=torch.long)
    for boundary in boundaries:
        labels[boundary:] += 1
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(num_frames, dtype=torch.bool)
    matrix = ssm.detach().to("cpu", torch.float64)
    within = matrix[same & off_diagonal]
    across = matrix[~same]
    contrast = float(within.mean() - across.mean()) if within.numel() else 0.0
    return StructureScore(len(boundaries), contrast, boundaries)


MAX_SSM_PIXELS = 512
"""Side of the largest SSM image: longer matrices are average-pooled down to it, so that
a long track's plot stays a few hundred KB."""


def save_ssm_png(path: str | Path, ssm: torch.Tensor,
                 value_range: tuple[float, float] = (-1.0, 1.0),
                 max_pixels: int = MAX_SSM_PIXELS, *,
                 seconds_per_frame: float | None = None) -> Path:
    """Write an SSM [T, T] as a grayscale PNG (frame 0 at the top left): T x T pixels, or
    for T > ``max_pixels`` the matrix average-pooled by ceil(T / max_pixels) frames.
    ``value_range[0]`` and below is black, ``value_range[1]`` and above white, linear between.

    With ``seconds_per_frame`` the matrix gets time axes in seconds, left and bottom
    (:func:`longplay.evaluation.plots.with_axes`; a small matrix is enlarged first)."""
    if ssm.dim() != 2 or ssm.shape[0] != ssm.shape[1] or ssm.shape[0] == 0:
        raise ValueError(f"ssm must be square [T, T], got shape {tuple(ssm.shape)}.")
    low, high = value_range
    if not high > low:
        raise ValueError(f"value_range must be increasing, got {value_range}.")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}.")
    if seconds_per_frame is not None and not seconds_per_frame > 0:
        raise ValueError(f"seconds_per_frame must be > 0, got {seconds_per_frame}.")
    matrix = ssm.detach().to("cpu", torch.float64)
    factor = -(-matrix.shape[0] // max_pixels)
    if factor > 1:
        matrix = torch.nn.functional.avg_pool2d(matrix[None, None], factor, ceil_mode=True)[0, 0]
    levels = ((matrix.numpy() - low) / (high - low)).clip(0, 1)
    gray = np.round(levels * 255).astype(np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    if seconds_per_frame is not None:
        length_s = ssm.shape[0] * seconds_per_frame
        rgb = with_axes(rgb, x_extent=(0.0, length_s), x_label="time (s)",
                        y_extent=(0.0, length_s), y_label="time (s)")
    return write_png(path, rgb)

"""Spectrogram and waveform pictures, and PNG files, with no imaging dependency.

Shape legend: C audio channels, S samples, H image height, W image width.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from longplay.atomic import atomic_output_path
from longplay.audio.spectral import mel_filterbank, stft_magnitude

# Anchor colours of a dark-to-bright map (black, purple, red, orange, pale yellow).
_COLOURS = np.array([[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]],
                    dtype=np.float64)


def spectrogram_image(audio: torch.Tensor, sample_rate: int, *, n_mels: int = 128,
                      n_fft: int = 2048, hop_length: int = 512, dynamic_range_db: float = 80.0,
                      min_width: int = 600, max_width: int = 1200) -> np.ndarray:
    """audio [C, S] -> RGB uint8 [n_mels, W]: log-mel magnitude of the channel mean, low
    frequencies at the bottom, the top ``dynamic_range_db`` below the peak."""
    mono = audio.float().mean(dim=0)
    if mono.shape[-1] < n_fft:
        mono = torch.nn.functional.pad(mono, (0, n_fft - mono.shape[-1]))
    mel = mel_filterbank(sample_rate, n_fft, n_mels) @ stft_magnitude(mono, n_fft, hop_length)
    db = 20 * torch.log10(mel.clamp(min=1e-10))
    db = (db - db.max()).clamp(min=-dynamic_range_db) / dynamic_range_db + 1  # [M, F] in [0, 1]
    if db.shape[1] > max_width:
        db = torch.nn.functional.interpolate(db[None, None], size=(n_mels, max_width),
                                             mode="area")[0, 0]
    elif db.shape[1] < min_width:  # short clips: stretch so that the picture is readable
        db = torch.nn.functional.interpolate(db[None, None], size=(n_mels, min_width),
                                             mode="nearest")[0, 0]
    levels = db.flip(0).numpy()  # low frequencies at the bottom
    pos = levels * (len(_COLOURS) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(_COLOURS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _COLOURS[lo] * (1 - frac) + _COLOURS[lo + 1] * frac
    return rgb.round().astype(np.uint8)


WAVE_COLOUR = np.array([90, 160, 230], dtype=np.uint8)
REGION_COLOUR = np.array([252, 137, 97], dtype=np.uint8)
BACKGROUND = np.array([24, 24, 32], dtype=np.uint8)
REGION_BACKGROUND = np.array([70, 40, 50], dtype=np.uint8)


def waveform_image(audio: torch.Tensor, sample_rate: int, *,
                   region_s: tuple[float, float] | None = None, width: int = 1000,
                   height: int = 160) -> np.ndarray:
    """audio [C, S] -> RGB uint8 [height, width]: the peak envelope of the channel mean
    (one column per 1 / width of the audio), with ``region_s`` (start_s, end_s) shaded
    and drawn in another colour."""
    mono = audio.float().mean(dim=0)
    num_samples = mono.shape[-1]
    if num_samples == 0:
        raise ValueError("no audio to draw")
    edges = np.linspace(0, num_samples, width + 1).astype(int)
    values = mono.abs().numpy()
    peaks = np.array([values[a:max(b, a + 1)].max() if a < num_samples else 0.0
                      for a, b in itertools.pairwise(edges)])
    peaks = peaks / max(float(peaks.max()), 1e-9)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    inside = np.zeros(width, dtype=bool)
    if region_s is not None:
        seconds = (edges[:-1] + edges[1:]) / 2 / sample_rate
        inside = (seconds >= region_s[0]) & (seconds < region_s[1])
        image[:, inside] = REGION_BACKGROUND
    middle = height / 2
    rows = np.arange(height)[:, None]
    reach = (peaks * (height / 2 - 2))[None, :]
    wave = np.abs(rows + 0.5 - middle) <= np.maximum(reach, 0.5)
    image[wave & ~inside[None, :]] = WAVE_COLOUR
    image[wave & inside[None, :]] = REGION_COLOUR
    return image


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image [H, W, 3] as a PNG file, atomically."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {rgb.dtype} {rgb.shape}")
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    path = Path(path)
    with atomic_output_path(path) as tmp:
        tmp.write_bytes(png)
    return path


def save_spectrogram_png(path: str | Path, audio: torch.Tensor, sample_rate: int) -> Path:
    """audio [C, S] -> a spectrogram PNG at ``path``."""
    return write_png(path, spectrogram_image(audio, sample_rate))

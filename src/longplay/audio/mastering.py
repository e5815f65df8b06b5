"""What every written output goes through by default: a DC block and peak normalisation.

A latent-diffusion model's decoder can leave a constant or slowly drifting offset in its
output and peaks above full scale (a 16-bit file then clips). The reference UIs normalise
every output to full scale before writing it; longplay's command line, HTTP API and studio
do the same, a little more carefully, with :func:`normalize_output`:

1. **DC block**: the per-channel mean is removed, then a zero-phase high-pass (the
   magnitude of a 2nd-order Butterworth applied forwards and backwards, -6 dB at
   ``DC_CUTOFF_HZ``, -0.3 dB at 20 Hz) removes what drifts below it;
2. **peak normalisation** to ``PEAK_DBFS`` (sample peak), up or down, per output.

The raw model output stays available: the Python pipeline returns it unchanged (as
diffusers does), and ``--no-normalize`` / ``normalize=false`` write it as it is. What was
done is recorded (:class:`OutputProcessing`) in the sidecar.

Shape legend: C channels, S samples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["DC_CUTOFF_HZ", "PEAK_DBFS", "OutputProcessing", "normalize_output"]

DC_CUTOFF_HZ = 10.0
"""The DC block's corner frequency (-6 dB), well below music's lowest notes (E1 = 41 Hz)."""
PEAK_DBFS = -1.0
"""Outputs are normalised to this sample peak, leaving headroom for lossy encoders."""
_PAD_S = 0.5  # zero padding at each end of the FFT filter, longer than its response


@dataclass(frozen=True)
class OutputProcessing:
    """What :func:`normalize_output` did to one output, for its record.

    Attributes:
        normalized: False when the raw model output was written.
        dc_cutoff_hz: the DC block's corner, None when off.
        peak_dbfs: the target sample peak, None when off.
        dc_offset: the per-channel mean removed.
        gain_db: the normalisation gain applied (positive: made louder).
        raw_peak: the sample peak of the raw output (above 1: it would have clipped).
    """

    normalized: bool
    dc_cutoff_hz: float | None
    peak_dbfs: float | None
    dc_offset: tuple[float, ...]
    gain_db: float
    raw_peak: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: an FFT length without large prime factors."""
    best = 1 << max(n - 1, 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


def _highpass(audio: torch.Tensor, sample_rate: int, cutoff_hz: float) -> torch.Tensor:
    """Zero-phase high-pass of [C, S] audio by FFT: |H(f)|^2 of a 2nd-order Butterworth,
    (f/fc)^4 / (1 + (f/fc)^4), as a forward-backward IIR pass would give."""
    pad = int(_PAD_S * sample_rate)
    num = _fast_length(audio.shape[-1] + 2 * pad)
    spectrum = torch.fft.rfft(torch.nn.functional.pad(audio, (pad, pad)), n=num)
    freqs = torch.fft.rfftfreq(num, d=1.0 / sample_rate, dtype=torch.float64)
    ratio = (freqs / cutoff_hz) ** 4
    response = (ratio / (1 + ratio)).to(spectrum.real.dtype)
    return torch.fft.irfft(spectrum * response, n=num)[..., pad:pad + audio.shape[-1]]


def normalize_output(audio: torch.Tensor, sample_rate: int, *, normalize: bool = True,
                     dc_cutoff_hz: float = DC_CUTOFF_HZ,
                     peak_dbfs: float = PEAK_DBFS) -> tuple[torch.Tensor, OutputProcessing]:
    """[C, S] audio as written by default: DC blocked and peak-normalised (see the
    module's docstring); with ``normalize=False`` unchanged. Returns the float32 audio
    and what was done.

    Raises:
        ValueError: not [C, S], empty, or NaN/inf samples.
    """
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2 or audio.numel() == 0:
        shape = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise ValueError(f"audio to write must be a non-empty tensor [C, S], got {shape}")
    audio = audio.detach().to("cpu", torch.float32)
    if not torch.isfinite(audio).all():
        raise ValueError("the audio contains NaN or infinite samples; nothing was written")
    raw_peak = float(audio.abs().max())
    if not normalize:
        return audio, OutputProcessing(False, None, None, (), 0.0, raw_peak)
    if not dc_cutoff_hz > 0 or not math.isfinite(peak_dbfs) or peak_dbfs > 0:
        raise ValueError(f"need dc_cutoff_hz > 0 and peak_dbfs <= 0, got {dc_cutoff_hz} and "
                         f"{peak_dbfs}")
    offset = audio.mean(dim=-1, keepdim=True)
    out = _highpass(audio - offset, sample_rate, dc_cutoff_hz)
    peak = float(out.abs().max())
    gain = 10 ** (peak_dbfs / 20) / peak if peak > 0 else 1.0
    out = out * gain
    return out, OutputProcessing(True, dc_cutoff_hz, peak_dbfs,
                                 tuple(round(float(v), 6) for v in offset.flatten()),
                                 round(20 * math.log10(gain), 3), raw_peak)

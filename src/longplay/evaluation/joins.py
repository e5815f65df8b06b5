"""How seamless a join is: where generated audio meets kept audio (an extension, a
regenerated region, the windows of a long piece, a loop's wrap-around).

For one join at sample p of audio [C, S]:

* ``mel_jump``: the change of the log-mel spectrum across the join relative to its
  typical change. With m_i the log-mel frames (window 2048, hop 512, 64 Slaney bands,
  log(mel + 1e-5), channels averaged) and d_i = RMS over bands of m_{i+1} - m_i, the
  largest d_i of the frame pairs that straddle p, divided by the median d_i of the whole
  signal. About 1 means the join changes the sound no more than music changes from one
  frame to the next; several times more is an audible seam.
* ``flux``: the same for spectral flux (the half-wave rectified rise of the linear
  magnitude spectrum), which weighs onsets: a new attack at the join.
* ``click``: the largest first difference of the waveform (the jump between adjacent
  samples, the largest over channels) within 2 ms of the join, divided by the 99th
  percentile of the first differences elsewhere. Above about 2 there is a click.

A loop is scored at its wrap-around (``circular=True``: the audio continues into its
own start). :class:`JoinMetric` accumulates joins (update/compute).

Shape legend: C channels, S samples, M mel bands, N frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from longplay.audio import mel_filterbank, stft_magnitude

__all__ = ["JoinMetric", "JoinScore", "join_scores"]

N_FFT = 2048
HOP = 512
N_MELS = 64
CLICK_WINDOW_S = 0.002
CLICK_GUARD_S = 0.010
LOG_FLOOR = 1e-5


@dataclass(frozen=True)
class JoinScore:
    """One join (see the module docstring)."""

    position_s: float
    mel_jump: float
    flux: float
    click: float


def _frame_changes(audio: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """audio [C, S] -> (d [N - 1] log-mel frame changes, flux [N - 1]) of the channel mean."""
    mono = audio.float().mean(dim=0, keepdim=True)  # [1, S]
    magnitude = stft_magnitude(mono, N_FFT, HOP)[0]  # [F, N]
    mel = mel_filterbank(sample_rate, N_FFT, N_MELS).to(magnitude) @ magnitude  # [M, N]
    log_mel = torch.log(mel + LOG_FLOOR)
    changes = (log_mel[:, 1:] - log_mel[:, :-1]).pow(2).mean(dim=0).sqrt()  # [N - 1]
    flux = (magnitude[:, 1:] - magnitude[:, :-1]).clamp(min=0).sum(dim=0)  # [N - 1]
    return changes, flux


def _relative(values: torch.Tensor, pairs: list[int]) -> float:
    typical = float(values.median())
    peak = float(values[pairs].max())
    return peak / typical if typical > 0 else (0.0 if peak == 0 else math.inf)


def join_scores(audio: torch.Tensor, sample_rate: int, positions_s: Sequence[float], *,
                circular: bool = False) -> list[JoinScore]:
    """Scores of the joins at ``positions_s`` in ``audio`` [C, S]; with ``circular`` the
    audio is followed by its own start (a loop: score its wrap-around at ``S / rate``)."""
    if audio.dim() != 2 or audio.shape[-1] < 2 * N_FFT:
        raise ValueError(f"audio must be [C, S] with at least {2 * N_FFT} samples, got "
                         f"{tuple(audio.shape)}")
    num_samples = audio.shape[-1]
    signal = torch.cat([audio, audio[:, : N_FFT * 2]], dim=-1) if circular else audio
    changes, flux = _frame_changes(signal, sample_rate)
    difference = (signal[:, 1:] - signal[:, :-1]).abs().amax(dim=0)  # [S' - 1]
    window = max(1, round(CLICK_WINDOW_S * sample_rate))
    guard = max(window, round(CLICK_GUARD_S * sample_rate))
    positions = [round(p * sample_rate) for p in positions_s]
    elsewhere = torch.ones_like(difference, dtype=torch.bool)
    for p in positions:
        elsewhere[max(0, p - guard): p + guard] = False
    reference = difference[elsewhere] if bool(elsewhere.any()) else difference
    click_floor = float(torch.quantile(reference.float()[:1_000_000], 0.99))
    scores = []
    for position_s, p in zip(positions_s, positions, strict=True):
        limit = signal.shape[-1] if circular else num_samples
        if not 0 <= p <= limit:
            raise ValueError(f"join at {position_s:g} s lies outside the audio "
                             f"({num_samples / sample_rate:g} s)")
        # Frame i covers samples [i * HOP - N_FFT / 2, i * HOP + N_FFT / 2) (centred): the
        # pairs (i, i + 1) whose frames straddle p.
        centre = p / HOP
        pairs = [i for i in range(math.floor(centre) - 2, math.ceil(centre) + 2)
                 if 0 <= i < changes.shape[0]]
        near = difference[max(0, p - window): p + window]
        click = float(near.max()) / click_floor if click_floor > 0 else 0.0
        scores.append(JoinScore(position_s, _relative(changes, pairs), _relative(flux, pairs),
                                click))
    return scores


class JoinMetric:
    """Joins accumulated over outputs: ``update(audio, sample_rate, positions_s)``, then
    ``compute()`` -> mean and worst of each score."""

    def __init__(self) -> None:
        self.scores: list[JoinScore] = []

    def update(self, audio: torch.Tensor, sample_rate: int, positions_s: Sequence[float], *,
               circular: bool = False) -> list[JoinScore]:
        scores = join_scores(audio, sample_rate, positions_s, circular=circular)
        self.scores += scores
        return scores

    def compute(self) -> dict[str, float | int]:
        if not self.scores:
            raise ValueError("no joins to score")
        out: dict[str, float | int] = {"joins": len(self.scores)}
        for name in ("mel_jump", "flux", "click"):
            values = [getattr(s, name) for s in self.scores]
            out[f"mean_{name}"] = sum(values) / len(values)
            out[f"max_{name}"] = max(values)
        return out

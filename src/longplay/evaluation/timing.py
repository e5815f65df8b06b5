"""Timing adherence: does a generation end where ``seconds_total`` says it should?

A model of the paper's kind generates a whole window and learns from the timing
conditioning to place the music in its first ``duration_s`` seconds and silence after
it. For one generation decoded over its whole window (not trimmed):

    content_db = 20 log10 RMS(audio[0, duration_s))
    tail_db    = 20 log10 RMS(audio[duration_s + guard_s, end of window))
    relative_db = tail_db - content_db

RMS over all channels and samples, floored at 1e-10 (-200 dB). ``guard_s`` (default
1 s) skips the release and reverb just after the end. A relative level of -20 dB or
less means the model ends the piece where asked; about 0 dB means it ignores the
timing. ``TimingAdherence`` accumulates items (update/compute/merge).

Shape legend: C channels, S samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FLOOR = 1e-10


@dataclass(frozen=True)
class TimingResult:
    duration_s: float
    window_s: float
    content_db: float
    tail_db: float

    @property
    def relative_db(self) -> float:
        return self.tail_db - self.content_db


def _level_db(audio: torch.Tensor) -> float:
    rms = audio.double().pow(2).mean().sqrt().item() if audio.numel() else 0.0
    return 20 * math.log10(max(rms, FLOOR))


def timing_adherence(audio: torch.Tensor, sample_rate: int, duration_s: float, *,
                     guard_s: float = 1.0) -> TimingResult:
    """The levels of one generation ``audio`` [C, S] (its whole window) before and after
    ``duration_s``; see the module docstring."""
    if audio.dim() != 2:
        raise ValueError(f"audio must be one generation [C, S], got {tuple(audio.shape)}")
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    window_s = audio.shape[-1] / sample_rate
    if not duration_s > 0 or duration_s + guard_s >= window_s:
        raise ValueError(f"duration_s + guard_s ({duration_s} + {guard_s} s) must end inside the "
                         f"window ({window_s:.2f} s): generate in the full window and pass it "
                         "untrimmed")
    end = round(duration_s * sample_rate)
    tail_start = round((duration_s + guard_s) * sample_rate)
    return TimingResult(float(duration_s), window_s, _level_db(audio[:, :end]),
                        _level_db(audio[:, tail_start:]))


class TimingAdherence:
    """Mean ``relative_db`` over generations; keeps every item for tables."""

    def __init__(self, guard_s: float = 1.0) -> None:
        self.guard_s = guard_s
        self.items: list[TimingResult] = []

    def update(self, audio: torch.Tensor, sample_rate: int,
               durations_s: list[float] | tuple[float, ...]) -> None:
        """audio [B, C, S] (whole windows) with the B requested durations."""
        if audio.dim() != 3 or audio.shape[0] != len(durations_s):
            raise ValueError(f"need audio [B, C, S] and B durations, got {tuple(audio.shape)} "
                             f"and {len(durations_s)}")
        for item, duration in zip(audio, durations_s, strict=True):
            self.items.append(timing_adherence(item, sample_rate, duration,
                                               guard_s=self.guard_s))

    def merge(self, other: TimingAdherence) -> None:
        self.items.extend(other.items)

    def compute(self) -> float:
        if not self.items:
            raise ValueError("no generations were added; call update() before compute()")
        return sum(r.relative_db for r in self.items) / len(self.items)

"""Pitched content of generated audio: does a model play notes, or noise?

A model whose autoencoder loses pitch generates clips without notes: broadband noise,
drums, or a fixed comb. Per clip, :func:`longplay.evaluation.fidelity.yin_pitch` tracks
f0 in frames of 44 ms every 22 ms (see :mod:`longplay.evaluation.fidelity`) and

    pitched_share = voiced frames / sounding frames

where a frame *sounds* when it passes the tracker's own loudness gate (RMS of the frame,
mean removed, above -70 dBFS and within 40 dB of the clip's loudest frame; every voiced
frame sounds). Silence therefore counts neither for nor against a clip: a note followed
by silence scores 100 %, as does the note alone. A clip with no sounding frame (digital
silence, or below -70 dBFS throughout) has no share (NaN); it is counted as silent and
left out of the mean. Noise and unpitched drums score near 0, a held note near 1.

``sounding_share`` = sounding frames / all frames: how much of the clip plays at all.
A generation trimmed to its request that stops early (a model whose timing conditioning
ends the piece before ``seconds_total``, or leaves gaps) scores well below 1 here while
its pitched share is unaffected; music that plays throughout scores near 1 (quiet
passages within 40 dB of the loudest still sound). A silent clip scores 0 and counts in
the mean.

A pitched share alone cannot tell notes from a drone: a steady comb of harmonics (an
autoencoder artefact) is pitched too. ``top_note_share`` is the share of a clip's
voiced frames whose f0, rounded to the nearest equal-tempered semitone (MIDI number
``round(69 + 12 log2(f0 / 440 Hz))``), is the clip's most common one: near 1 for one
held pitch or a drone, lower for a melody or a bass line. ``median_f0_hz`` is the median
f0 over the voiced frames. Both are NaN for a clip without voiced frames.

:class:`PitchedContent` accumulates clips (update/merge/compute) and gives the mean
over clips. YIN costs well under a second per 10 s of audio on one CPU core.

Shape legend: B batch (clips), C audio channels, S samples, T frames.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from longplay.evaluation.fidelity import yin_pitch

__all__ = ["PitchedContent", "PitchedContentScores", "PitchedContentSummary",
           "pitched_content"]

_A4_HZ = 440.0
_A4_MIDI = 69


@dataclass(frozen=True)
class PitchedContentScores:
    """Per-clip scores of B clips, each [B] float64 (definitions: module docstring).

    ``pitched_share`` is NaN for a clip where nothing sounds; ``median_f0_hz`` and
    ``top_note_share`` are NaN for a clip without voiced frames.
    """

    pitched_share: torch.Tensor
    sounding_share: torch.Tensor
    median_f0_hz: torch.Tensor
    top_note_share: torch.Tensor


def _share(count: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """count / total per item, NaN where total is 0."""
    return torch.where(total > 0, count / total.clamp(min=1), torch.full_like(count, math.nan))


def pitched_content(audio: torch.Tensor, sample_rate: int) -> PitchedContentScores:
    """The pitched share (and the diagnostics) of each clip; see the module docstring.

    Args:
        audio: [C, S] or [B, C, S] floating audio, S > 1024.
        sample_rate: its rate in Hz.
    """
    track = yin_pitch(audio, sample_rate)
    voiced = track.voiced.to(torch.float64)  # [B, T]
    sounding = track.sounding.to(torch.float64)
    num_voiced = voiced.sum(dim=-1)  # [B]
    medians, top = [], []
    for f0, is_voiced in zip(track.f0_hz, track.voiced, strict=True):
        pitches = f0[is_voiced].to(torch.float64)
        if pitches.numel() == 0:
            medians.append(math.nan)
            top.append(math.nan)
            continue
        notes = torch.round(_A4_MIDI + 12.0 * torch.log2(pitches / _A4_HZ)).long()
        _, counts = torch.unique(notes, return_counts=True)
        top.append(float(counts.max()) / notes.numel())
        medians.append(float(pitches.median()))
    return PitchedContentScores(
        pitched_share=_share(num_voiced, sounding.sum(dim=-1)),
        sounding_share=sounding.mean(dim=-1),
        median_f0_hz=torch.tensor(medians, dtype=torch.float64),
        top_note_share=torch.tensor(top, dtype=torch.float64),
    )


@dataclass(frozen=True)
class PitchedContentSummary:
    """The means over clips. ``mean_pitched_share`` is None when every clip is silent,
    ``mean_top_note_share`` when no clip has a voiced frame."""

    items: int
    silent_items: int
    mean_pitched_share: float | None
    mean_top_note_share: float | None
    mean_sounding_share: float

    def as_dict(self) -> dict[str, int | float | None]:
        return asdict(self)


def _mean_or_none(values: list[float]) -> float | None:
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None


class PitchedContent:
    """Mean pitched share over generated clips; keeps every clip's scores for tables."""

    def __init__(self) -> None:
        self.pitched_shares: list[float] = []
        self.top_note_shares: list[float] = []
        self.sounding_shares: list[float] = []

    @property
    def num_items(self) -> int:
        return len(self.pitched_shares)

    def update(self, audio: torch.Tensor, sample_rate: int) -> PitchedContentScores:
        """Score clips ``audio`` [B, C, S] (or one, [C, S]) and add them; returns their
        per-clip scores."""
        scores = pitched_content(audio, sample_rate)
        self.pitched_shares += scores.pitched_share.tolist()
        self.top_note_shares += scores.top_note_share.tolist()
        self.sounding_shares += scores.sounding_share.tolist()
        return scores

    def merge(self, other: PitchedContent) -> None:
        """Add the clips accumulated by ``other`` (e.g. another worker's) to this one."""
        self.pitched_shares += other.pitched_shares
        self.top_note_shares += other.top_note_shares
        self.sounding_shares += other.sounding_shares

    def compute(self) -> PitchedContentSummary:
        if not self.pitched_shares:
            raise ValueError("no clips were added; call update() before compute()")
        return PitchedContentSummary(
            items=self.num_items,
            silent_items=sum(math.isnan(v) for v in self.pitched_shares),
            mean_pitched_share=_mean_or_none(self.pitched_shares),
            mean_top_note_share=_mean_or_none(self.top_note_shares),
            mean_sounding_share=sum(self.sounding_shares) / len(self.sounding_shares))

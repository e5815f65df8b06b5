"""Pitched content of generated clips (longplay.evaluation.pitch): notes score near
100 %, noise near 0, silence counts for nothing."""

from __future__ import annotations

import math

import pytest
import torch

from longplay.evaluation import PitchedContent, pitched_content

SR = 44100


def harmonic_tone(f0_hz: float, seconds: float, amplitude: float = 0.3) -> torch.Tensor:
    """[2, S] stereo tone with five harmonics of falling level."""
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    tone = sum(torch.sin(2 * math.pi * k * f0_hz * t) / k for k in range(1, 6))
    tone = amplitude * tone / tone.abs().max()
    return torch.stack([tone, tone]).float()


def noise(seconds: float, seed: int = 0, amplitude: float = 0.1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return amplitude * torch.randn(2, round(seconds * SR), generator=g)


def test_a_harmonic_tone_is_pitched_and_noise_is_not() -> None:
    scores = pitched_content(torch.stack([harmonic_tone(220.0, 2.0), noise(2.0)]), SR)
    tone, hiss = scores.pitched_share.tolist()
    assert tone > 0.95 and hiss < 0.05
    assert scores.sounding_share.tolist() == pytest.approx([1.0, 1.0], abs=0.05)
    assert scores.median_f0_hz[0].item() == pytest.approx(220.0, rel=0.01)
    assert scores.top_note_share[0].item() > 0.95  # one held note


def test_silence_is_not_counted() -> None:
    # A note then digital silence: the silent half neither helps nor hurts.
    half = torch.cat([harmonic_tone(330.0, 1.0), torch.zeros(2, SR)], dim=-1)
    scores = pitched_content(half, SR)
    assert scores.pitched_share.item() > 0.95
    assert 0.4 < scores.sounding_share.item() < 0.6
    # A wholly silent clip has no share and stays out of the mean.
    metric = PitchedContent()
    metric.update(harmonic_tone(220.0, 1.0), SR)
    silent = metric.update(torch.zeros(1, 2, SR), SR)
    assert math.isnan(silent.pitched_share.item()) and math.isnan(silent.median_f0_hz.item())
    metric.update(noise(1.0), SR)
    summary = metric.compute()
    assert (summary.items, summary.silent_items) == (3, 1)
    tone_share, _, noise_share = metric.pitched_shares
    assert summary.mean_pitched_share == pytest.approx((tone_share + noise_share) / 2)
    assert 0.4 < summary.mean_pitched_share < 0.6
    # The silent clip plays nowhere: it pulls the sounding share down.
    assert metric.sounding_shares[1] == 0.0
    assert summary.mean_sounding_share == pytest.approx(
        (metric.sounding_shares[0] + metric.sounding_shares[2]) / 3)


def test_a_generation_that_stops_early_sounds_for_a_small_share() -> None:
    # What a model that ends a 10 s request after 1 s gives, trimmed to the request: the
    # pitched share cannot see it, the sounding share does; gaps count as well.
    early = torch.cat([harmonic_tone(220.0, 1.0), torch.zeros(2, 9 * SR)], dim=-1)
    gaps = torch.cat([harmonic_tone(220.0, 1.0), torch.zeros(2, SR)] * 5, dim=-1)
    scores = pitched_content(torch.stack([early, gaps, harmonic_tone(220.0, 10.0)]), SR)
    assert scores.pitched_share.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=0.05)
    # (frames across an edge sound: five edges in the second)
    assert scores.sounding_share.tolist() == pytest.approx([0.1, 0.5, 1.0], abs=0.04)


def test_a_melody_spreads_over_notes_a_drone_does_not() -> None:
    scale = torch.cat([harmonic_tone(261.63 * 2 ** (k / 12), 0.5) for k in (0, 2, 4, 5, 7)],
                      dim=-1)
    scores = pitched_content(scale, SR)
    assert scores.pitched_share.item() > 0.8
    assert scores.top_note_share.item() < 0.4  # five notes of equal length


def test_accumulators_merge_and_report_all_silence() -> None:
    a, b = PitchedContent(), PitchedContent()
    a.update(harmonic_tone(220.0, 1.0), SR)
    b.update(noise(1.0), SR)
    a.merge(b)
    both = PitchedContent()
    both.update(torch.stack([harmonic_tone(220.0, 1.0), noise(1.0)]), SR)
    assert a.compute() == both.compute()
    silent = PitchedContent()
    silent.update(torch.zeros(2, 2, SR), SR)
    summary = silent.compute()
    assert summary.silent_items == 2 and summary.mean_pitched_share is None
    assert summary.mean_top_note_share is None
    with pytest.raises(ValueError, match="call update"):
        PitchedContent().compute()
    with pytest.raises(ValueError, match="too short"):
        PitchedContent().update(torch.zeros(2, 100), SR)

"""Tests of longplay.evaluation.fidelity: DC offset, added tonal lines, chroma and pitch."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from longplay.audio import save_audio
from longplay.evaluation import (
    ReconstructionMetrics,
    added_tone_db,
    chroma_correlation,
    compare_audio,
    dc_offset,
    fidelity_scores,
    harmonic_detail_correlation,
    yin_pitch,
)
from longplay.evaluation.fidelity import ADDED_TONE_FLOOR_DB

SR = 44100
BIN_HZ = SR / 8192  # the long-term spectrum's bin spacing
COMB_HZ = SR / 256  # the demo VAE's line spacing, 32 bins


def _time(duration_s: float = 1.0) -> torch.Tensor:
    return torch.arange(round(duration_s * SR), dtype=torch.float64) / SR


def _harmonic(f0_hz: float, duration_s: float = 1.0, amplitude: float = 0.3) -> torch.Tensor:
    """[2, S] a tone of six harmonics with 1/k amplitudes, the same in both channels."""
    t = _time(duration_s)
    tone = sum(amplitude / k * torch.sin(2 * math.pi * f0_hz * k * t) for k in range(1, 7))
    return tone.expand(2, -1).clone()


def _sine(freq_hz: float, amplitude: float = 0.5, duration_s: float = 1.0) -> torch.Tensor:
    return (amplitude * torch.sin(2 * math.pi * freq_hz * _time(duration_s))).expand(2, -1).clone()


def _comb(amplitude: float, duration_s: float = 1.0) -> torch.Tensor:
    """[2, S] equal sines at every multiple of 44100/256 Hz below Nyquist."""
    t = _time(duration_s)
    lines = torch.arange(1, 128, dtype=torch.float64).unsqueeze(1) * COMB_HZ
    return (amplitude * torch.sin(2 * math.pi * lines * t).sum(dim=0)).expand(2, -1).clone()


def _noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------- DC offset

def test_dc_offset_is_the_largest_channel_mean_and_the_reference_is_reported_apart() -> None:
    music = _harmonic(220.0)
    est = music + torch.tensor([[0.01], [-0.03]], dtype=torch.float64)
    assert dc_offset(est) == pytest.approx(0.03, abs=1e-4)
    assert dc_offset(music) < 1e-3
    # digital silence decoded to a constant
    assert dc_offset(torch.full((2, SR), 0.05)) == pytest.approx(0.05)
    scores = fidelity_scores(est, music, SR)  # here the input carries the offset
    assert scores.reference_dc_offset.item() == pytest.approx(0.03, abs=1e-4)
    assert scores.dc_offset.item() < 1e-3


# ---------------------------------------------------------------------------- added tone

def test_exact_reconstruction_of_a_sine_adds_no_tone() -> None:
    ref = _sine(186 * BIN_HZ)
    assert added_tone_db(ref, ref.clone(), SR) == ADDED_TONE_FLOOR_DB


@pytest.mark.parametrize("level_db", [-30.0, -50.0])
def test_an_added_comb_is_found_at_its_level(level_db: float) -> None:
    ref = _sine(186 * BIN_HZ, amplitude=0.5)  # bin-centred, as the comb's lines are
    est = ref + _comb(0.5 * 10 ** (level_db / 20))
    assert added_tone_db(ref, est, SR) == pytest.approx(level_db, abs=0.5)


def test_tone_level_is_relative_to_the_estimates_strongest_bin_above_20_hz() -> None:
    ref = _sine(186 * BIN_HZ, amplitude=0.5)
    est = ref + _comb(0.5 * 10 ** (-30 / 20)) + 0.2  # a DC offset is no tonal line
    assert added_tone_db(ref, est, SR) == pytest.approx(-30.0, abs=0.5)


def test_lines_the_reference_has_are_not_added() -> None:
    ref = _harmonic(220.0) + _comb(0.005)
    assert added_tone_db(ref, ref.clone(), SR) == ADDED_TONE_FLOOR_DB
    # the same comb a little louder, or the music 6 dB louder: not absent from the input
    assert added_tone_db(ref, _harmonic(220.0) + _comb(0.01), SR) == ADDED_TONE_FLOOR_DB
    assert added_tone_db(ref, 2.0 * ref, SR) == ADDED_TONE_FLOOR_DB
    # a line moved by one bin stays within the reference's main lobe
    assert added_tone_db(_sine(186 * BIN_HZ), _sine(187 * BIN_HZ), SR) == ADDED_TONE_FLOOR_DB
    # ... but moved by ten bins it is new
    assert added_tone_db(_sine(186 * BIN_HZ), _sine(196 * BIN_HZ), SR) == pytest.approx(0.0)


def test_broadband_error_is_not_a_tone() -> None:
    ref = _harmonic(220.0)
    est = ref + 0.01 * _noise(ref.shape, seed=0)  # -40 dB of white noise
    assert added_tone_db(ref, est, SR) == ADDED_TONE_FLOOR_DB


# ---------------------------------------------------------------------------- chroma

def test_chroma_correlation_is_one_for_identical_audio_and_low_for_a_comb() -> None:
    melody = torch.cat([_harmonic(f, 0.5) for f in (261.63, 329.63, 392.0, 440.0)], dim=1)
    assert chroma_correlation(melody, melody.clone(), SR) == pytest.approx(1.0)
    comb = _comb(0.02, duration_s=2.0)
    assert chroma_correlation(melody, comb, SR) < 0.3
    semitone_up = torch.cat([_harmonic(f * 2 ** (1 / 12), 0.5)
                             for f in (261.63, 329.63, 392.0, 440.0)], dim=1)
    assert chroma_correlation(melody, semitone_up, SR) < 0.3
    # a melody under a weak comb keeps most of its chroma
    assert chroma_correlation(melody, melody + _comb(0.002, duration_s=2.0), SR) > 0.8


def test_chroma_correlation_scores_only_frames_where_the_reference_sounds() -> None:
    ref = torch.cat([_harmonic(220.0), torch.zeros(2, SR, dtype=torch.float64)], dim=1)
    est = ref.clone()
    est[:, SR + 4096:] = 0.1 * _noise((2, SR - 4096), seed=1)  # noise where the input is silent
    assert chroma_correlation(ref, est, SR) > 0.99
    with pytest.raises(ValueError, match="silent"):
        chroma_correlation(torch.zeros(2, SR), torch.zeros(2, SR), SR)


# ---------------------------------------------------------------------- harmonic detail

def test_harmonic_detail_follows_the_partials_not_the_envelope() -> None:
    notes = (220.0, 261.63, 329.63, 392.0)
    melody = torch.cat([_harmonic(f, 0.5) for f in notes], dim=1)
    assert harmonic_detail_correlation(melody, melody.clone(), SR) == pytest.approx(1.0)
    # the same notes under -40 dB of white noise keep their partials
    noisy = melody + 0.003 * _noise(melody.shape, seed=2)
    assert harmonic_detail_correlation(melody, noisy, SR) > 0.8
    # a tritone up: the same kind of spectrum, every partial in other bins
    moved = torch.cat([_harmonic(f * 2 ** 0.5, 0.5) for f in notes], dim=1)
    assert harmonic_detail_correlation(melody, moved, SR) < 0.3
    # noise: an envelope with no partials
    assert abs(harmonic_detail_correlation(melody, 0.1 * _noise(melody.shape, seed=3), SR)) < 0.2
    with pytest.raises(ValueError, match="silent"):
        harmonic_detail_correlation(torch.zeros(2, SR), torch.zeros(2, SR), SR)


# ---------------------------------------------------------------------------- pitch

@pytest.mark.parametrize("f0_hz", [82.41, 220.0, 987.77])
def test_yin_tracks_a_harmonic_tone(f0_hz: float) -> None:
    track = yin_pitch(_harmonic(f0_hz), SR)
    assert track.voiced.shape == track.f0_hz.shape == (1, 1 + (16000 - 1024) // 352)
    assert track.voiced.float().mean() > 0.95
    cents = 1200 * torch.log2(track.f0_hz[track.voiced] / f0_hz)
    assert cents.abs().max() < 10.0
    assert (track.f0_hz[~track.voiced] == 0).all()


def test_yin_finds_no_pitch_in_noise_silence_or_dc() -> None:
    assert yin_pitch(0.1 * _noise((2, SR), seed=2), SR).voiced.float().mean() < 0.1
    assert not yin_pitch(torch.zeros(2, SR), SR).voiced.any()
    assert not yin_pitch(torch.full((2, SR), 0.05), SR).voiced.any()


def test_yin_energy_gate_follows_the_loudest_frame() -> None:
    loud, quiet = _harmonic(220.0, 0.5), _harmonic(220.0, 0.5, amplitude=0.3 * 10 ** (-50 / 20))
    track = yin_pitch(torch.cat([loud, quiet], dim=1), SR)
    half = track.voiced.shape[1] // 2
    assert track.voiced[0, : half - 2].all() and not track.voiced[0, half + 2:].any()


def test_pitch_scores_compare_estimate_with_reference() -> None:
    ref = _harmonic(220.0)
    same = fidelity_scores(ref, ref.clone(), SR)
    assert same.pitch_agreement.item() == 1.0
    assert same.pitched_share_reference.item() == same.pitched_share_estimate.item() > 0.95
    shifted = fidelity_scores(ref, _harmonic(220.0 * 2 ** (1 / 12)), SR)  # 100 cents off
    assert shifted.pitched_share_estimate.item() > 0.95 and shifted.pitch_agreement.item() < 0.05
    noisy = fidelity_scores(ref, 0.1 * _noise(ref.shape, seed=3), SR)
    assert noisy.pitched_share_estimate.item() < 0.1 and noisy.pitch_agreement.item() < 0.1
    silent = fidelity_scores(torch.zeros(2, SR), ref, SR)
    assert math.isnan(silent.pitch_agreement.item()) and math.isnan(
        silent.chroma_correlation.item())


# ---------------------------------------------------------------------------- accumulation

def test_accumulator_reports_the_worst_tone_and_skips_undefined_items() -> None:
    ref = torch.stack([_sine(186 * BIN_HZ), torch.zeros(2, SR, dtype=torch.float64)])
    est = ref + torch.stack([_comb(0.5 * 10 ** (-30 / 20)), torch.full((2, SR), 0.02)])
    whole = ReconstructionMetrics()
    whole.update(ref, est, SR)
    scores = whole.compute()
    assert scores.worst_added_tone_db == pytest.approx(-30.0, abs=0.5)
    assert scores.added_tone_db == pytest.approx((-30.0 + ADDED_TONE_FLOOR_DB) / 2, abs=0.5)
    assert scores.dc_offset == pytest.approx(0.01, abs=1e-4)  # mean of ~0 and 0.02
    assert scores.reference_dc_offset < 1e-4
    assert scores.chroma_correlation == pytest.approx(
        chroma_correlation(ref[0], est[0], SR))  # the silent item has no chroma
    first, second = ReconstructionMetrics(), ReconstructionMetrics()
    first.update(ref[1], est[1], SR)
    second.update(ref[0], est[0], SR)
    first.merge(second)
    assert first.compute().as_dict() == pytest.approx(scores.as_dict())
    only_silence = ReconstructionMetrics()
    only_silence.update(ref[1], est[1], SR)
    silence = only_silence.compute()
    assert silence.chroma_correlation is None and silence.pitch_agreement is None
    assert silence.worst_added_tone_db == ADDED_TONE_FLOOR_DB
    json.dumps(silence.as_dict(), allow_nan=False)


def test_compare_audio_reports_the_fidelity_checks(tmp_path: Path) -> None:
    ref = _harmonic(220.0)
    save_audio(tmp_path / "ref.wav", ref.float(), SR, subtype="FLOAT")
    save_audio(tmp_path / "est.wav", (0.5 * ref + _comb(0.01) + 0.03).float(), SR,
               subtype="FLOAT")
    scores = compare_audio(tmp_path / "ref.wav", tmp_path / "est.wav", sample_rate=SR)
    assert scores.dc_offset == pytest.approx(0.03, abs=1e-3)
    assert -30.0 < scores.added_tone_db == scores.worst_added_tone_db < -10.0
    assert scores.pitched_share_reference > 0.95 and scores.pitch_agreement is not None


def test_fidelity_checks_reject_bad_input() -> None:
    x = _harmonic(220.0)
    with pytest.raises(ValueError, match="trim"):
        added_tone_db(x, x[:, :-10], SR)
    with pytest.raises(ValueError, match="too short"):
        chroma_correlation(x[:, :1000], x[:, :1000], SR)
    with pytest.raises(ValueError, match="f0_min_hz"):
        yin_pitch(x, SR, f0_min_hz=500.0, f0_max_hz=100.0)
    with pytest.raises(ValueError, match="floating"):
        dc_offset(torch.zeros(2, SR, dtype=torch.int16))

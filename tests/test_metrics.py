"""Tests of longplay.evaluation.autoencoder_metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from longplay.audio import load_audio, save_audio
from longplay.evaluation import (
    ReconstructionMetrics,
    ReconstructionScores,
    compare_audio,
    mel_distance,
    si_sdr,
    stft_distance,
)

SR = 16000
S = 4096


def _music(batch: int = 1, channels: int = 2, num_samples: int = S, seed: int = 0) -> torch.Tensor:
    """[B, C, S] a few harmonics plus a little noise, peak well below 1."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples) / SR
    freqs = 110.0 * (1 + torch.randint(0, 12, (batch, channels, 3), generator=gen))
    tones = torch.sin(2 * torch.pi * freqs.unsqueeze(-1) * t).sum(dim=2) / 6  # [B, C, S]
    return tones + 0.01 * torch.randn(batch, channels, num_samples, generator=gen)


def _noise_like(x: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


def test_identical_signals() -> None:
    x = _music(batch=2)
    assert stft_distance(x, x.clone()) == 0.0
    assert mel_distance(x, x.clone(), SR) == 0.0
    sdr = si_sdr(x, x.clone())
    assert sdr > 100.0
    assert sdr != float("inf")


def test_distances_grow_with_noise_level() -> None:
    x = _music()
    noise = _noise_like(x, seed=1)
    levels = [0.001, 0.01, 0.1, 0.5]
    stft = [stft_distance(x, x + a * noise) for a in levels]
    mel = [mel_distance(x, x + a * noise, SR) for a in levels]
    sdr = [si_sdr(x, x + a * noise) for a in levels]
    assert all(d > 0 for d in stft + mel)
    assert stft == sorted(stft) and len(set(stft)) == len(stft)
    assert mel == sorted(mel) and len(set(mel)) == len(mel)
    assert sdr == sorted(sdr, reverse=True) and len(set(sdr)) == len(sdr)


def test_distances_are_symmetric_and_accept_unbatched() -> None:
    x, y = _music(seed=0), _music(seed=1)
    assert stft_distance(x, y) == pytest.approx(stft_distance(y, x), rel=1e-6)
    assert mel_distance(x[0], y[0], SR) == pytest.approx(mel_distance(x, y, SR), rel=1e-6)


def test_si_sdr_scale_invariant() -> None:
    x = _music()
    y = x + 0.05 * _noise_like(x, seed=2)
    base = si_sdr(x, y)
    for scale in (0.1, 3.0, 1000.0):
        assert si_sdr(x, scale * y) == pytest.approx(base, abs=1e-6)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_si_sdr_matches_known_snr(snr_db: float) -> None:
    x = _music()
    noise = _noise_like(x, seed=3)
    noise = noise - noise.mean()
    gain = (x.pow(2).sum() / (noise.pow(2).sum() * 10 ** (snr_db / 10))).sqrt()
    assert si_sdr(x, x + gain * noise) == pytest.approx(snr_db, abs=0.5)
    # with the noise made orthogonal to the zero-mean reference the match is exact
    ref = (x - x.mean()).flatten()
    ortho = noise.flatten() - (noise.flatten() @ ref) / (ref @ ref) * ref
    gain = (ref.pow(2).sum() / (ortho.pow(2).sum() * 10 ** (snr_db / 10))).sqrt()
    est = x + (gain * ortho).view_as(x)
    assert si_sdr(x, est) == pytest.approx(snr_db, abs=1e-3)


def test_si_sdr_concatenates_channels() -> None:
    x = _music()
    y = x.clone()
    y[:, 1] *= 2.0  # one channel louder: not a global scale, so SI-SDR drops
    assert si_sdr(x, y) < 20.0
    assert si_sdr(x, 2.0 * x) > 100.0


def test_metrics_batches_equal_concatenation() -> None:
    x = _music(batch=3, seed=4)
    y = x + 0.05 * _noise_like(x, seed=5)
    split = ReconstructionMetrics()
    split.update(x[:2], y[:2], SR)
    split.update(x[2], y[2], SR)  # a single unbatched [C, S] item
    whole = ReconstructionMetrics()
    whole.update(x, y, SR)
    a, b = split.compute(), whole.compute()
    assert a.num_items == b.num_items == 3
    assert a.stft_distance == pytest.approx(b.stft_distance, rel=1e-5)
    assert a.mel_distance == pytest.approx(b.mel_distance, rel=1e-5)
    assert a.si_sdr == pytest.approx(b.si_sdr, rel=1e-6)
    assert b.stft_distance == pytest.approx(stft_distance(x, y), rel=1e-5)
    assert b.si_sdr == pytest.approx(si_sdr(x, y), rel=1e-6)

    first, second = ReconstructionMetrics(), ReconstructionMetrics()
    first.update(x[:1], y[:1], SR)
    second.update(x[1:], y[1:], SR)
    first.merge(second)
    merged = first.compute()
    assert merged.num_items == 3
    assert merged.mel_distance == pytest.approx(b.mel_distance, rel=1e-5)
    assert merged.as_dict() == pytest.approx(b.as_dict(), rel=1e-5)
    assert set(merged.as_dict()) == {
        "stft_distance", "mel_distance", "si_sdr", "dc_offset", "reference_dc_offset",
        "added_tone_db", "worst_added_tone_db", "chroma_correlation", "harmonic_detail_correlation",
        "pitched_share_reference",
        "pitched_share_estimate", "pitch_agreement", "num_items"}


def test_metrics_validation() -> None:
    metrics = ReconstructionMetrics()
    with pytest.raises(ValueError, match="update"):
        metrics.compute()
    x = _music()
    with pytest.raises(ValueError, match="trim"):
        metrics.update(x, x[..., :-10], SR)
    with pytest.raises(ValueError, match=r"\(1, 2, 4096\).*\(1, 1, 4096\)"):
        metrics.update(x, x[:, :1], SR)
    metrics.update(x, x, SR)
    with pytest.raises(ValueError, match="44100 Hz"):
        metrics.update(x, x, 44100)
    with pytest.raises(ValueError, match="too short"):
        stft_distance(x[..., :1000], x[..., :1000])


def _write_pair(
    ref_dir: Path, est_dir: Path, name: str, seed: int, est_name: str | None = None
) -> None:
    x = _music(seed=seed)[0]
    (ref_dir / name).parent.mkdir(parents=True, exist_ok=True)
    (est_dir / (est_name or name)).parent.mkdir(parents=True, exist_ok=True)
    save_audio(ref_dir / name, x, SR, subtype="FLOAT" if name.endswith(".wav") else None)
    save_audio(est_dir / (est_name or name), x + 0.02 * _noise_like(x, seed + 100), SR)


def test_compare_audio_folders(tmp_path: Path) -> None:
    ref_dir, est_dir = tmp_path / "ref", tmp_path / "est"
    _write_pair(ref_dir, est_dir, "a.wav", seed=0)
    _write_pair(ref_dir, est_dir, "sub/b.flac", seed=1, est_name="sub/b.wav")
    scores = compare_audio(ref_dir, est_dir, sample_rate=SR)
    assert isinstance(scores, ReconstructionScores)
    assert scores.num_items == 2

    expected = ReconstructionMetrics()
    for ref_name, est_name in [("a.wav", "a.wav"), ("sub/b.flac", "sub/b.wav")]:
        ref = load_audio(ref_dir / ref_name, sample_rate=SR, channels=2).audio
        est = load_audio(est_dir / est_name, sample_rate=SR, channels=2).audio
        expected.update(ref, est, SR)
    assert scores.as_dict() == pytest.approx(expected.compute().as_dict())
    assert scores.stft_distance > 0 and scores.mel_distance > 0
    assert 10 < scores.si_sdr < 40

    single = compare_audio(ref_dir / "a.wav", est_dir / "a.wav", sample_rate=SR)
    assert single.num_items == 1


def test_compare_audio_missing_counterpart(tmp_path: Path) -> None:
    ref_dir, est_dir = tmp_path / "ref", tmp_path / "est"
    _write_pair(ref_dir, est_dir, "a.wav", seed=0)
    x = _music(seed=9)[0]
    for i in range(12):
        save_audio(ref_dir / f"only_ref_{i:02d}.wav", x, SR)
    with pytest.raises(ValueError, match="12 file") as excinfo:
        compare_audio(ref_dir, est_dir, sample_rate=SR)
    message = str(excinfo.value)
    assert "only_ref_00" in message and "only_ref_09" in message
    assert "only_ref_11" not in message and "2 more" in message
    with pytest.raises(ValueError, match="both be files or both be folders"):
        compare_audio(ref_dir, est_dir / "a.wav", sample_rate=SR)


def test_compare_audio_trims_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    x = _music(seed=0)[0]
    save_audio(tmp_path / "ref.wav", x, SR, subtype="FLOAT")
    save_audio(tmp_path / "est.wav", x[:, : S - 200], SR, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="longplay.evaluation.autoencoder_metrics"):
        scores = compare_audio(tmp_path / "ref.wav", tmp_path / "est.wav", sample_rate=SR)
    assert "more than 1%" in caplog.text
    assert scores.stft_distance == 0.0 and scores.si_sdr > 100

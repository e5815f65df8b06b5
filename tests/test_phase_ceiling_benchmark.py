"""benchmarks/phase_ceiling.py: its reconstructions are what they claim to be."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import load_script

SR = 44100


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/phase_ceiling.py")


def two_tones(low_hz: float, high_hz: float, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    wave = (0.3 * torch.sin(2 * math.pi * low_hz * t)
            + 0.3 * torch.sin(2 * math.pi * high_hz * t + 1))
    return torch.stack([wave, 0.5 * wave])


def test_keeping_every_phase_rebuilds_the_input(bench) -> None:
    x = two_tones(220, 3000)
    scores = bench.ceilings(x, SR, [SR / 2 + 1], iters=2)
    assert scores[f"+ phases below {SR / 2 + 1:g} Hz"] > 60
    assert scores[f"only below {SR / 2 + 1:g} Hz"] > 60


def test_the_band_below_a_cutoff_holds_its_share_of_the_energy(bench) -> None:
    # two tones of equal power: the band with one of them is half the signal (0 dB)
    scores = bench.ceilings(two_tones(220, 3000), SR, [1000], iters=2)
    assert abs(scores["only below 1000 Hz"]) < 0.5
    # the low tone exact, the high one of invented phase: its error counts against it
    assert scores["+ phases below 1000 Hz"] < 0


def test_griffin_lim_matches_the_magnitudes_but_not_the_waveform(bench) -> None:
    x = two_tones(220, 3000)
    magnitude = bench.stft(x).abs()
    inner = (slice(None), slice(None), slice(4, -4))  # away from the reflect-padded edges

    def convergence(y: torch.Tensor) -> float:
        rebuilt = bench.stft(y).abs()
        return float((rebuilt - magnitude)[inner].norm() / magnitude[inner].norm())

    y = bench.griffin_lim(magnitude, x.shape[-1], iters=32)
    # the iterations bring the magnitudes of random phases much closer to the input's
    assert convergence(y) < 0.5 * convergence(bench.griffin_lim(magnitude, x.shape[-1], 0))
    # the same spectrum, another waveform: the phases of random starts are not the input's
    assert bench.si_sdr_db(x, y) < 10


def test_phase_values_count_bins_frames_and_channels(bench) -> None:
    # 800 Hz at 44.1 kHz and 2048 points: bins 0..37 (38 bins), 4 STFT frames, 2 channels
    assert bench.phase_values(800, SR, 2) == 38 * 4 * 2


@pytest.mark.parametrize("argv", [["--cutoffs", "200,abc"], ["--cutoffs", "-5"],
                                  ["--clips", "0"], ["--seconds", "0.01"]])
def test_bad_arguments_are_refused_before_any_work(bench, argv, tmp_path, capsys) -> None:
    out = tmp_path / "table.md"
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--corpus", str(tmp_path), "--out", str(out), *argv])
    assert exit_.value.code == 2
    assert argv[0] in capsys.readouterr().err
    assert not out.exists()

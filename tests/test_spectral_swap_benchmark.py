"""benchmarks/spectral_swap.py: its rebuilds are what they claim to be, and its phases
derived from magnitudes put a partial between two bins at its own frequency."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import SAO1_TINY, load_script
from longplay.builders import build_vae
from longplay.config import vae_preset
from longplay.evaluation import added_tone_db

SR = 44100
N_FFT, HOP = 2048, 512


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/spectral_swap.py")


def tone(hz: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    wave = 0.3 * torch.sin(2 * math.pi * hz * t)
    return torch.stack([wave, wave]).float()


def strongest_hz(audio: torch.Tensor) -> float:
    """The frequency of the loudest bin of a long zero-padded spectrum (0.34 Hz bins)."""
    mid = audio[0, SR // 4: 3 * SR // 4]
    spectrum = torch.fft.rfft(mid * torch.hann_window(mid.shape[-1]), n=1 << 17).abs()
    return float(spectrum.argmax()) * SR / (1 << 17)


def test_derived_phases_put_a_partial_between_bins_at_its_frequency(bench) -> None:
    frames = SR // HOP
    x = tone(1000.0)[:, :frames * HOP]  # bin 46.44 of a 2048 STFT: between two bin centres
    vae = build_vae(vae_preset("debug-spectral"), seed=0)  # the demo VAE's STFT grid
    assert (vae.decoder.n_fft, vae.decoder.frame_hop) == (N_FFT, HOP)
    magnitude = vae.encoder.stft(x[None]).abs()

    def rebuild(phase: torch.Tensor) -> torch.Tensor:
        return vae.decoder.synthesize(torch.polar(magnitude, phase))[0]

    derived = rebuild(bench.phases_from_magnitudes(magnitude, N_FFT, HOP))
    assert abs(strongest_hz(derived) - 1000.0) < 1.0
    assert added_tone_db(x, derived, SR) == -120.0
    # Each bin a steady tone at its centre (the same magnitudes, phases advancing at the
    # bins' own frequencies): the partial comes back as lines at 990.5 and 1012 Hz.
    k = torch.arange(magnitude.shape[-2], dtype=torch.float64)[:, None]
    n = torch.arange(frames, dtype=torch.float64)[None, :]
    centred = rebuild((2 * math.pi * k * n * HOP / N_FFT).float())
    assert abs(strongest_hz(centred) - 1000.0) > 5.0
    assert added_tone_db(x, centred, SR) > -60.0


def test_swaps_rebuild_the_input_from_both_of_its_halves(bench) -> None:
    vae = build_vae(vae_preset("debug-spectral"), seed=0).eval()
    clip = 0.1 * torch.randn(2, 3 * 2048 + 100, generator=torch.Generator().manual_seed(0))
    rows = bench.swaps(vae, clip)
    assert set(rows) == {bench.row_name(m, p) for m in bench.MAGNITUDES for p in bench.PHASES}
    for audio in rows.values():
        assert audio.shape == clip.shape and torch.isfinite(audio).all()
    # away from the zero-padded end, whose last frames the round trip cannot see whole
    inner = slice(N_FFT, 3 * 2048 - N_FFT)
    roundtrip = rows[bench.row_name("input", "input")]
    torch.testing.assert_close(roundtrip[:, inner], clip[:, inner], atol=1e-4, rtol=0)
    # the decoder's own halves are its decode
    with torch.inference_mode():
        decoded = vae.reconstruct(clip[None])[0]
    torch.testing.assert_close(rows[bench.row_name("decoder", "decoder")], decoded,
                               atol=1e-4, rtol=1e-3)


def test_bad_arguments_are_refused_before_any_work(bench, tmp_path, capsys) -> None:
    out = tmp_path / "swap.md"
    cases = [(["--corpus", str(tmp_path), "--clips", "0"], "--clips must be at least 1"),
             (["--corpus", str(tmp_path / "missing")], "is not a folder"),
             (["--corpus", str(tmp_path), "--model", str(SAO1_TINY)], "not a spectral one")]
    for argv, message in cases:
        with pytest.raises(SystemExit):
            bench.main([*argv, "--out", str(out)])
        assert message in capsys.readouterr().err
    assert not out.exists()

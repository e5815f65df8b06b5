"""Tests of longplay.audio.io and longplay.audio.spectral."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from longplay.audio import (
    AudioFileError,
    audio_info,
    convert_channels,
    hz_to_mel,
    load_audio,
    mel_filterbank,
    mel_to_hz,
    resample,
    save_audio,
    stft_magnitude,
)
from longplay.audio import io as audio_io

SR = 16000


def _sine(freq: float, sample_rate: int, num_samples: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(num_samples) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _stereo(num_samples: int = 1600) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(2, num_samples, generator=gen) - 0.5) * 1.6  # [2, S] in [-0.8, 0.8]


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- round trips and formats ---------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_pcm16_round_trip(tmp_path: Path, suffix: str) -> None:
    audio = _stereo()
    out = save_audio(tmp_path / f"x{suffix}", audio, SR)
    wave = load_audio(out)
    assert wave.sample_rate == SR
    assert wave.audio.shape == audio.shape
    assert wave.audio.dtype == torch.float32
    assert torch.allclose(wave.audio, audio, atol=1e-4)
    assert sf.info(str(out)).subtype == "PCM_16"


def test_float_wav_round_trip_is_exact(tmp_path: Path) -> None:
    audio = _stereo()
    out = save_audio(tmp_path / "x.wav", audio, SR, subtype="FLOAT")
    assert torch.equal(load_audio(out).audio, audio)


def test_pcm24_flac(tmp_path: Path) -> None:
    audio = _stereo()
    out = save_audio(tmp_path / "x.flac", audio, SR, subtype="PCM_24")
    assert sf.info(str(out)).subtype == "PCM_24"
    assert torch.allclose(load_audio(out).audio, audio, atol=1e-6)


def test_float_flac_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FLOAT"):
        save_audio(tmp_path / "x.flac", _stereo(), SR, subtype="FLOAT")
    assert _listing(tmp_path) == []


def test_ogg_readable(tmp_path: Path) -> None:
    path = tmp_path / "x.ogg"
    sf.write(str(path), _sine(440, SR, 8000), SR, format="OGG", subtype="VORBIS")
    wave = load_audio(path)
    assert wave.sample_rate == SR
    assert wave.audio.shape[0] == 1
    assert abs(wave.num_samples - 8000) < 100
    info = audio_info(path)
    assert info.channels == 1 and info.sample_rate == SR and info.num_samples > 0


def test_mp3_readable(tmp_path: Path) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile build has no MP3 support")
    path = tmp_path / "x.mp3"
    stereo = np.stack([_sine(440, 44100, 8820), _sine(880, 44100, 8820)], axis=1)
    try:
        sf.write(str(path), stereo, 44100, format="MP3")
    except sf.LibsndfileError as error:  # pragma: no cover - depends on the libsndfile build
        pytest.skip(f"this libsndfile build cannot encode MP3: {error}")
    wave = load_audio(path)
    assert wave.sample_rate == 44100
    assert wave.audio.shape[0] == 2
    assert wave.num_samples >= 8820
    assert wave.audio.abs().max() > 0.2
    mono = load_audio(path, channels=1, sample_rate=22050)
    assert mono.audio.shape[0] == 1 and mono.sample_rate == 22050


def test_audio_info_reads_header(tmp_path: Path) -> None:
    path = save_audio(tmp_path / "x.wav", _stereo(3200), SR)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.num_samples) == (SR, 2, 3200)
    assert info.duration_s == pytest.approx(0.2)
    assert info.format == "WAV"


def test_load_with_conversion(tmp_path: Path) -> None:
    path = tmp_path / "m.wav"
    sf.write(str(path), _sine(1000, 48000, 4800), 48000, subtype="FLOAT")
    wave = load_audio(path, sample_rate=44100, channels=2)
    assert wave.sample_rate == 44100
    assert wave.audio.shape == (2, 4410)
    assert torch.equal(wave.audio[0], wave.audio[1])
    assert wave.duration_s == pytest.approx(0.1)


# --- resampling and channels ---------------------------------------------------------------


def test_resample_keeps_frequency_and_length() -> None:
    num_samples = 4800
    audio = torch.from_numpy(_sine(1000, 48000, num_samples))
    out = resample(audio.unsqueeze(0), 48000, 44100)
    assert out.shape == (1, round(num_samples * 44100 / 48000))
    assert out.dtype == torch.float32
    spectrum = np.abs(np.fft.rfft(out[0].numpy()))
    peak_hz = np.argmax(spectrum) * 44100 / out.shape[-1]
    assert peak_hz == pytest.approx(1000, abs=10)
    # amplitude preserved away from the edges
    assert out[0, 500:-500].abs().max() == pytest.approx(0.5, abs=0.01)


def test_resample_leading_dims_dtype_and_identity() -> None:
    audio = torch.randn(2, 3, 960, dtype=torch.float64)
    out = resample(audio, 48000, 16000)
    assert out.shape == (2, 3, 320) and out.dtype == torch.float64
    # each signal resampled independently
    single = resample(audio[1, 2], 48000, 16000)
    assert torch.allclose(out[1, 2], single)
    assert resample(audio, 16000, 16000) is audio
    with pytest.raises(ValueError, match="positive"):
        resample(audio, 0, 16000)
    with pytest.raises(TypeError, match="floating"):
        resample(torch.zeros(10, dtype=torch.int16), 16000, 8000)


def test_mono_to_stereo_duplicates() -> None:
    mono = torch.randn(1, 50)
    stereo = convert_channels(mono, 2)
    assert stereo.shape == (2, 50)
    assert torch.equal(stereo[0], mono[0]) and torch.equal(stereo[1], mono[0])


def test_five_channels_to_stereo_downmix() -> None:
    audio = torch.arange(5, dtype=torch.float32).view(5, 1).repeat(1, 10)  # channel k = k
    stereo = convert_channels(audio, 2)
    assert stereo.shape == (2, 10)
    assert torch.allclose(stereo, torch.full((2, 10), 2.0))  # mean of 0..4


def test_stereo_to_mono_and_unchanged() -> None:
    audio = torch.stack([torch.ones(8), -torch.ones(8) * 3])
    assert torch.allclose(convert_channels(audio, 1), torch.full((1, 8), -1.0))
    assert convert_channels(audio, 2) is audio


def test_stereo_to_three_channels_raises() -> None:
    with pytest.raises(ValueError, match="2-channel audio to 3 channels"):
        convert_channels(torch.zeros(2, 10), 3)


# --- unreadable inputs ---------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty.wav"
    empty.touch()
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio, just text renamed to .wav\n" * 10)
    zero_frames = tmp_path / "zero.wav"
    sf.write(str(zero_frames), np.zeros((0, 2), dtype=np.float32), SR)
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    return {
        "missing": (tmp_path / "missing.wav", "not found"),
        "directory": (folder, "directory"),
        "empty": (empty, "0 bytes"),
        "text": (text, "not a readable audio file"),
        "zero_frames": (zero_frames, "0 samples"),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "text", "zero_frames"])
def test_unreadable_inputs_raise_audio_file_error(tmp_path: Path, case: str) -> None:
    path, reason = _bad_inputs(tmp_path)[case]
    for reader in (load_audio, audio_info):
        with pytest.raises(AudioFileError, match=reason) as excinfo:
            reader(path)
        assert str(path) in str(excinfo.value)
        assert isinstance(excinfo.value, ValueError)


def test_nan_in_float_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    data = np.zeros((100, 1), dtype=np.float32)
    data[10] = np.nan
    sf.write(str(path), data, SR, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="NaN") as excinfo:
        load_audio(path)
    assert str(path) in str(excinfo.value)


# --- limits and truncated files ------------------------------------------------------------


@pytest.mark.parametrize(("rate", "channels", "value", "limit"), [
    (1, 1, "1 Hz", f"{audio_io.MIN_INPUT_SAMPLE_RATE}..{audio_io.MAX_INPUT_SAMPLE_RATE} Hz"),
    (audio_io.MAX_INPUT_SAMPLE_RATE + 1, 1, f"{audio_io.MAX_INPUT_SAMPLE_RATE + 1} Hz",
     f"{audio_io.MAX_INPUT_SAMPLE_RATE} Hz"),
    (SR, audio_io.MAX_INPUT_CHANNELS + 1, f"{audio_io.MAX_INPUT_CHANNELS + 1} channels",
     f"the {audio_io.MAX_INPUT_CHANNELS}"),
])
def test_implausible_rates_and_channel_counts_are_refused_before_decoding(
        tmp_path: Path, rate: int, channels: int, value: str, limit: str) -> None:
    """A header of 1 Hz used to be resampled to billions of samples (MemoryError)."""
    path = tmp_path / "odd.wav"
    sf.write(str(path), np.full((2000, channels), 0.1, dtype=np.float32), rate)
    for reader in (audio_info, lambda p: load_audio(p, sample_rate=44100, channels=2)):
        with pytest.raises(audio_io.AudioLimitError) as excinfo:
            reader(path)
        message = str(excinfo.value)
        assert str(path) in message and value in message and limit in message
        assert isinstance(excinfo.value, AudioFileError)


def test_files_longer_than_the_load_limit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(str(path), _sine(440, SR, SR), SR)  # 1 s
    assert load_audio(path, max_duration_s=1.0).num_samples == SR
    assert load_audio(path, max_duration_s=None).num_samples == SR
    with pytest.raises(audio_io.AudioLimitError, match=r"1\.0 s .* the 0\.5 s") as excinfo:
        load_audio(path, max_duration_s=0.5)
    assert str(path) in str(excinfo.value)
    with pytest.raises(ValueError, match="max_duration_s"):
        load_audio(path, max_duration_s=0)


def test_the_default_load_limit_is_checked_on_the_header_before_decoding(
        tmp_path: Path) -> None:
    """A tiny FLAC whose header claims more than MAX_LOAD_DURATION_S is refused from the
    header alone (decoding it would fail, or fill memory with a real file)."""
    path = tmp_path / "claims_hours.flac"
    sf.write(str(path), _sine(440, SR, 4096), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    claimed = int((audio_io.MAX_LOAD_DURATION_S + 60) * SR)
    # STREAMINFO: 8 bytes from offset 18 = rate (20 bits), channels-1 (3), bits-1 (5),
    # total samples (36).
    fields = int.from_bytes(data[18:26], "big")
    fields = (fields & ~((1 << 36) - 1)) | claimed
    data[18:26] = fields.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    assert audio_info(path).num_samples == claimed  # the header is readable
    with pytest.raises(audio_io.AudioLimitError, match=f"{audio_io.MAX_LOAD_DURATION_S:g} s"):
        load_audio(path)


def test_a_truncated_wav_is_read_with_a_warning_naming_both_lengths(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cut.wav"
    sf.write(str(path), _sine(440, SR, SR), SR, subtype="PCM_16")
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger="longplay.audio.io"):
        wave = load_audio(path)
    assert 0 < wave.num_samples < SR
    assert str(path) in caplog.text and "truncated" in caplog.text
    assert f"holds {wave.num_samples} samples" in caplog.text and f"declares {SR}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="longplay.audio.io"):
        assert audio_info(path).num_samples == wave.num_samples
    assert f"declares {SR}" in caplog.text
    caplog.clear()
    complete = tmp_path / "complete.wav"
    complete.write_bytes(whole)
    with caplog.at_level(logging.WARNING, logger="longplay.audio.io"):
        load_audio(complete)
        audio_info(complete)
    assert "truncated" not in caplog.text


def test_file_names_that_are_not_utf8_are_read(tmp_path: Path) -> None:
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.wav"))
    sf.write(os.fsencode(path), _sine(440, SR, 800), SR)
    assert audio_info(path).num_samples == 800
    assert load_audio(path).num_samples == 800


# --- writing -------------------------------------------------------------------------------


def test_save_nan_raises_and_writes_nothing(tmp_path: Path) -> None:
    audio = _stereo()
    audio[1, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        save_audio(tmp_path / "out.wav", audio, SR)
    assert _listing(tmp_path) == []


def test_save_empty_or_bad_shape_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        save_audio(tmp_path / "out.wav", torch.zeros(2, 0), SR)
    with pytest.raises(ValueError, match=r"\[C, S\]"):
        save_audio(tmp_path / "out.wav", torch.zeros(1, 2, 10), SR)
    assert _listing(tmp_path) == []


def test_unsupported_extension_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.wav, \.flac"):
        save_audio(tmp_path / "out.aiff", _stereo(), SR)
    assert _listing(tmp_path) == []


def test_failed_overwrite_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _stereo()
    target = save_audio(tmp_path / "out.wav", old, SR)
    old_bytes = target.read_bytes()

    def broken_write(file, *args, **kwargs):  # writes a partial file, then fails
        Path(file).write_bytes(b"RIFF partial")
        raise OSError("disk full")

    monkeypatch.setattr(audio_io.sf, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        save_audio(target, torch.zeros(2, 800), SR)
    assert target.read_bytes() == old_bytes
    assert _listing(tmp_path) == ["out.wav"]


def test_save_overwrites_existing_file(tmp_path: Path) -> None:
    target = save_audio(tmp_path / "out.flac", _stereo(), SR)
    new = torch.zeros(1, 400)
    save_audio(target, new, SR)
    assert load_audio(target).audio.shape == (1, 400)
    assert _listing(tmp_path) == ["out.flac"]


def test_save_warns_and_clips_loud_audio(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    audio = torch.full((1, 100), 0.5)
    audio[0, 3] = 1.5
    with caplog.at_level(logging.WARNING, logger="longplay.audio.io"):
        out = save_audio(tmp_path / "loud.wav", audio, SR)
    assert "exceeds 1.0" in caplog.text
    assert load_audio(out).audio[0, 3] == pytest.approx(1.0, abs=1e-4)


# --- spectral helpers ----------------------------------------------------------------------


def test_slaney_mel_scale() -> None:
    assert float(hz_to_mel(1000.0)) == pytest.approx(15.0)
    assert float(hz_to_mel(500.0)) == pytest.approx(7.5)  # linear below 1 kHz
    # log above 1 kHz: 6.4 kHz lies 27 mels above 1 kHz
    assert float(hz_to_mel(6400.0)) == pytest.approx(42.0)
    freqs = np.array([0.0, 200.0, 999.0, 1000.0, 1234.5, 8000.0, 20000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(freqs)), freqs)


def test_mel_filterbank_properties() -> None:
    sample_rate, n_fft, n_mels = 16000, 512, 20
    fb = mel_filterbank(sample_rate, n_fft, n_mels).double().numpy()
    assert fb.shape == (n_mels, n_fft // 2 + 1)
    assert (fb >= 0).all()
    bin_hz = sample_rate / n_fft
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2), n_mels + 2))
    fft_freqs = np.arange(n_fft // 2 + 1) * bin_hz
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        height = 2.0 / (right - left)  # Slaney area normalisation
        row = fb[m]
        # support strictly inside (left, right)
        assert (row[(fft_freqs <= left) | (fft_freqs >= right)] == 0).all()
        # the triangle evaluated at every bin, scaled to peak `height` at the centre
        rising = (fft_freqs - left) / (centre - left)
        falling = (right - fft_freqs) / (right - centre)
        expected = height * np.clip(np.minimum(rising, falling), 0.0, None)
        assert np.allclose(row, expected, atol=1e-6)
        assert row.max() <= height + 1e-6
        # the peak bin is the one nearest the centre frequency
        if row.max() > 0:
            assert abs(fft_freqs[np.argmax(row)] - centre) <= bin_hz
    # a bin exactly at a centre frequency has weight exactly `height`
    fb2 = mel_filterbank(2000, 2000, 1, f_min=0.0, f_max=1000.0).numpy()  # 1 Hz bins
    centre = float(mel_to_hz(hz_to_mel(1000.0) / 2))
    assert np.argmax(fb2[0]) == round(centre)
    assert fb2[0].max() == pytest.approx(2.0 / 1000.0, rel=1e-3)


def test_mel_filterbank_area_normalised() -> None:
    # with fine frequency resolution every triangle has area ~1 in Hz
    fb = mel_filterbank(8000, 8000, 10).double().numpy()  # 1 Hz bins
    assert np.allclose(fb.sum(axis=1), 1.0, atol=1e-3)


def test_stft_magnitude_shape_and_peak() -> None:
    audio = torch.from_numpy(_sine(1000, SR, 4000, amplitude=1.0)).repeat(3, 2, 1)  # [3, 2, S]
    mag = stft_magnitude(audio, 512, 128)
    assert mag.shape == (3, 2, 257, 4000 // 128 + 1)
    assert int(mag[0, 0, :, 10].argmax()) == round(1000 * 512 / SR)
    # a full-scale sine under a periodic Hann window peaks at n_fft / 4
    assert float(mag[1, 1, :, 10].max()) == pytest.approx(512 / 4, rel=0.05)
    not_centered = stft_magnitude(audio[0, 0], 512, 128, center=False)
    assert not_centered.shape == (257, 1 + (4000 - 512) // 128)
    with pytest.raises(ValueError, match="too short"):
        stft_magnitude(torch.zeros(100), 512, 128)


def test_mel_of_silence_is_zero() -> None:
    fb = mel_filterbank(SR, 512, 40)
    mel = fb @ stft_magnitude(torch.zeros(1, 2000), 512, 128)
    assert mel.shape == (1, 40, 2000 // 128 + 1)
    assert math.isclose(float(mel.abs().sum()), 0.0)


def test_save_ogg_vorbis_is_small_and_close(tmp_path: Path) -> None:
    t = torch.arange(44100 * 2) / 44100
    audio = torch.stack([0.5 * torch.sin(2 * math.pi * 440 * t),
                         0.3 * torch.sin(2 * math.pi * 660 * t)])
    path = save_audio(tmp_path / "x.ogg", audio, 44100)
    assert path.stat().st_size < 0.1 * audio.numel() * 2  # far below 16-bit PCM
    back = load_audio(path, sample_rate=44100, channels=2).audio
    n = min(back.shape[-1], audio.shape[-1])
    # Lossy, but the same signal: high correlation per channel.
    for c in range(2):
        corr = torch.corrcoef(torch.stack([back[c, :n], audio[c, :n]]))[0, 1]
        assert corr > 0.95
    with pytest.raises(ValueError, match=r"subtype 'PCM_16' is not supported for \.ogg"):
        save_audio(tmp_path / "y.ogg", audio, 44100, subtype="PCM_16")

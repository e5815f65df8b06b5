"""AudioFolderDataset: crops with timing, padding, determinism, phase flip, metadata, bad files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from longplay.audio import load_audio
from longplay.data import AudioFolderDataset, collate_audio, example_generator

RATE = 8000


def write(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    """audio [C, S] as a float wav (exact samples)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.ascontiguousarray(np.asarray(audio, dtype=np.float32).T), rate,
             subtype="FLOAT")
    return path


def ramp(num_samples: int, channels: int = 1) -> np.ndarray:
    """Sample n holds (n + 1) / num_samples, so a window reveals its offset."""
    values = (np.arange(num_samples, dtype=np.float64) + 1) / num_samples
    return np.repeat(values[None], channels, axis=0)


def noise(seconds: float, rate: int = RATE, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 0.3 * rng.standard_normal((channels, round(seconds * rate)))


def offset_of(audio: torch.Tensor, total: int) -> int:
    return round(float(audio[0, 0]) * total) - 1


def test_random_crops_carry_floor_offset_and_ceil_duration(tmp_path: Path) -> None:
    total = int(10.5 * RATE)
    write(tmp_path / "song.wav", ramp(total))
    window = 4 * RATE
    ds = AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=window, seed=3)
    starts = set()
    values = torch.from_numpy(ramp(total)[0]).float()
    for position in range(40):
        ex = ds.example(0, position)
        offset = offset_of(ex.audio, total)
        assert 0 <= offset <= total - window
        assert ex.seconds_total == 11.0
        assert ex.seconds_start == float(offset // RATE)
        assert ex.num_valid_samples == window and ex.audio.shape == (2, window)
        assert torch.equal(ex.audio[1], values[offset:offset + window])
        starts.add(ex.seconds_start)
    assert len(starts) >= 4  # the offsets really move, and seconds_start with them


def test_short_files_are_zero_padded_with_their_valid_length(tmp_path: Path) -> None:
    write(tmp_path / "short.wav", noise(1.5))
    ds = AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=4 * RATE)
    ex = ds[0]
    assert ex.num_valid_samples == int(1.5 * RATE)
    assert ex.seconds_start == 0.0 and ex.seconds_total == 2.0
    assert torch.count_nonzero(ex.audio[:, ex.num_valid_samples:]) == 0
    assert torch.count_nonzero(ex.audio[:, : ex.num_valid_samples]) > 0


def test_no_random_crop_starts_at_zero(tmp_path: Path) -> None:
    total = 3 * RATE
    write(tmp_path / "a.wav", ramp(total))
    ds = AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=RATE, random_crop=False)
    assert all(offset_of(ds.example(0, p).audio, total) == 0 for p in range(5))


def test_examples_depend_only_on_seed_index_and_position(tmp_path: Path) -> None:
    for i in range(3):
        write(tmp_path / f"{i}.wav", noise(3.0, seed=i))
        (tmp_path / f"{i}.json").write_text(json.dumps({"genre": "Rock", "moods": ["Calm"],
                                                        "bpm": 100 + i}))

    def make(seed: int) -> AudioFolderDataset:
        return AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=RATE, seed=seed,
                                  phase_flip=True)

    a, b = make(0), make(0)
    keys = [(i, p) for i in range(3) for p in (0, 7, 123456)]
    first = {k: a.example(*k) for k in keys}
    for k in reversed(keys):  # another instance, another order: same examples
        ex = b.example(*k)
        assert torch.equal(ex.audio, first[k].audio) and ex.prompt == first[k].prompt
    assert torch.equal(a[2].audio, a.example(2, 2).audio)
    windows = {a.example(0, p).audio[0, :4].tolist().__repr__() for p in range(10)}
    assert len(windows) > 5  # positions vary the crop
    other = make(1)
    assert not all(torch.equal(other.example(*k).audio, first[k].audio) for k in keys)


def test_phase_flip_only_when_enabled_and_only_sometimes(tmp_path: Path) -> None:
    total = 2 * RATE
    write(tmp_path / "a.wav", ramp(total))  # all samples positive
    plain = AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=RATE)
    flip = AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=RATE, phase_flip=True)
    flipped = 0
    for p in range(40):
        reference = plain.example(0, p).audio
        assert bool((reference > 0).all())
        audio = flip.example(0, p).audio
        if torch.equal(audio, -reference):
            flipped += 1
        else:
            assert torch.equal(audio, reference)
    assert 5 < flipped < 35


def test_mono_is_duplicated_and_other_rates_are_resampled_like_the_whole_file(
        tmp_path: Path) -> None:
    path = write(tmp_path / "a.wav", noise(1.0, rate=48000, channels=1), rate=48000)
    window = 6000
    ds = AudioFolderDataset(tmp_path, sample_rate=44100, num_samples=window, seed=5)
    whole = load_audio(path, sample_rate=44100, channels=2).audio
    offsets = set()
    for position in range(6):
        generator = example_generator(5, position)  # the offset is the first draw
        offset = int(torch.randint(0, 44100 - window + 1, (1,), generator=generator))
        ex = ds.example(0, position)
        assert torch.equal(ex.audio[0], ex.audio[1])
        assert float((ex.audio - whole[:, offset:offset + window]).abs().max()) < 1e-4
        offsets.add(offset)
    assert max(offsets) > 2000  # windows away from the file start, where no margin helps


def test_metadata_precedence_sidecar_json_then_txt_then_table(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "sub/d", "e"):
        write(tmp_path / f"{name}.wav", noise(0.5))
    (tmp_path / "a.json").write_text(json.dumps({"caption": "from json"}))
    (tmp_path / "a.txt").write_text("from txt")
    (tmp_path / "b.txt").write_text("  from txt\n")
    (tmp_path / "metadata.csv").write_text(
        "file,caption,genre\na.wav,from table,\nb.wav,from table,\nc.wav,,Jazz\n"
        "sub/d.wav,from table d,\n")
    ds = AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=RATE)
    metadata = {f.relative_path: f.metadata for f in ds.files}
    assert metadata == {"a.wav": {"caption": "from json"}, "b.wav": {"caption": "from txt"},
                        "c.wav": {"genre": "Jazz"}, "sub/d.wav": {"caption": "from table d"},
                        "e.wav": {}}
    prompts = {Path(ds[i].path).name: ds[i].prompt for i in range(len(ds))}
    assert prompts["a.wav"] == "from json" and prompts["b.wav"] == "from txt"
    assert prompts["c.wav"].lower() in ("jazz", "genre: jazz") and prompts["e.wav"] == ""


def test_metadata_jsonl_table_and_conflicting_tables(tmp_path: Path) -> None:
    write(tmp_path / "x.wav", noise(0.5))
    rows = [{"path": "x.wav", "genre": "Folk", "instruments": ["Banjo"]}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=RATE)
    assert ds.files[0].metadata == {"genre": "Folk", "instruments": ["Banjo"]}
    (tmp_path / "metadata.csv").write_text("file,genre\nx.wav,Pop\n")
    with pytest.raises(ValueError, match="both"):
        AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=RATE)


def _bad_folder(root: Path) -> None:
    write(root / "good.wav", noise(1.0))
    (root / "notes.wav").write_text("this is not audio")
    (root / "empty.wav").write_bytes(b"")
    write(root / "zero.wav", np.zeros((2, 0)))
    write(root / "short.wav", noise(0.2))
    write(root / "silent.wav", np.zeros((2, RATE)))
    sf.write(str(root / "corrupt.flac"), noise(1.0).T.astype(np.float32), RATE)
    data = bytearray((root / "corrupt.flac").read_bytes())
    data[200:] = bytes((b * 7 + 13) % 256 for b in data[200:])  # header intact, frames broken
    (root / "corrupt.flac").write_bytes(bytes(data))
    (root / ".hidden.wav").write_text("ignored: hidden")


def _warnings_about(caplog: pytest.LogCaptureFixture, name: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == logging.WARNING and name in r.message)


def test_bad_files_are_skipped_with_one_warning_each_and_never_raise(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _bad_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="longplay.data"):
        ds = AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=RATE // 2,
                                min_duration_s=0.5)
        assert sorted(f.relative_path for f in ds.files) == ["corrupt.flac", "good.wav",
                                                            "silent.wav"]
        for name in ("notes.wav", "empty.wav", "zero.wav", "short.wav"):
            assert _warnings_about(caplog, name) == 1, name
        assert ds.summary.num_files == 7 and ds.summary.num_skipped == 4
        assert ds.summary.reasons == {"unreadable": 1, "empty file": 1, "no audio": 1,
                                      "too short": 1}
        for _ in range(3):
            for i in range(len(ds)):
                for position in range(4):
                    ex = ds.example(i, position)
                    assert ex.path.endswith("good.wav")
                    assert float(ex.audio.abs().max()) > 0.01
    for name in ("silent.wav", "corrupt.flac"):
        assert _warnings_about(caplog, name) == 1, name
    assert ds.summary.num_skipped == 6
    assert ds.summary.reasons["silent"] == 1 and ds.summary.reasons["decode error"] == 1
    assert "6 skipped" in str(ds.summary)


def test_out_of_range_files_are_skipped_with_a_warning_and_the_rest_is_used(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 1 Hz header or nine channels skip the file (before, the 1 Hz one was resampled to
    billions of samples); a file name that is not UTF-8 is an ordinary file."""
    write(tmp_path / "good.wav", noise(1.0))
    write(tmp_path / "one_hertz.wav", noise(0.01, rate=100)[:, :5], rate=1)
    write(tmp_path / "nine.wav", noise(1.0, channels=9))
    odd_name = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.wav"))
    sf.write(os.fsencode(odd_name), noise(1.0, seed=1).T.astype(np.float32), RATE)
    with caplog.at_level(logging.WARNING, logger="longplay.data"):
        ds = AudioFolderDataset(tmp_path, sample_rate=44100, num_samples=4410)
    assert sorted(f.path.name for f in ds.files) == sorted([odd_name.name, "good.wav"])
    assert ds.summary.reasons == {"out of range": 2}
    for name, value in (("one_hertz.wav", "1 Hz"), ("nine.wav", "9 channels")):
        assert _warnings_about(caplog, name) == 1, name
        assert value in caplog.text
    for i in range(len(ds)):
        assert ds[i].audio.shape == (2, 4410) and float(ds[i].audio.abs().max()) > 0.01


def test_a_folder_without_usable_audio_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("nope")
    with pytest.raises(ValueError, match="no usable audio"):
        AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=RATE)
    with pytest.raises(ValueError, match="not a folder"):
        AudioFolderDataset(tmp_path / "missing", sample_rate=RATE, num_samples=RATE)


def test_dataloader_batches(tmp_path: Path) -> None:
    for i in range(4):
        write(tmp_path / f"{i}.wav", noise(0.5 + i, seed=i))
    ds = AudioFolderDataset(tmp_path, sample_rate=RATE, num_samples=RATE)
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate_audio)))
    assert batch.audio.shape == (4, 2, RATE)
    assert batch.seconds_total.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert batch.num_valid_samples.tolist() == [RATE // 2, RATE, RATE, RATE]
    assert len(batch.prompts) == 4 and batch.paths[0].endswith("0.wav")

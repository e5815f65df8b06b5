"""Tar shards: packing a folder, streaming it back, splitting over ranks and workers."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from pathlib import Path
from types import SimpleNamespace

import fsspec
import numpy as np
import pytest
import soundfile as sf
import torch

import longplay.data.shards as shards_module
from longplay.data import TarShardDataset, split_shards, write_tar_shards

RATE = 8000


def write(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.ascontiguousarray(audio.T.astype(np.float32)), rate, subtype="FLOAT")
    return path


def noise(seconds: float, seed: int = 0, channels: int = 2) -> np.ndarray:
    return 0.3 * np.random.default_rng(seed).standard_normal((channels, round(seconds * RATE)))


def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio.T.astype(np.float32), RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    for i in range(5):
        write(root / f"song.{i}.wav", noise(0.5 + 0.5 * i, seed=i))
    write(root / "sub" / "mono.wav",
          noise(1.2, seed=9, channels=1))
    (root / "song.0.json").write_text(json.dumps({"caption": "caption zero"}))
    (root / "song.1.txt").write_text("caption one\n")
    (root / "song.2.json").write_text(json.dumps({"genre": "Jazz"}))
    (root / "notes.wav").write_text("not audio")  # skipped while packing
    return root


def dataset(urls: list[str], **kwargs: object) -> TarShardDataset:
    options = {"sample_rate": RATE, "num_samples": RATE, "shuffle_shards": False, **kwargs}
    return TarShardDataset(urls, **options)


def test_pack_then_stream_gives_every_file_with_its_metadata(folder: Path, tmp_path: Path,
                                                             caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="longplay.data"):
        shards = write_tar_shards(folder, tmp_path / "shards", shard_size=2)
    assert [p.name for p in shards] == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    assert "notes.wav" in caplog.text
    with tarfile.open(shards[0]) as tar:
        assert tar.getnames() == ["song_0.wav", "song_0.json", "song_1.wav", "song_1.json"]
    examples = list(dataset([str(p) for p in shards]))
    assert len(examples) == 6
    by_key = {e.path.split("#")[1]: e for e in examples}
    assert sorted(by_key) == ["song_0", "song_1", "song_2", "song_3", "song_4", "sub/mono"]
    assert by_key["song_0"].prompt == "caption zero"
    assert by_key["song_1"].prompt == "caption one"
    assert by_key["song_2"].prompt in ("Jazz", "jazz", "Genre: Jazz", "genre: jazz")
    assert by_key["song_3"].prompt == ""
    assert [by_key[f"song_{i}"].seconds_total for i in range(5)] == [1.0, 1.0, 2.0, 2.0, 3.0]
    short = by_key["song_0"]
    assert short.audio.shape == (2, RATE) and short.num_valid_samples == RATE // 2
    assert torch.count_nonzero(short.audio[:, RATE // 2:]) == 0
    mono = by_key["sub/mono"]
    assert torch.equal(mono.audio[0], mono.audio[1])
    # Packing is reproducible, and never mixes into an existing set of shards.
    again = write_tar_shards(folder, tmp_path / "again", shard_size=2)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in shards]
    with pytest.raises(ValueError, match="already holds shards"):
        write_tar_shards(folder, tmp_path / "shards", shard_size=2)


def test_fsspec_urls_and_determinism(folder: Path, tmp_path: Path) -> None:
    shards = write_tar_shards(folder, tmp_path / "shards", shard_size=4)
    memory = fsspec.filesystem("memory")
    urls = []
    try:
        for path in shards:
            memory.pipe(f"/{tmp_path.name}/{path.name}", path.read_bytes())
            urls.append(f"memory://{tmp_path.name}/{path.name}")
        from_memory = list(dataset(urls, seed=4))
        from_files = list(dataset([p.as_uri() for p in shards], seed=4))
    finally:
        memory.rm(f"/{tmp_path.name}", recursive=True)
    assert len(from_memory) == len(from_files) == 6
    for a, b in zip(from_memory, from_files, strict=True):
        assert torch.equal(a.audio, b.audio) and a.prompt == b.prompt
        assert a.seconds_start == b.seconds_start
    # Same seed and epoch: same stream. Another epoch: other crops.
    ds = dataset([str(p) for p in shards], seed=4)
    first = [e.audio for e in ds]
    assert all(torch.equal(a, b) for a, b in zip(first, [e.audio for e in ds], strict=True))
    ds.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(first, [e.audio for e in ds], strict=True))


def test_split_shards_gives_every_shard_to_exactly_one_reader() -> None:
    seen = []
    for rank in range(2):
        for worker in range(3):
            seen += split_shards(14, rank=rank, world_size=2, worker_id=worker, num_workers=3)
    assert sorted(seen) == list(range(14))
    assert split_shards(14, rank=1, world_size=2, worker_id=0, num_workers=3) == [3, 9]
    with pytest.raises(ValueError, match="rank"):
        split_shards(4, rank=2, world_size=2, worker_id=0, num_workers=1)


def test_ranks_and_workers_read_disjoint_shards_with_split_independent_examples(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shards = [str(p) for p in write_tar_shards(folder, tmp_path / "shards", shard_size=1)]
    assert len(shards) == 6
    whole = {e.path: e for e in dataset(shards, shuffle_shards=True, seed=2)}
    union: dict[str, torch.Tensor] = {}
    for rank in range(2):
        for worker in range(2):
            info = SimpleNamespace(id=worker, num_workers=2)
            monkeypatch.setattr(shards_module, "get_worker_info", lambda info=info: info)
            ds = dataset(shards, shuffle_shards=True, seed=2, rank=rank, world_size=2)
            part = {e.path: e.audio for e in ds}
            expected = {shards[i] for i in ds.shards_for(rank=rank, world_size=2,
                                                         worker_id=worker, num_workers=2)}
            assert {p.split("#")[0] for p in part} == expected
            assert not set(part) & set(union)
            union.update(part)
    assert set(union) == set(whole)
    assert all(torch.equal(union[p], whole[p].audio) for p in whole)


def test_shard_order_is_shuffled_per_epoch_identically_on_every_rank(folder: Path,
                                                                      tmp_path: Path) -> None:
    shards = [str(p) for p in write_tar_shards(folder, tmp_path / "shards", shard_size=1)]
    a = dataset(shards, shuffle_shards=True, rank=0, world_size=2)
    b = dataset(shards, shuffle_shards=True, rank=1, world_size=2)
    orders = [a.shard_order(epoch) for epoch in range(4)]
    assert orders == [b.shard_order(epoch) for epoch in range(4)]
    assert len({tuple(o) for o in orders}) > 1
    assert dataset(shards).shard_order(3) == list(range(6))


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_bad_members_are_skipped_with_one_warning_each(tmp_path: Path, caplog) -> None:
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "good.wav", wav_bytes(noise(1.0)))
        _add(tar, "good.json", json.dumps({"caption": "fine"}).encode())
        _add(tar, "text.wav", b"not audio at all")
        _add(tar, "lonely.json", b"{}")
        _add(tar, "badjson.wav", wav_bytes(noise(1.0, seed=1)))
        _add(tar, "badjson.json", b"{not json")
        _add(tar, "silent.wav", wav_bytes(np.zeros((2, RATE))))
        _add(tar, "short.wav", wav_bytes(noise(0.1)))
        _add(tar, "last.wav", wav_bytes(noise(1.0, seed=2)))
    ds = dataset([str(path)], min_duration_s=0.5)
    with caplog.at_level(logging.WARNING, logger="longplay.data"):
        for _ in range(2):
            examples = list(ds)
            assert [e.path.split("#")[1] for e in examples] == ["good", "last"]
    for key in ("text", "lonely", "badjson", "silent", "short"):
        assert sum(f"#{key}" in r.message for r in caplog.records) == 1, key
    assert examples[0].prompt == "fine"


def test_a_truncated_shard_yields_what_precedes_the_damage(tmp_path: Path, caplog) -> None:
    path = tmp_path / "cut.tar"
    with tarfile.open(path, "w") as tar:
        for i in range(3):
            _add(tar, f"s{i}.wav", wav_bytes(noise(1.0, seed=i)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])
    with caplog.at_level(logging.WARNING, logger="longplay.data"):
        examples = list(dataset([str(path)]))
    assert 1 <= len(examples) < 3
    assert "cut.tar" in caplog.text
    with pytest.raises(FileNotFoundError):
        list(dataset([str(tmp_path / "missing.tar")]))

"""Training from tar shards (``data: {kind: shards}``): the shard dataset gives the audio
folder's examples, every trainer trains from shards, locally and through fsspec URLs, and
a run resumes exactly."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import fsspec
import pytest
import torch

from conftest import SAO1_TINY
from longplay.audio import save_audio
from longplay.config import (
    CLAPTrainConfig,
    ConfigError,
    DataConfig,
    DiTTrainConfig,
    OptimizerConfig,
    TrainerConfig,
    VAETrainConfig,
)
from longplay.data import AudioFolderDataset, PromptBuilder, write_tar_shards
from longplay.data.shards import ShardAudioDataset, find_shards
from longplay.training.clap import train_clap
from longplay.training.runner import train_dit
from longplay.training.vae import train_vae

SR = 44100
TEXT_ENCODER = SAO1_TINY / "text_encoder"


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory) -> Path:
    """Five short tones of different lengths, with sidecars of several kinds."""
    root = tmp_path_factory.mktemp("audio")
    for i, freq in enumerate([110, 220, 440, 880, 330]):
        t = torch.arange(int((0.6 + 0.3 * i) * SR)) / SR
        tone = 0.4 * torch.sin(2 * math.pi * freq * t)
        save_audio(root / f"tone{i}.wav", torch.stack([tone, 0.7 * tone]), SR)
    (root / "tone0.json").write_text(json.dumps({"genre": "bass", "bpm": 90}))
    (root / "tone1.txt").write_text("a high cello\n")
    (root / "tone2.json").write_text(json.dumps({"caption": "violin solo"}))
    return root


@pytest.fixture(scope="module")
def shards(audio_folder: Path, tmp_path_factory) -> Path:
    """The folder packed as `longplay data pack` does, two files per shard."""
    out = tmp_path_factory.mktemp("packed") / "shards"
    write_tar_shards(audio_folder, out, shard_size=2)
    return out


@pytest.fixture
def memory_shards(shards: Path, request) -> str:
    """The shards copied to fsspec's in-memory filesystem; their folder's URL."""
    memory = fsspec.filesystem("memory")
    root = f"/{request.node.name}"
    for path in sorted(shards.glob("*.tar")):
        memory.pipe(f"{root}/{path.name}", path.read_bytes())
    yield f"memory://{root}"
    memory.rm(root, recursive=True)


def losses(run_dir: Path) -> list[float]:
    rows = []
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        rows += [float(r["train/loss"]) for r in csv.DictReader(path.open())
                 if r.get("train/loss")]
    return rows


def test_shards_give_the_examples_of_the_folder_they_were_packed_from(
        audio_folder: Path, shards: Path) -> None:
    options = dict(sample_rate=SR, channels=2, num_samples=30000, phase_flip=True,
                   prompt_builder=PromptBuilder(), seed=5)
    folder = AudioFolderDataset(audio_folder, **options)
    packed = ShardAudioDataset(find_shards(str(shards)), **options)
    assert len(packed) == len(folder) == 5
    for index in range(5):
        for position in (index, 11 + 3 * index):
            a, b = folder.example(index, position), packed.example(index, position)
            assert torch.equal(a.audio, b.audio), (index, position)
            assert (a.prompt, a.seconds_start, a.seconds_total, a.num_valid_samples) == (
                b.prompt, b.seconds_start, b.seconds_total, b.num_valid_samples)
    assert packed.example(2, 0).prompt == "violin solo"
    assert packed.example(2, 0).path.endswith("shard-00001.tar#tone2")


def test_find_shards_takes_folders_files_patterns_and_urls(shards: Path,
                                                           memory_shards: str) -> None:
    names = ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    assert [Path(u).name for u in find_shards(str(shards))] == names
    assert [Path(u).name for u in find_shards(shards.as_uri())] == names  # file://
    listed = f"{shards / names[2]}, {shards / names[0]}"
    assert [Path(u).name for u in find_shards(listed)] == [names[2], names[0]]
    assert [Path(u).name for u in find_shards(f"{shards}/shard-0000[01].tar")] == names[:2]
    urls = find_shards(memory_shards)
    assert [u.rsplit("/", 1)[1] for u in urls] == names and urls[0].startswith("memory://")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        find_shards(str(shards / "missing"))
    with pytest.raises(FileNotFoundError, match="longplay data pack"):
        find_shards(str(shards.parent.parent))  # a folder without shards


def shard_data(path: str, **kwargs) -> DataConfig:
    return DataConfig(kind="shards", path=path, **kwargs)


def test_vae_and_clap_train_from_local_shards(shards: Path, tmp_path: Path) -> None:
    vae = VAETrainConfig(
        preset="debug", window_samples=8192, discriminator_filters=8,
        data=shard_data(str(shards), phase_flip=True),
        trainer=TrainerConfig(max_steps=2, batch_size=2, log_every_n_steps=1))
    train_vae(vae, tmp_path / "vae", enable_progress_bar=False)
    assert torch.load(tmp_path / "vae/checkpoints/last.ckpt", weights_only=True)[
        "global_step"] == 2
    assert losses(tmp_path / "vae") and all(math.isfinite(v) for v in losses(tmp_path / "vae"))
    clap = CLAPTrainConfig(
        text_encoder_path=str(TEXT_ENCODER), max_length=16, embed_dim=32,
        audio_widths=(8, 16), n_mels=32, window_samples=16384,
        data=shard_data(str(shards)),
        trainer=TrainerConfig(max_steps=2, batch_size=3, log_every_n_steps=1))
    train_clap(clap, tmp_path / "clap", enable_progress_bar=False)
    values = losses(tmp_path / "clap")
    assert len(values) == 2 and all(math.isfinite(v) for v in values)


def dit_config(path: str, steps: int) -> DiTTrainConfig:
    return DiTTrainConfig(
        preset="debug", text_encoder_path=str(TEXT_ENCODER),
        optimizer=OptimizerConfig(lr=2e-3, inv_gamma=1e4, warmup=0.0),
        data=shard_data(path),
        trainer=TrainerConfig(max_steps=steps, batch_size=2, checkpoint_every_n_steps=2,
                              log_every_n_steps=1))


def test_dit_trains_from_shards_through_fsspec_urls_and_resumes_exactly(
        shards: Path, memory_shards: str, tmp_path: Path) -> None:
    train_dit(dit_config(memory_shards, 4), tmp_path / "memory", enable_progress_bar=False)
    train_dit(dit_config(shards.as_uri(), 2), tmp_path / "file", enable_progress_bar=False)
    train_dit(dit_config(shards.as_uri(), 4), tmp_path / "file", resume=True,
              enable_progress_bar=False)
    a = torch.load(tmp_path / "memory/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "file/checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    for key in a["state_dict"]:  # same data by either URL, and an exact resume
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert losses(tmp_path / "memory") == losses(tmp_path / "file")


def test_bad_shard_paths_are_refused_before_anything_is_written(shards: Path,
                                                                tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.path.*no such file or folder"):
        train_dit(dit_config(str(tmp_path / "nowhere"), 2), tmp_path / "run",
                  enable_progress_bar=False)
    # A folder of shards given as an audio folder: the error says what to set.
    audio = DataConfig(kind="audio", path=str(shards))
    config = VAETrainConfig(preset="debug", window_samples=8192, data=audio)
    with pytest.raises(ConfigError, match=r"set data\.kind to 'shards'"):
        train_vae(config, tmp_path / "run", enable_progress_bar=False)
    assert not (tmp_path / "run").exists()

"""A model's own generations as a latent folder (``longplay data sample``): each item is
the generation its source window's prompt and timing ask for, read back with the same
conditioning, resumable, and refused before any work when it cannot be made."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import SAO1_TINY
from longplay.checkpoints.files import read_safetensors_metadata
from longplay.cli.main import main
from longplay.data import LatentDataset, LatentFolderWriter, latent_folder_header
from longplay.pipelines import TextToMusicPipeline
from longplay.training.samples import SAMPLE_KIND, sample_latent_folder

FRAMES = 16
STEPS = {"num_inference_steps": 2, "guidance_scale": 2.0}


@pytest.fixture(scope="module")
def pipe() -> TextToMusicPipeline:
    return TextToMusicPipeline.from_pretrained(SAO1_TINY)


@pytest.fixture(scope="module")
def source(pipe: TextToMusicPipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A latent folder of the tiny model's VAE: three captioned items of 40 frames."""
    root = tmp_path_factory.mktemp("source")
    vae = pipe.model.vae
    writer = LatentFolderWriter(root, latent_folder_header(vae, 0), shard_size=2)
    g = torch.Generator().manual_seed(0)
    for i, (metadata, seconds) in enumerate([({"caption": "song number 1"}, 7.2),
                                             ({"caption": "drums"}, 40.0),
                                             ({"genre": "jazz", "id": "x"}, 3.0)]):
        writer.add(torch.randn(vae.latent_dim, 40, generator=g), duration_s=seconds,
                   path=f"track{i}.wav", num_samples=40 * vae.hop_length, metadata=metadata)
    writer.close()
    return root


def windows(root: Path) -> LatentDataset:
    return LatentDataset(root, num_frames=FRAMES, seed=4)


def test_each_item_is_the_generation_its_source_window_asks_for(
        pipe: TextToMusicPipeline, source: Path, tmp_path: Path) -> None:
    writer = sample_latent_folder(pipe, windows(source), tmp_path / "s", count=4, seed=10,
                                  shard_size=3, **STEPS)
    assert writer.num_added == 4 and len(writer.entries) == 4
    header = read_safetensors_metadata(tmp_path / "s" / writer.entries[0].shard)
    assert header["latents"] == SAMPLE_KIND and header["seed"] == "10"
    back = LatentDataset(tmp_path / "s", num_frames=FRAMES, seed=99)
    assert back.silence.shape == (pipe.model.vae.latent_dim,)
    rate = pipe.model.vae.latent_rate
    for k in range(4):
        window = windows(source).example(k % 3, k)
        item = back.example(k, 0)
        # read back with the conditioning it was generated with
        assert (item.prompt, item.seconds_start, item.seconds_total) == (
            window.prompt, 0.0, window.seconds_total)
        assert item.num_valid_frames == FRAMES
        noise = torch.randn(1, pipe.model.vae.latent_dim, FRAMES,
                            generator=torch.Generator().manual_seed(10 + k))
        direct = pipe(window.prompt, duration_s=FRAMES / rate, seconds_total=window.seconds_total,
                      seed=10 + k, latents=noise, **STEPS)
        torch.testing.assert_close(item.latents, direct.latents[0].float())
    prompts = {windows(source).example(k % 3, k).prompt for k in range(3)}
    assert {"song number 1", "drums"} < prompts and any("jazz" in p for p in prompts)


def test_a_stopped_run_continues_to_the_same_folder(pipe: TextToMusicPipeline, source: Path,
                                                    tmp_path: Path) -> None:
    whole = sample_latent_folder(pipe, windows(source), tmp_path / "a", count=5, seed=3,
                                 shard_size=2, **STEPS)
    sample_latent_folder(pipe, windows(source), tmp_path / "b", count=2, seed=3, shard_size=2,
                         **STEPS)
    again = sample_latent_folder(pipe, windows(source), tmp_path / "b", count=5, seed=3,
                                 shard_size=2, **STEPS)
    assert again.num_added == 3
    a = LatentDataset(tmp_path / "a", num_frames=FRAMES)
    b = LatentDataset(tmp_path / "b", num_frames=FRAMES)
    assert [e.metadata for e in a.entries] == [e.metadata for e in b.entries]
    for k in range(5):
        assert torch.equal(a.example(k, 0).latents, b.example(k, 0).latents)
    assert len(whole.entries) == 5
    with pytest.raises(ValueError, match="other settings: seed"):
        sample_latent_folder(pipe, windows(source), tmp_path / "a", count=6, seed=4, **STEPS)


def test_unusable_requests_are_refused_before_any_generation(
        pipe: TextToMusicPipeline, source: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(TextToMusicPipeline, "__call__", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError, match="count must be a positive"):
        sample_latent_folder(pipe, windows(source), tmp_path / "x", count=0)
    with pytest.raises(ValueError, match="seconds_total: set by each item"):
        sample_latent_folder(pipe, windows(source), tmp_path / "x", count=1, seconds_total=3.0)
    other = tmp_path / "other"
    dim = pipe.model.vae.latent_dim + 1
    header = {**latent_folder_header(pipe.model.vae, 0), "latent_dim": str(dim),
              "silence": str([0.0] * dim)}
    writer = LatentFolderWriter(other, header)
    writer.add(torch.zeros(pipe.model.vae.latent_dim + 1, 20), duration_s=1.0, path="a.wav",
               num_samples=1, metadata={})
    writer.close()
    with pytest.raises(ValueError, match="not this model's"):
        sample_latent_folder(pipe, LatentDataset(other, num_frames=FRAMES), tmp_path / "x",
                             count=1)
    writer = LatentFolderWriter(other := tmp_path / "unprompted",
                                latent_folder_header(pipe.model.vae, 0))
    writer.add(torch.zeros(pipe.model.vae.latent_dim, 20), duration_s=1.0, path="b.wav",
               num_samples=1, metadata={"id": "no description"})
    writer.close()
    with pytest.raises(ValueError, match=r"give no prompt .* 'b\.wav'"):
        sample_latent_folder(pipe, LatentDataset(other, num_frames=FRAMES), tmp_path / "x",
                             count=1)
    assert calls == [] and not (tmp_path / "x").exists()


def test_the_cli_writes_a_folder_that_training_reads(source: Path, tmp_path: Path,
                                                      capsys) -> None:
    out = tmp_path / "samples"
    args = ["data", "sample", str(source), "-o", str(out), "--count", "2", "--model",
            str(SAO1_TINY), "--window-frames", str(FRAMES), "--steps", "2", "--cfg", "1.5",
            "--seed", "7", "--no-progress"]
    assert main(args) == 0
    assert "2 item(s) of 16 frames, 2 generated" in capsys.readouterr().out
    back = LatentDataset(out, num_frames=FRAMES)
    assert len(back) == 2
    assert {e.metadata["steps"] for e in back.entries} == {2}
    assert {e.metadata["guidance_scale"] for e in back.entries} == {1.5}
    assert main([*args[:3], "-o", str(tmp_path / "y"), "--count", "0"]) != 0
    assert "--count must be >= 1" in capsys.readouterr().err
    assert main([*args[:3], "-o", str(tmp_path / "y"), "--count", "1", "--model",
                 str(SAO1_TINY), "--window-frames", "100000"]) != 0
    assert "exceeds the model's window" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()

"""``longplay vae ...`` end to end on the tiny fixture VAE."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import SAO1_TINY
from longplay.audio import load_audio, save_audio
from longplay.checkpoints.files import read_safetensors_metadata, read_state_dict
from longplay.cli.main import main


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    t = torch.arange(int(1.3 * 44100)) / 44100
    audio = 0.4 * torch.stack([torch.sin(2 * math.pi * 220 * t), torch.sin(2 * math.pi * 330 * t)])
    return save_audio(tmp_path / "in.wav", audio, 44100)


def run(*args: str | Path) -> int:
    return main([str(a) for a in args])


def test_reconstruct_writes_audio_of_the_input_length_and_prints_metrics(
        wav: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.flac"
    assert run("vae", "reconstruct", wav, "-o", out, "--model", SAO1_TINY, "--no-progress") == 0
    assert load_audio(out).num_samples == load_audio(wav).num_samples
    printed = capsys.readouterr().out
    assert "STFT distance" in printed and "MEL distance" in printed and "SI-SDR" in printed


def test_encode_then_decode_round_trip(wav: Path, tmp_path: Path) -> None:
    latents = tmp_path / "z.safetensors"
    assert run("vae", "encode", wav, "-o", latents, "--model", SAO1_TINY, "--no-progress") == 0
    z = read_state_dict(latents)["latents"]
    assert z.shape == (1, 8, math.ceil(1.3 * 44100 / 2048))
    meta = read_safetensors_metadata(latents)
    assert meta["num_samples"] == str(int(1.3 * 44100)) and meta["latents"] == "mean"
    out = tmp_path / "out.wav"
    assert run("vae", "decode", latents, "-o", out, "--model", SAO1_TINY, "--no-progress",
               "--chunk-frames", "4") == 0
    assert load_audio(out).num_samples == int(1.3 * 44100)


def test_encode_sample_is_seeded(wav: Path, tmp_path: Path) -> None:
    paths = [tmp_path / f"z{i}.safetensors" for i in range(3)]
    for path, seed in zip(paths, (1, 1, 2), strict=True):
        assert run("vae", "encode", wav, "-o", path, "--model", SAO1_TINY, "--sample",
                   "--seed", seed, "--no-progress") == 0
    z = [read_state_dict(p)["latents"] for p in paths]
    assert torch.equal(z[0], z[1]) and not torch.equal(z[0], z[2])


def test_random_weights_only_when_asked_and_with_a_warning(wav: Path, tmp_path: Path,
                                                            capsys, caplog) -> None:
    out = tmp_path / "out.wav"
    assert run("vae", "reconstruct", wav, "-o", out, "--no-progress") == 2
    assert "--model PATH" in capsys.readouterr().err and not out.exists()
    assert run("vae", "reconstruct", wav, "-o", out, "--random-weights", "debug",
               "--no-progress") == 0
    assert "output is noise" in caplog.text and out.exists()


def test_unreadable_input_fails_cleanly(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    out = tmp_path / "out.wav"
    assert run("vae", "reconstruct", bad, "-o", out, "--model", SAO1_TINY) == 2
    assert "notes.wav" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.wav"]


def test_bad_model_path_fails_cleanly(wav: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.wav"
    assert run("vae", "reconstruct", wav, "-o", out, "--model", tmp_path / "missing") == 2
    assert "does not exist" in capsys.readouterr().err and not out.exists()


def test_decode_rejects_latents_of_another_model(tmp_path: Path, capsys) -> None:
    latents = tmp_path / "z.safetensors"
    from longplay.checkpoints import write_safetensors

    write_safetensors(latents, {"latents": torch.randn(1, 64, 5)})
    out = tmp_path / "out.wav"
    assert run("vae", "decode", latents, "-o", out, "--model", SAO1_TINY) == 2
    assert "[B, 8, T]" in capsys.readouterr().err and not out.exists()


def test_metrics_command(wav: Path, tmp_path: Path, capsys) -> None:
    folder_a, folder_b = tmp_path / "a", tmp_path / "b"
    folder_a.mkdir()
    folder_b.mkdir()
    shutil.copy(wav, folder_a / "x.wav")
    shutil.copy(wav, folder_b / "x.wav")
    assert run("vae", "metrics", folder_a, folder_b, "--json") == 0
    assert '"stft_distance": 0.0' in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("longplay")
    result = subprocess.run([str(exe), "vae", "--help"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and "reconstruct" in result.stdout

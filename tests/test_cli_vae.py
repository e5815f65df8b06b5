"""``longplay vae ...`` end to end on the tiny fixture VAE."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SAO1_TINY
from longplay.assets import demo_model_path
from longplay.audio import load_audio, save_audio
from longplay.checkpoints import load_vae, write_safetensors
from longplay.checkpoints.files import read_safetensors_metadata, read_state_dict
from longplay.cli import vae as vae_cli
from longplay.cli.main import build_parser, main


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
                                                            caplog) -> None:
    out = tmp_path / "out.wav"
    assert run("vae", "reconstruct", wav, "-o", out, "--random-weights", "debug",
               "--no-progress") == 0
    assert "output is noise" in caplog.text and out.exists()


def test_without_model_the_bundled_demo_model_is_used(wav: Path, tmp_path: Path) -> None:
    """As every other command: no --model is the demo model, and --model demo names it."""
    demo_dim = load_vae(demo_model_path()).latent_dim
    for name, extra in (("default", []), ("named", ["--model", "demo"])):
        latents = tmp_path / f"{name}.safetensors"
        assert run("vae", "encode", wav, "-o", latents, *extra, "--no-progress") == 0
        assert read_state_dict(latents)["latents"].shape[1] == demo_dim


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
    scores = json.loads(capsys.readouterr().out)
    assert scores["stft_distance"] == 0.0 and scores["chroma_correlation"] == 1.0
    assert scores["added_tone_db"] == scores["worst_added_tone_db"] == -120.0
    assert scores["pitch_agreement"] == 1.0
    assert run("vae", "metrics", folder_a, folder_b) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1 item(s): STFT distance 0.000")
    dc = f"{scores['dc_offset']:.1e}"
    assert lines[1] == f"DC offset {dc} (reference {dc})  added tone none  chroma correlation 1.000"
    share = f"{100 * scores['pitched_share_reference']:.1f} %"
    assert lines[2] == (f"pitched frames: reference {share}, estimate {share}  "
                        "pitch agreement 100.0 %")


def test_metrics_command_prints_the_worst_added_tone_of_several_items(
        wav: Path, tmp_path: Path, capsys) -> None:
    audio = load_audio(wav).audio
    t = torch.arange(audio.shape[-1]) / 44100
    comb = 0.01 * torch.sin(2 * math.pi * 44100 / 256 * torch.arange(1, 60)[:, None] * t).sum(0)
    (tmp_path / "ref").mkdir()
    (tmp_path / "est").mkdir()
    for name, estimate in (("clean", audio), ("comb", audio + comb)):
        for folder, signal in (("ref", audio), ("est", estimate)):
            save_audio(tmp_path / folder / f"{name}.wav", signal, 44100, subtype="FLOAT")
    assert run("vae", "metrics", tmp_path / "ref", tmp_path / "est", "--json") == 0
    scores = json.loads(capsys.readouterr().out)
    assert -40.0 < scores["worst_added_tone_db"] < -10.0
    assert run("vae", "metrics", tmp_path / "ref", tmp_path / "est") == 0
    assert (f"added tone {scores['added_tone_db']:.1f} dB mean, "
            f"{scores['worst_added_tone_db']:.1f} dB worst item") in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("longplay")
    result = subprocess.run([str(exe), "vae", "--help"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and "reconstruct" in result.stdout


def _scores(text: str) -> tuple[str, str, str]:
    match = re.search(r"STFT distance (\S+)  MEL distance (\S+)  SI-SDR (\S+) dB", text)
    assert match, text
    return match.groups()


def test_reconstruct_and_metrics_report_the_same_numbers_for_the_same_pair(
        wav: Path, tmp_path: Path, capsys) -> None:
    """reconstruct scores the file it wrote (16-bit), as metrics does, at the VAE's rate."""
    out = tmp_path / "out.wav"
    assert run("vae", "reconstruct", wav, "-o", out, "--model", SAO1_TINY, "--no-progress") == 0
    text = capsys.readouterr().out
    printed = _scores(text)
    assert run("vae", "metrics", wav, out, "--sample-rate", "44100", "--json") == 0
    scores = json.loads(capsys.readouterr().out)
    assert printed == (f"{scores['stft_distance']:.3f}", f"{scores['mel_distance']:.3f}",
                       f"{scores['si_sdr']:.2f}")
    assert run("vae", "metrics", wav, out, "--sample-rate", "44100") == 0
    fidelity = capsys.readouterr().out.splitlines()[1:]
    assert fidelity[0].startswith("DC offset ") and fidelity[1].startswith("pitched frames: ")
    assert text.splitlines()[-2:] == fidelity


def test_reconstruct_refuses_audio_too_short_to_score_before_writing(
        tmp_path: Path, capsys) -> None:
    short = save_audio(tmp_path / "short.wav", 0.3 * torch.randn(2, 1000).clamp(-3, 3), 44100)
    out = tmp_path / "out.wav"
    assert run("vae", "reconstruct", short, "-o", out, "--model", SAO1_TINY,
               "--no-progress") == 2
    err = capsys.readouterr().err
    assert "short.wav" in err and "1000 samples" in err and str(vae_cli.MIN_SCORED_SAMPLES) in err
    assert not out.exists()


def _no_model(args) -> None:
    raise AssertionError("the model was loaded although an argument was wrong")


def test_arguments_are_checked_before_the_model_loads(wav: Path, tmp_path: Path, capsys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vae_cli, "_load_model", _no_model)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    one_hertz = tmp_path / "one_hertz.wav"
    sf.write(str(one_hertz), np.full((3, 2), 0.1, np.float32), 1)
    empty_latents = tmp_path / "empty.safetensors"
    write_safetensors(empty_latents, {"latents": torch.zeros(1, 8, 0)})
    nan_latents = tmp_path / "nan.safetensors"
    write_safetensors(nan_latents, {"latents": torch.full((8, 3), float("nan"))})
    out = tmp_path / "out.wav"
    cases = [
        (["encode", tmp_path / "missing.wav", "-o", tmp_path / "z.safetensors"], "not found"),
        (["encode", text, "-o", tmp_path / "z.safetensors"], "not a readable audio file"),
        (["reconstruct", one_hertz, "-o", out], "1 Hz"),
        (["reconstruct", wav, "-o", tmp_path / "no" / "out.wav"], "does not exist"),
        (["reconstruct", wav, "-o", tmp_path / "out.mp4"], "must end in"),
        (["reconstruct", wav, "-o", out, "--chunk-frames", "-1"], "--chunk-frames"),
        (["decode", tmp_path / "missing.safetensors", "-o", out], "does not exist"),
        (["decode", empty_latents, "-o", out], "hold no frames"),
        (["decode", nan_latents, "-o", out], "NaN"),
    ]
    for args, message in cases:
        assert run("vae", *args, "--no-progress") == 2, message
        assert message in capsys.readouterr().err, message
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.wav", "notes.wav", "one_hertz.wav", "empty.safetensors", "nan.safetensors"])


def test_every_option_of_the_vae_and_data_commands_has_help() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name in ("vae", "data"):
        actions = next(a for a in commands.choices[name]._actions
                       if isinstance(a, argparse._SubParsersAction))
        for action_name, sub in actions.choices.items():
            for action in sub._actions:
                if not isinstance(action, argparse._HelpAction) and not action.help:
                    missing.append(f"{name} {action_name} {action.dest}")
    assert not missing, missing

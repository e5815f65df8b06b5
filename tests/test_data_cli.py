"""``longplay data encode | pack`` on tiny folders and the fixture VAE."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SAO1_TINY
from longplay.assets import demo_model_path
from longplay.checkpoints import load_vae
from longplay.cli import data as data_cli
from longplay.cli import main as main_cli
from longplay.data import LatentDataset, TarShardDataset


def _registered() -> bool:
    parser = main_cli.build_parser()
    return any(isinstance(a, argparse._SubParsersAction) and "data" in a.choices
               for a in parser._actions)


def run(*args: str | Path) -> int:
    """The command through ``longplay.cli.main`` once ``data`` is registered there; until
    then through a parser built with ``add_parser``, reporting errors the same way."""
    argv: Sequence[str] = [str(a) for a in args]
    if _registered():
        return main_cli.main(argv)
    parser = argparse.ArgumentParser(prog="longplay")
    data_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(argv)
    try:
        return int(parsed.run(parsed) or 0)
    except ValueError as err:
        print(f"longplay: error: {err}", file=sys.stderr)
        return 2


@pytest.fixture
def music(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        audio = 0.3 * rng.standard_normal((int((0.3 + 0.2 * i) * 44100), 2))
        sf.write(str(root / f"{i}.wav"), audio.astype(np.float32), 44100)
    (root / "0.txt").write_text("first")
    return root


def test_encode_writes_latents_and_resumes(music: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "latents"
    assert run("data", "encode", "--model", SAO1_TINY, music, "-o", out, "--shard-size", "2",
               "--seed", "3", "--no-progress") == 0
    assert "encoded 3 file(s) into 2 shard(s)" in capsys.readouterr().out
    dataset = LatentDataset(out, num_frames=8)
    assert len(dataset) == 3 and dataset[0].prompt == "first"
    assert run("data", "encode", "--model", SAO1_TINY, music, "-o", out, "--seed", "3",
               "--no-progress") == 0
    assert "encoded 0 file(s)" in capsys.readouterr().out
    assert run("data", "encode", "--model", SAO1_TINY, music, "-o", out, "--seed", "4",
               "--no-progress") == 2
    assert "seed" in capsys.readouterr().err


def test_encode_reports_bad_arguments(music: Path, tmp_path: Path, capsys) -> None:
    assert run("data", "encode", "--model", SAO1_TINY, tmp_path / "nope", "-o",
               tmp_path / "out", "--no-progress") == 2
    assert "is not a folder" in capsys.readouterr().err
    assert run("data", "encode", "--model", tmp_path / "no-model", music, "-o",
               tmp_path / "out", "--no-progress") == 2
    assert "no-model" in capsys.readouterr().err
    assert run("data", "encode", "--model", SAO1_TINY, music, "-o", tmp_path / "out",
               "--shard-size", "0") == 2
    assert "--shard-size" in capsys.readouterr().err


def test_pack_writes_tar_shards(music: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "shards"
    assert run("data", "pack", music, "-o", out, "--shard-size", "2") == 0
    assert "wrote 2 shard(s)" in capsys.readouterr().out
    shards = sorted(str(p) for p in out.glob("*.tar"))
    examples = list(TarShardDataset(shards, sample_rate=44100, num_samples=4410,
                                    shuffle_shards=False))
    assert len(examples) == 3 and examples[0].prompt == "first"
    assert run("data", "pack", music, "-o", out) == 2
    assert "already holds shards" in capsys.readouterr().err


def test_encode_defaults_to_the_bundled_model_and_takes_its_name(music: Path,
                                                                  tmp_path: Path) -> None:
    """As every other command: no --model is the demo model, and --model demo names it."""
    for name, extra in (("default", []), ("named", ["--model", "demo"])):
        out = tmp_path / name
        assert run("data", "encode", *extra, music, "-o", out, "--no-progress") == 0
        channels = LatentDataset(out, num_frames=8)[0].latents.shape[0]
        assert channels == load_vae(demo_model_path()).latent_dim


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded although an argument was wrong")


def test_encode_checks_its_arguments_before_loading_the_model(
        music: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_cli, "load_vae", _no_model)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    no_audio = tmp_path / "no_audio"
    no_audio.mkdir()
    (no_audio / "notes.txt").write_text("x")
    cases = [
        ([music, "-o", a_file], "a_file is a file"),
        ([music, "-o", a_file / "latents"], "a_file is a file"),
        ([music, "-o", tmp_path / "out", "--model", tmp_path / "no-model"], "no-model"),
        ([music, "-o", tmp_path / "out", "--max-duration", "0"], "--max-duration"),
        ([music, "-o", tmp_path / "out", "--chunk-frames", "-1"], "--chunk-frames"),
        ([music, "-o", tmp_path / "out", "--min-duration", "-1"], "--min-duration"),
        ([no_audio, "-o", tmp_path / "out"], "holds no audio file"),
    ]
    for args, message in cases:
        assert run("data", "encode", *args, "--no-progress") == 2, message
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_encode_skips_files_beyond_max_duration(music: Path, tmp_path: Path, capsys,
                                                caplog) -> None:
    out = tmp_path / "latents"
    assert run("data", "encode", "--model", SAO1_TINY, music, "-o", out, "--max-duration",
               "0.4", "--no-progress") == 0
    assert "encoded 1 file(s)" in capsys.readouterr().out
    assert "1.wav" in caplog.text and "2.wav" in caplog.text and "0.4 s" in caplog.text


def test_file_names_that_are_not_utf8_do_not_stop_pack_or_encode(
        music: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = os.fsdecode(b"caf\xe9")
    sf.write(os.fsencode(music / f"{odd}.wav"), np.full((4410, 2), 0.1, np.float32), 44100)
    # stdout that refuses what it cannot encode, as a terminal with LANG=en_US.UTF-8 does
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert run("data", "pack", music, "-o", tmp_path / f"shards-{odd}") == 0
    assert run("data", "encode", "--model", SAO1_TINY, music, "-o", tmp_path / "z",
               "--no-progress") == 0
    stdout.flush()
    printed = stdout.buffer.getvalue().decode("utf-8")
    assert "wrote 1 shard(s)" in printed and "encoded 4 file(s)" in printed
    examples = list(TarShardDataset([str(tmp_path / f"shards-{odd}" / "shard-00000.tar")],
                                    sample_rate=44100, num_samples=4410,
                                    shuffle_shards=False))
    assert len(examples) == 4
    assert len(LatentDataset(tmp_path / "z", num_frames=8)) == 4


def test_encode_refuses_an_output_folder_safetensors_cannot_open(
        music: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """safetensors opens only UTF-8 paths: latents written there could never be read."""
    monkeypatch.setattr(data_cli, "load_vae", _no_model)
    out = tmp_path / os.fsdecode(b"z-caf\xe9")
    assert run("data", "encode", music, "-o", out, "--no-progress") == 2
    assert "not valid UTF-8" in capsys.readouterr().err and not out.exists()

"""``longplay data encode | pack`` on tiny folders and the fixture VAE."""

from __future__ import annotations

import argparse
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

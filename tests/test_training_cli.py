"""``longplay train`` on the command line: the debug configs train from any working
directory, --text-encoder/--model/--vae override the config fields they name (and only
where a stage has that field), and bad numbers are refused before any work."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import SAO1_TINY, make_tiny_bert
from longplay.audio import save_audio
from longplay.cli.main import main

REPO = Path(__file__).resolve().parents[1]
DEBUG = REPO / "configs" / "debug"
SR = 44100


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audio")
    t = torch.arange(int(1.6 * SR)) / SR
    for i, freq in enumerate([220, 330, 440, 550]):
        tone = 0.3 * torch.sin(2 * math.pi * freq * t)
        save_audio(root / f"tone{i}.wav", torch.stack([tone, tone]), SR)
        (root / f"tone{i}.txt").write_text(f"tone number {i}")
    return root


def saved(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.parametrize("option, value", [("--max-steps", "-5"), ("--max-steps", "0"),
                                           ("--max-steps", "-1"), ("--max-steps", "ten"),
                                           ("--devices", "0"), ("--num-nodes", "0")])
def test_bad_numbers_are_refused_before_any_work(tmp_path: Path, capsys, option: str,
                                                 value: str) -> None:
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["train", "vae", str(DEBUG / "vae.yaml"), "-o", str(run), option, value])
    assert exit_.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err
    assert not run.exists()


def test_the_debug_configs_train_from_another_working_directory(audio: Path, tmp_path: Path,
                                                                monkeypatch) -> None:
    """Their relative paths (the fixture text encoder) are relative to the config file."""
    monkeypatch.chdir(tmp_path)
    for stage in ("vae", "clap", "dit"):
        assert main(["train", stage, str(DEBUG / f"{stage}.yaml"), "--data", str(audio),
                     "-o", f"runs/{stage}", "--max-steps", "1", "--no-progress"]) == 0, stage
        assert saved(tmp_path / "runs" / stage)["global_step"] == 1


def test_text_encoder_option_overrides_the_config(audio: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    encoder = make_tiny_bert(tmp_path / "bert", hidden_size=24)
    monkeypatch.chdir(tmp_path)  # a path relative to the working directory
    assert main(["train", "clap", str(DEBUG / "clap.yaml"), "--data", str(audio), "-o",
                 "run", "--max-steps", "1", "--no-progress", "--text-encoder", "bert"]) == 0
    ckpt = saved(tmp_path / "run")
    assert ckpt["longplay"]["config"]["text_encoder_path"] == str(encoder.resolve())
    # The BERT (width 24) is the text tower, not the config's T5 fixture (width 32).
    assert ckpt["state_dict"]["net.text_proj.weight"].shape[1] == 24


@pytest.mark.parametrize("stage, option", [("vae", "--text-encoder"), ("clap", "--vae"),
                                           ("clap", "--model"), ("dit", "--teacher")])
def test_options_are_refused_where_the_stage_has_no_such_field(tmp_path: Path, capsys,
                                                                stage: str, option: str) -> None:
    run = tmp_path / "run"
    assert main(["train", stage, str(DEBUG / f"{stage}.yaml"), "-o", str(run),
                 option, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{option} is for `longplay train" in err and f"not {stage}" in err
    assert not run.exists()


def test_model_option_fine_tunes_a_model_folder(audio: Path, tmp_path: Path) -> None:
    run = tmp_path / "finetune"
    assert main(["train", "dit", str(DEBUG / "dit.yaml"), "--model", str(SAO1_TINY),
                 "--data", str(audio), "-o", str(run), "--max-steps", "1",
                 "--no-progress"]) == 0
    info = saved(run)["longplay"]
    assert info["config"]["init_from"] == str(SAO1_TINY.resolve())
    assert info["config"]["preset"] is None
    assert info["model_config"]["sample_size"] == 131072  # the fixture's, not the preset's


def test_vae_option_gives_the_dit_its_vae(audio: Path, tmp_path: Path, capsys) -> None:
    from longplay.builders import build_vae, seeded
    from longplay.checkpoints import save_vae
    from longplay.config import model_preset

    vae_config = model_preset("debug").vae
    with seeded(123):
        vae = build_vae(vae_config)
    save_vae(vae, vae_config, tmp_path / "vae")
    run = tmp_path / "dit"
    assert main(["train", "dit", str(DEBUG / "dit.yaml"), "--vae", str(tmp_path / "vae"),
                 "--data", str(audio), "-o", str(run), "--max-steps", "1",
                 "--no-progress"]) == 0
    state = saved(run)["state_dict"]
    for key, value in vae.state_dict().items():
        assert torch.equal(state[f"vae.{key}"], value), key
    # A model folder brings its own VAE: --vae with --model is refused, naming both.
    assert main(["train", "dit", str(DEBUG / "dit.yaml"), "--vae", str(tmp_path / "vae"),
                 "--model", str(SAO1_TINY), "--data", str(audio), "-o",
                 str(tmp_path / "both")]) == 2
    assert "--vae" in capsys.readouterr().err
    assert not (tmp_path / "both").exists()

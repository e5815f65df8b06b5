"""``longplay generate`` and ``longplay info`` end to end on the tiny fixture models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import SAO1_TINY, SAOS_TINY
from longplay.audio import load_audio
from longplay.cli.main import main


def run(*args: str | Path) -> int:
    return main([str(a) for a in args])


def test_generate_writes_audio_and_a_settings_sidecar(tmp_path: Path) -> None:
    out = tmp_path / "song.wav"
    assert run("generate", "a calm piano", "--model", SAO1_TINY, "--duration", "1.5",
               "--steps", "4", "--seed", "7", "-o", out, "--no-progress") == 0
    wave = load_audio(out)
    assert wave.sample_rate == 44100 and wave.audio.shape == (2, round(1.5 * 44100))
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["prompt"] == "a calm piano" and sidecar["seed"] == 7
    assert sidecar["settings"]["num_inference_steps"] == 4
    assert sidecar["settings"]["sampler"] == "dpmpp-3m-sde"
    from longplay.pipelines.text_to_music import bf16_supported

    expected = "bf16" if bf16_supported(torch.device("cpu")) else "fp32"  # --precision auto
    assert sidecar["settings"]["precision"] == expected
    assert sidecar["model"] == str(SAO1_TINY.resolve())


def test_generate_with_compile_writes_the_same_audio(tmp_path: Path) -> None:
    plain, compiled = tmp_path / "plain.wav", tmp_path / "compiled.wav"
    for out, extra in ((plain, ()), (compiled, ("--compile",))):
        assert run("generate", "a calm piano", "--model", SAO1_TINY, "--duration", "1",
                   "--steps", "3", "--seed", "7", "--precision", "fp32", "-o", out,
                   "--no-progress", *extra) == 0
    a, b = load_audio(plain).audio, load_audio(compiled).audio
    assert a.shape == b.shape and (a - b).abs().max() < 1e-3  # 16-bit WAV steps: 3e-5


def test_generate_several_outputs_with_consecutive_seeds(tmp_path: Path) -> None:
    out = tmp_path / "take.flac"
    assert run("generate", "fast drums", "--model", SAOS_TINY, "--duration", "1",
               "--num-outputs", "2", "--seed", "3", "-o", out, "--no-progress") == 0
    seeds = [json.loads((tmp_path / f"take_{i}.json").read_text())["seed"] for i in range(2)]
    assert seeds == [3, 4]
    assert all((tmp_path / f"take_{i}.flac").is_file() for i in range(2))


def test_generate_audio_to_audio(tmp_path: Path) -> None:
    first = tmp_path / "a.wav"
    assert run("generate", "a calm piano", "--model", SAO1_TINY, "--steps", "3", "--seed", "1",
               "-o", first, "--no-progress") == 0
    second = tmp_path / "b.wav"
    assert run("generate", "a calm piano", "--model", SAO1_TINY, "--steps", "3", "--seed", "2",
               "--init-audio", first, "--init-noise-level", "0.5", "-o", second,
               "--no-progress") == 0
    sidecar = json.loads(second.with_suffix(".json").read_text())
    assert sidecar["settings"]["init_noise_level"] == 0.5 and sidecar["init_audio"] == str(first)


def test_generate_errors_leave_nothing_behind(tmp_path: Path, capsys, monkeypatch) -> None:
    import longplay.assets

    out = tmp_path / "x.wav"
    # No --model and no bundled model (an install without package data).
    monkeypatch.setattr(longplay.assets, "DEMO_DIR", tmp_path / "missing")
    assert run("generate", "p", "-o", out) == 2
    assert "--model PATH" in capsys.readouterr().err
    monkeypatch.undo()
    assert run("generate", "p", "--model", SAO1_TINY, "--duration", "9999", "-o", out) == 2
    assert "duration_s must be in" in capsys.readouterr().err
    assert run("generate", "p", "--model", SAO1_TINY, "--steps", "0", "-o", out) == 2
    assert "num_inference_steps" in capsys.readouterr().err
    assert run("generate", "p", "--model", SAOS_TINY, "--sampler", "dpmpp-3m-sde", "-o",
               out) == 2
    assert "does not fit" in capsys.readouterr().err
    assert run("generate", "p", "--model", SAO1_TINY, "-o", tmp_path / "x.aiff") == 2
    assert list(tmp_path.iterdir()) == []


def test_info_describes_the_model(capsys) -> None:
    assert run("info", SAO1_TINY) == 0
    text = capsys.readouterr().out
    assert "64 latent frames = 2.97 s" in text and "rotary 32" in text
    assert "100 steps of dpmpp-3m-sde (sigma 500 down to 0.03)" in text
    assert run("info", SAOS_TINY, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["objective"] == "rf_denoiser" and info["dit"]["qk_norm"] is True
    assert (info["sampling"]["sigma_min"], info["sampling"]["sigma_max"]) == (None, None)
    assert info["parameters_total"] == (info["vae"]["parameters"] + info["dit"]["parameters"]
                                        + info["conditioning"]["parameters"])
    assert run("info", "/nonexistent/model") == 2


def test_threads_option_sets_torch_threads_only_when_given(capsys) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert run("info", SAO1_TINY) == 0
        assert torch.get_num_threads() == before  # no option: torch's own choice
        assert run("--threads", "1", "info", SAO1_TINY) == 0
        assert torch.get_num_threads() == 1
        assert run("--threads", "0", "info", SAO1_TINY) == 2
        assert "--threads must be >= 1" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_importing_longplay_leaves_torch_settings_alone() -> None:
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1); "
            "state = (torch.get_num_threads(), torch.get_default_dtype(), "
            "torch.are_deterministic_algorithms_enabled(), torch.is_grad_enabled()); "
            "import longplay, longplay.pipelines, longplay.cli.main, longplay.training.runner; "
            "assert state == (torch.get_num_threads(), torch.get_default_dtype(), "
            "torch.are_deterministic_algorithms_enabled(), torch.is_grad_enabled()), state")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_extend_inpaint_long_and_loop_from_the_command_line(tmp_path: Path, capsys) -> None:
    source = tmp_path / "source.wav"
    assert run("generate", "a calm piano", "--model", SAO1_TINY, "--duration", "2",
               "--steps", "3", "--seed", "1", "-o", source, "--no-progress") == 0
    longer = tmp_path / "longer.wav"
    assert run("extend", source, "--seconds", "5", "--prompt", "a calm piano", "--model",
               SAO1_TINY, "--steps", "2", "--seed", "2", "-o", longer, "--no-progress") == 0
    assert "note: 7.00 s is longer than the model's window" in capsys.readouterr().out
    assert load_audio(longer).audio.shape[-1] == 7 * 44100
    sidecar = json.loads(longer.with_suffix(".json").read_text())
    assert sidecar["input"] == str(source) and sidecar["joins_s"][0] == 2.0
    assert sidecar["settings"]["inpaint_regions"] == [[2.0, 7.0]]

    edited = tmp_path / "edited.flac"
    assert run("inpaint", longer, "--start", "1", "--end", "2.5", "--prompt", "fast drums",
               "--model", SAO1_TINY, "--steps", "2", "--seed", "3", "-o", edited,
               "--no-progress") == 0
    before, after = load_audio(longer).audio, load_audio(edited).audio
    assert torch.equal(after[:, 4 * 44100:], before[:, 4 * 44100:])  # 16-bit both ways
    assert not torch.equal(after[:, 44100:2 * 44100], before[:, 44100:2 * 44100])

    piece = tmp_path / "piece.wav"
    assert run("generate", "intro", "--model", SAO1_TINY, "--duration", "8", "--section",
               "4:outro", "--steps", "2", "-o", piece, "--no-progress") == 0
    settings = json.loads(piece.with_suffix(".json").read_text())["settings"]
    assert settings["sections"] == [[0.0, "intro"], [4.0, "outro"]]

    loop = tmp_path / "loop.wav"
    assert run("generate", "drums", "--model", SAO1_TINY, "--loop", "--bpm", "120", "--bars",
               "1", "--steps", "2", "-o", loop, "--no-progress") == 0
    assert load_audio(loop).audio.shape[-1] == 2 * 44100
    assert json.loads(loop.with_suffix(".json").read_text())["joins_s"] == [2.0]


def test_editing_errors_are_clear_and_write_nothing(tmp_path: Path, capsys) -> None:
    source = tmp_path / "source.wav"
    assert run("generate", "x", "--model", SAO1_TINY, "--duration", "1", "--steps", "2",
               "-o", source, "--no-progress") == 0
    out = tmp_path / "out.wav"
    for args, message in (
            (("inpaint", source, "--start", "0.5", "--end", "3", "--prompt", "x"),
             "within the piece"),
            (("inpaint", source, "--start", "2", "--end", "1", "--prompt", "x"), "--start"),
            (("extend", source, "--seconds", "0", "--prompt", "x"), "--seconds"),
            (("extend", tmp_path / "missing.wav", "--seconds", "2", "--prompt", "x"),
             "missing.wav"),
            (("generate", "x", "--loop", "--bpm", "120"), "--bpm and --bars"),
            (("generate", "x", "--section", "nonsense"), "START:PROMPT")):
        assert run(*args, "--model", SAO1_TINY, "-o", out) == 2
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.json", "source.wav"]


def test_guidance_options_and_int8_from_the_command_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "interval.wav"
    assert run("generate", "a calm piano", "--model", SAO1_TINY, "--duration", "1",
               "--steps", "4", "--sampler", "dpmpp-2m", "--guidance-interval", "0.5:100",
               "--unguided-final-steps", "1", "--precision", "int8", "--seed", "0",
               "-o", out, "--no-progress") == 0
    settings = json.loads(out.with_suffix(".json").read_text())["settings"]
    assert settings["guidance_interval"] == [0.5, 100.0]
    assert settings["unguided_final_steps"] == 1 and settings["precision"] == "int8"
    bad = tmp_path / "bad.wav"
    assert run("generate", "x", "--model", SAO1_TINY, "--steps", "4",
               "--unguided-final-steps", "4", "-o", bad, "--no-progress") == 2
    assert "unguided_final_steps must be an integer in [0, 4)" in capsys.readouterr().err
    assert not bad.exists()
    with pytest.raises(SystemExit):
        run("generate", "x", "--model", SAO1_TINY, "--guidance-interval", "high", "-o", bad)
    assert "expected LO:HI" in capsys.readouterr().err


def test_draft_then_refine_is_the_two_pipelines_composed(tmp_path: Path) -> None:
    """--draft MODEL: the draft model's sampling in 2 steps (latents only), refined by the model
    from the default level in the default steps, guided above the default floor, with the
    refinement's seeds after the draft's; the settings record is the drafted one (the
    draft's seeds, how it was drafted) and the sidecar also gives the draft's own record."""
    from longplay.pipelines import TextToMusicPipeline
    from longplay.pipelines.drafts import DRAFT_REFINEMENT, REFINE_SEED_OFFSET

    out = tmp_path / "drafted.wav"
    assert run("generate", "a calm piano", "--model", SAO1_TINY, "--draft", SAO1_TINY,
               "--duration", "1.5", "--seed", "7", "--precision", "fp32", "--format",
               "wav-float", "--no-normalize", "-o", out, "--no-progress") == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["seed"] == 7 and sidecar["draft"]["model"] == str(SAO1_TINY.resolve())
    assert sidecar["draft"]["settings"]["seeds"] == [7]
    refined = sidecar["settings"]
    assert refined["seeds"] == [7] and refined["has_init_latents"]
    assert refined["draft"] == {"model": SAO1_TINY.name, "sampler": "dpmpp-3m-sde",
                                "num_inference_steps": DRAFT_REFINEMENT.draft_steps,
                                "seed_offset": REFINE_SEED_OFFSET}
    assert refined["init_noise_level"] == DRAFT_REFINEMENT.init_noise_level
    assert refined["num_inference_steps"] == DRAFT_REFINEMENT.num_inference_steps
    assert refined["guidance_interval"][0] == DRAFT_REFINEMENT.guidance_interval[0]

    pipe = TextToMusicPipeline.from_pretrained(SAO1_TINY, precision="fp32")
    draft = pipe("a calm piano", duration_s=1.5, seed=7, output_type="latent",
                 num_inference_steps=DRAFT_REFINEMENT.draft_steps)
    assert json.loads(json.dumps(draft.settings.as_dict())) == sidecar["draft"]["settings"]
    expected = pipe("a calm piano", duration_s=1.5, seed=7 + REFINE_SEED_OFFSET,
                    init_latents=draft.latents, **DRAFT_REFINEMENT.as_kwargs())
    written = load_audio(out).audio  # float WAV, not normalised: the samples themselves
    assert written.shape == expected.audio[0].shape
    assert (written - expected.audio[0]).abs().max() < 1e-6

    # Given a level and steps, the refinement keeps the default guidance interval.
    assert run("generate", "a calm piano", "--model", SAO1_TINY, "--draft", SAO1_TINY,
               "--duration", "1.5", "--init-noise-level", "4", "--steps", "3", "-o", out,
               "--no-progress") == 0
    refined = json.loads(out.with_suffix(".json").read_text())["settings"]
    assert (refined["init_noise_level"], refined["num_inference_steps"]) == (4.0, 3)
    assert refined["guidance_interval"][0] == DRAFT_REFINEMENT.guidance_interval[0]


def test_draft_errors_are_clear_and_come_before_any_work(tmp_path: Path, capsys,
                                                         monkeypatch) -> None:
    from longplay.pipelines import TextToMusicPipeline

    def no_generation(*args, **kwargs):
        raise AssertionError("generated before refusing")

    out = tmp_path / "x.wav"
    monkeypatch.setattr(TextToMusicPipeline, "__call__", no_generation)
    cases = [
        (("--model", SAO1_TINY, "--draft", SAOS_TINY), "must share the model's VAE"),
        (("--model", SAO1_TINY, "--draft", SAO1_TINY, "--loop"), "--loop is not available"),
        (("--model", SAO1_TINY, "--draft", SAO1_TINY, "--section", "1:drums"),
         "--section is not available"),
        (("--model", SAO1_TINY, "--draft", SAO1_TINY, "--duration", "5"),
         "the draft is one window"),
        (("--model", SAOS_TINY, "--draft", SAOS_TINY), "no default draft refinement"),
        (("--model", SAO1_TINY, "--draft", SAO1_TINY, "--draft-steps", "0"),
         "num_inference_steps must be a positive integer"),
        (("--model", SAO1_TINY, "--draft", tmp_path / "nowhere"), "nowhere"),
    ]
    for extra, message in cases:
        assert run("generate", "p", *extra, "-o", out, "--no-progress") == 2, extra
        assert message in capsys.readouterr().err, extra
    # Same VAE config, other VAE weights: refused once loaded, before any generation.
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other"
    other.mkdir()
    for item in SAO1_TINY.iterdir():
        if item.name != "model.safetensors":
            (other / item.name).symlink_to(item)
    weights = load_file(SAO1_TINY / "model.safetensors")
    key = next(k for k in weights if k.startswith("pretransform."))
    weights[key] = weights[key] + 1e-3
    save_file(weights, other / "model.safetensors")
    assert run("generate", "p", "--model", SAO1_TINY, "--draft", other, "-o", out,
               "--no-progress") == 2
    assert "VAE weights differ" in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".json").exists()

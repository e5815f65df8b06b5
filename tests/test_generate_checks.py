"""What `longplay generate` and the pipeline promise about their inputs and outputs:
arguments checked before any weights load, outputs DC-blocked and peak-normalised by
default (raw on request) in the chosen format, sidecars that record what was done, and
writes that an interruption cannot leave half-done."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SAO1_TINY, SAOS_TINY
from longplay import atomic
from longplay.audio import PEAK_DBFS, load_audio, normalize_output
from longplay.cli.main import main
from longplay.pipelines import MAX_BATCH_SIZE, MAX_INFERENCE_STEPS, TextToMusicPipeline
from longplay.pipelines.settings import resolve_settings


def run(*args: str | Path) -> int:
    """The command's exit code (argparse's own refusals exit with 2)."""
    try:
        return main([str(a) for a in args])
    except SystemExit as exit_:
        return int(exit_.code)


@pytest.fixture
def no_weights(monkeypatch):
    """Fail the test if anything loads a model's weights."""
    import longplay.checkpoints.diffusion as diffusion

    def refuse(*args, **kwargs):
        raise AssertionError("the model's weights were loaded before the arguments were "
                             "checked")

    monkeypatch.setattr(diffusion, "_load_sat_folder", refuse)
    monkeypatch.setattr(diffusion, "_load_diffusers_folder", refuse)


@pytest.mark.parametrize("args, message", [
    (("--steps", "0"), "--steps"),
    (("--steps", str(MAX_INFERENCE_STEPS + 1)), "MAX_INFERENCE_STEPS"),
    (("--num-outputs", str(MAX_BATCH_SIZE + 1)), "--num-outputs"),
    (("--duration", "99999"), "--duration"),
    (("--sampler", "pingpong"), "does not fit"),
    (("--init-audio", "missing.wav"), "missing.wav"),
    (("--seconds-start", "600"), "--seconds-start"),
    (("--seconds-total", "600"), "--seconds-total"),
    (("--seconds-start", "3", "--seconds-total", "2"), "before the end of the piece"),
    (("--sigma-min", "5", "--sigma-max", "1"), "sigma"),
    (("--format", "flac"), "writes .flac files"),
    (("--device", "cuda:7"), "cuda"),
    (("--negative", "\udcff"), "not valid text"),
])
def test_arguments_are_checked_before_the_model_loads(tmp_path, capsys, no_weights, args,
                                                      message) -> None:
    out = tmp_path / "x.wav"
    assert run("generate", "a calm piano", "--model", SAO1_TINY, "-o", out, *args) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("prompt, message", [("", "empty"), ("   ", "empty"),
                                             ("piano \udcff", "not valid text")])
def test_prompts_follow_one_rule_everywhere(tmp_path, capsys, no_weights, prompt,
                                            message) -> None:
    """An empty prompt (the studio's and the HTTP API's rule) and text with undecodable
    bytes (what Python makes of a non-UTF-8 argv) are refused before any work."""
    assert run("generate", prompt, "--model", SAO1_TINY, "-o", tmp_path / "x.wav") == 2
    assert message in capsys.readouterr().err
    from longplay.checkpoints import read_diffusion_config

    with pytest.raises(ValueError, match=message):
        resolve_settings(read_diffusion_config(SAO1_TINY), prompt)


def test_output_folder_problems_are_found_before_the_model_loads(tmp_path, capsys, no_weights,
                                                                 monkeypatch) -> None:
    assert run("generate", "p", "--model", SAO1_TINY, "-o", tmp_path / "no" / "x.wav") == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "x.json").mkdir()
    assert run("generate", "p", "--model", SAO1_TINY, "-o", tmp_path / "x.wav") == 2
    assert "is a folder" in capsys.readouterr().err
    import longplay.cli.generate as generate

    monkeypatch.setattr(generate.os, "access", lambda path, mode: False)
    assert run("generate", "p", "--model", SAO1_TINY, "-o", tmp_path / "y.wav") == 2
    err = capsys.readouterr().err
    assert "not writable" in err and str(tmp_path) in err and ".tmp-" not in err


# -- the pipeline's own checks --------------------------------------------------------


@pytest.fixture(scope="module")
def sao1() -> TextToMusicPipeline:
    return TextToMusicPipeline.from_pretrained(SAO1_TINY)


@pytest.mark.parametrize("kwargs, field", [
    ({"init_audio": torch.zeros(2, 0)}, "init_audio"),
    ({"init_audio": torch.zeros(2, 1000, dtype=torch.int16)}, "init_audio"),
    ({"prompt": "a\ud800"}, "prompt"),
    ({"negative_prompt": ""}, "negative_prompt"),
    ({"seconds_start": 513.0}, "seconds_start"),
    ({"seconds_total": 1000.0}, "seconds_total"),
    ({"num_inference_steps": 10**9}, "num_inference_steps"),
    ({"num_outputs": 10**6}, "num_outputs"),
    ({"duration_s": True}, "duration_s"),
    ({"num_inference_steps": True}, "num_inference_steps"),
    ({"prompt": None}, "prompt"),
    ({"prompt": 123}, "prompt"),
])
def test_python_calls_are_refused_naming_the_argument(sao1, kwargs, field) -> None:
    from longplay.errors import SettingsError

    kwargs = {"prompt": "a calm piano", **kwargs}
    with pytest.raises(SettingsError) as err:
        sao1.check_inputs(**kwargs)
    assert err.value.field == field


def test_timing_beyond_the_models_range_is_recorded_as_seen(sao1) -> None:
    """No silent clamping: a long piece's default seconds_total is the range's end, and
    the record says so."""
    settings = sao1.resolve_settings("a calm piano", duration_s=600.0, num_inference_steps=2)
    assert settings.duration_s == 600.0 and settings.seconds_total == 512.0


def test_flow_models_record_no_sigmas_and_refuse_them() -> None:
    from longplay.checkpoints import read_diffusion_config
    from longplay.errors import SettingsError

    config = read_diffusion_config(SAOS_TINY)
    settings = resolve_settings(config, "drums")
    assert settings.sigma_min is None and settings.sigma_max is None
    with pytest.raises(SettingsError, match="does not use it"):
        resolve_settings(config, "drums", sigma_min=0.1)


# -- what is written ------------------------------------------------------------------


def _tone(seconds: float = 2.0, rate: int = 44100) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    left = 1.4 * torch.sin(2 * math.pi * 41 * t) + 0.3 * torch.sin(2 * math.pi * 880 * t) - 0.06
    right = 0.5 * torch.sin(2 * math.pi * 110 * t) - 0.05 + 0.05 * torch.sin(2 * math.pi * t)
    return torch.stack([left, right])


def _level(audio: torch.Tensor, rate: int, hz: float) -> torch.Tensor:
    spectrum = torch.fft.rfft(audio.double())
    return spectrum[..., round(hz * audio.shape[-1] / rate)].abs()


def test_normalize_output_removes_dc_and_sets_the_peak_keeping_the_bass() -> None:
    raw = _tone()
    out, done = normalize_output(raw, 44100)
    assert out.mean(dim=-1).abs().max() < 1e-4
    assert abs(20 * math.log10(float(out.abs().max())) - PEAK_DBFS) < 0.01
    gain = 10 ** (done.gain_db / 20)
    # 41 Hz (the lowest E of a bass) keeps its level within 0.5 dB; 1 Hz drift is gone.
    kept = _level(out[0], 44100, 41) / (_level(raw[0], 44100, 41) * gain)
    assert abs(20 * math.log10(float(kept))) < 0.5
    assert _level(out[1], 44100, 1) / (_level(raw[1], 44100, 1) * gain) < 0.01
    assert done.raw_peak > 1.4 and done.dc_offset == pytest.approx((-0.06, -0.05), abs=1e-3)
    same, raw_done = normalize_output(raw, 44100, normalize=False)
    assert torch.equal(same, raw) and not raw_done.normalized
    with pytest.raises(ValueError, match="NaN"):
        normalize_output(torch.full((2, 10), math.nan), 44100)


def test_cli_outputs_are_normalised_by_default_and_raw_on_request(tmp_path: Path) -> None:
    common = ("generate", "a calm piano", "--model", SAO1_TINY, "--duration", "1",
              "--steps", "2", "--seed", "3", "--no-progress", "--precision", "fp32")
    assert run(*common, "-o", tmp_path / "n.wav") == 0
    assert run(*common, "-o", tmp_path / "raw.wav", "--format", "wav-float",
               "--no-normalize") == 0
    normal, raw = load_audio(tmp_path / "n.wav").audio, load_audio(tmp_path / "raw.wav").audio
    assert sf.info(str(tmp_path / "raw.wav")).subtype == "FLOAT"
    assert sf.info(str(tmp_path / "n.wav")).subtype == "PCM_16"
    assert abs(20 * math.log10(float(normal.abs().max())) - PEAK_DBFS) < 0.05
    assert normal.mean(dim=-1).abs().max() < 1e-3
    side = json.loads((tmp_path / "n.json").read_text())["output"]
    raw_side = json.loads((tmp_path / "raw.json").read_text())["output"]
    assert side["normalized"] and side["peak_dbfs"] == PEAK_DBFS and side["format"] == "wav"
    assert not raw_side["normalized"] and raw_side["format"] == "wav-float"
    # The raw file is the model's output as it is: its peak is what the record says.
    assert float(raw.abs().max()) == pytest.approx(raw_side["raw_peak"], rel=1e-5)
    expected, _ = normalize_output(raw, 44100)
    assert (expected - normal).abs().max() < 1e-3  # 16-bit steps


@pytest.mark.parametrize("name, suffix, file_format", [("ogg", ".ogg", "OGG"),
                                                       ("mp3", ".mp3", "MP3"),
                                                       ("flac24", ".flac", "FLAC")])
def test_cli_writes_every_named_format(tmp_path, name, suffix, file_format) -> None:
    out = tmp_path / f"x{suffix}"
    assert run("generate", "p", "--model", SAO1_TINY, "--duration", "1", "--steps", "2",
               "--no-progress", "--format", name, "-o", out) == 0
    assert sf.info(str(out)).format == file_format
    assert json.loads(out.with_suffix(".json").read_text())["output"]["format"] == name


def test_sidecar_records_compile_absolute_paths_and_no_sigmas_for_flows(tmp_path,
                                                                       monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    sf.write("in.wav", np.zeros((22050, 2), dtype=np.float32) + 0.1, 44100)
    assert run("generate", "p", "--model", SAO1_TINY, "--duration", "0.5", "--steps", "2",
               "--init-audio", "in.wav", "--no-progress", "-o", "a.wav") == 0
    side = json.loads(Path("a.json").read_text())
    assert side["init_audio"] == str(tmp_path / "in.wav") and side["compile"] == []
    assert run("generate", "p", "--model", SAOS_TINY, "--duration", "0.5", "--no-progress",
               "-o", "b.wav") == 0
    settings = json.loads(Path("b.json").read_text())["settings"]
    assert settings["sigma_min"] is None and settings["sigma_max"] is None


# -- interrupted writes ---------------------------------------------------------------


def test_sigterm_during_a_write_leaves_nothing(tmp_path, monkeypatch, capsys) -> None:
    import longplay.cli.generate as generate

    target = tmp_path / "x.wav"

    def killed_while_writing(args) -> int:
        with atomic.atomic_output_path(target) as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
        return 0

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(generate, "run_generate", killed_while_writing)
    try:
        assert run("generate", "p", "-o", target) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "terminated" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path) -> None:
    target = tmp_path / "x.wav"
    dead = tmp_path / f".x.wav.tmp-{atomic._HOST}-999999999-abcd1234.wav"
    live = tmp_path / f".x.wav.tmp-{atomic._HOST}-{os.getpid()}-abcd1234.wav"
    old = tmp_path / ".x.wav.tmp-1a2b3c4d.wav"  # an older naming, or another host's
    for path in (dead, live, old):
        path.write_bytes(b"partial")
    os.utime(old, (0, 0))
    with atomic.atomic_output_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "x.wav"])


def test_an_output_and_its_sidecar_appear_together(tmp_path, monkeypatch) -> None:
    """A Ctrl-C arriving between the two moves waits until both are done; a failure
    before them leaves neither."""
    audio, side = tmp_path / "x.wav", tmp_path / "x.json"
    real_replace = os.replace
    calls = []

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        calls.append(Path(dst).name)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(atomic.os, "replace", replace_then_interrupt)
    # Python's own Ctrl-C handler (a test runner's worker process may ignore SIGINT).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), atomic.atomic_output_paths(side,
                                                                          audio) as temps:
            temps[0].write_text("{}")
            temps[1].write_bytes(b"RIFF")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert calls == ["x.json", "x.wav"] and audio.exists() and side.exists()
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    with pytest.raises(RuntimeError, match="encoder failed"), atomic.atomic_output_paths(
            tmp_path / "y.json", tmp_path / "y.wav") as temps:
        temps[0].write_text("{}")
        raise RuntimeError("encoder failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.wav"]


# -- the same default in the HTTP API and the studio ----------------------------------


def test_http_audio_is_normalised_unless_asked_for_raw(sao1) -> None:
    import io

    from fastapi.testclient import TestClient

    from longplay.server import ServerSettings, create_app

    job = {"prompt": "warm piano", "duration_s": 0.5, "num_inference_steps": 2,
           "sampler": "dpmpp-2m", "seed": 3}
    with TestClient(create_app(sao1, ServerSettings())) as client:
        created = client.post("/v1/generations", json=job)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        for _ in range(3000):
            status = client.get(f"/v1/generations/{job_id}").json()["status"]
            if status in ("succeeded", "failed"):
                break
            time.sleep(0.02)
        assert status == "succeeded"
        normal = client.get(f"/v1/generations/{job_id}/audio")
        raw = client.get(f"/v1/generations/{job_id}/audio?normalize=false")
    assert normal.status_code == raw.status_code == 200
    done = json.loads(normal.headers["X-Longplay-Output"])
    assert done["normalized"] and not json.loads(raw.headers["X-Longplay-Output"])["normalized"]
    a, _ = sf.read(io.BytesIO(normal.content), dtype="float32")
    b, _ = sf.read(io.BytesIO(raw.content), dtype="float32")
    assert abs(20 * math.log10(float(np.abs(a).max())) - PEAK_DBFS) < 0.05
    assert np.abs(a.mean(axis=0)).max() < 1e-3
    assert not np.allclose(a, b, atol=1e-3)


def test_studio_files_are_normalised_and_say_so(sao1, tmp_path) -> None:
    from longplay.ui.studio import Studio

    for normalize in (True, False):
        studio = Studio(sao1, "tiny", tmp_path / str(normalize), normalize=normalize)
        results, _ = studio.generate("a calm piano", "", 0.5, 2, 3.0, "dpmpp-2m", 5, False, 1,
                                     None, 1.0)
        audio = load_audio(results[0].audio_path).audio
        assert results[0].settings["output"]["normalized"] is normalize
        if normalize:
            assert abs(20 * math.log10(float(audio.abs().max())) - PEAK_DBFS) < 0.05

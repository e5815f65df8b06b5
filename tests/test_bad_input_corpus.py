"""The bad-input corpus: files, configs, checkpoints, arguments and HTTP payloads that
longplay must refuse. For every case: a non-zero exit (or a 4xx), a message that names
the problem (the option, field, file or value), no traceback, and nothing left behind
(no new file anywhere under the test's folder, no job queued by the server).

Each case is one row of a table. A command-line case builds its bad input in the test's
``in`` folder and gives the ``longplay`` arguments; its outputs go to the ``out`` folder.
Unless a case says ``loads_weights``, the problem must be found before any model
weights load (loading them fails the case)."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import pickle
import shlex
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file
from safetensors.torch import save as safetensors_bytes

from conftest import SAO1_TINY
from longplay.cli.main import main

REPO = Path(__file__).resolve().parents[1]
DEBUG_CONFIGS = REPO / "configs" / "debug"
TEXT_ENCODER = SAO1_TINY / "text_encoder"
RATE = 44100


# -- building bad inputs ----------------------------------------------------------------

def wav_header_bytes(sample_rate: int, channels: int, num_frames: int) -> bytes:
    """A 16-bit PCM WAV file written by hand, so that its header says what we want."""
    block_align = 2 * channels
    data = b"\x00\x01" * (num_frames * channels)
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * block_align,
                      block_align, 16)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def good_wav_bytes(seconds: float = 0.2) -> bytes:
    buffer = io.BytesIO()
    tone = 0.3 * np.sin(np.arange(int(seconds * RATE)) / 10).astype(np.float32)
    sf.write(buffer, np.stack([tone, tone], axis=1), RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def text_as_wav(folder: Path) -> Path:
    path = folder / "notes.wav"
    path.write_text("these are my notes, not audio\n" * 20)
    return path


def zero_byte_wav(folder: Path) -> Path:
    path = folder / "empty.wav"
    path.write_bytes(b"")
    return path


def one_hz_wav(folder: Path) -> Path:
    path = folder / "one_hz.wav"
    path.write_bytes(wav_header_bytes(1, 2, 64))
    return path


def sixteen_channel_wav(folder: Path) -> Path:
    path = folder / "sixteen.wav"
    sf.write(str(path), np.full((2000, 16), 0.1, dtype=np.float32), RATE, subtype="PCM_16")
    return path


def truncated_header_wav(folder: Path) -> Path:
    """The first 30 bytes of a WAV file: cut inside its fmt chunk."""
    path = folder / "cut_header.wav"
    path.write_bytes(good_wav_bytes()[:30])
    return path


def header_without_data_wav(folder: Path) -> Path:
    """A whole RIFF/fmt header and no data chunk at all."""
    path = folder / "no_data.wav"
    path.write_bytes(good_wav_bytes()[:36])
    return path


def directory_as_wav(folder: Path) -> Path:
    path = folder / "folder.wav"
    path.mkdir()
    return path


def missing_wav(folder: Path) -> Path:
    return folder / "missing.wav"


def non_utf8_named_file(folder: Path) -> Path:
    """A text file whose name is not UTF-8 (as on a Latin-1 file system): Python's name
    for it holds a lone surrogate."""
    path = Path(os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9-notes.wav"))
    path.write_text("not audio either\n" * 20)
    return path


BAD_AUDIO: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "text-as-wav": (text_as_wav, ("notes.wav", "not a readable audio file")),
    "zero-bytes": (zero_byte_wav, ("empty.wav", "0 bytes")),
    "header-1hz": (one_hz_wav, ("one_hz.wav", "1 Hz")),
    "16-channels": (sixteen_channel_wav, ("sixteen.wav", "16 channels")),
    "truncated-header": (truncated_header_wav, ("cut_header.wav",)),
    "no-data-chunk": (header_without_data_wav, ("no_data.wav",)),
    "directory": (directory_as_wav, ("folder.wav", "directory")),
    "missing": (missing_wav, ("missing.wav", "not found")),
    "non-utf8-name": (non_utf8_named_file, ("-notes.wav", "not a readable audio file")),
}


def debug_config(stage: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The stage's debug config (its text encoder path made absolute) with ``changes``
    merged in, section by section."""
    config = yaml.safe_load((DEBUG_CONFIGS / f"{stage}.yaml").read_text())
    if "text_encoder_path" in config:
        config["text_encoder_path"] = str(TEXT_ENCODER)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def write_config(folder: Path, text: str) -> Path:
    path = folder / "run.yaml"
    path.write_text(text)
    return path


def model_folder(folder: Path, edit: Callable[[dict], Any] | None = None, *,
                 config_text: str | None = None,
                 weights: Callable[[Path], None] | None = None) -> Path:
    """A copy of the tiny SAO 1.0 fixture: ``edit`` changes its model_config.json (or
    ``config_text`` replaces it), ``weights`` writes its model.safetensors (default: the
    fixture's, linked)."""
    model = folder / "model"
    model.mkdir()
    config = json.loads((SAO1_TINY / "model_config.json").read_text())
    if edit is not None:
        edit(config)
    (model / "model_config.json").write_text(
        json.dumps(config, indent=2) if config_text is None else config_text)
    if weights is None:
        (model / "model.safetensors").symlink_to(SAO1_TINY / "model.safetensors")
    else:
        weights(model / "model.safetensors")
    (model / "text_encoder").symlink_to(TEXT_ENCODER)
    return model


def set_dit_config(key: str, value: Any) -> Callable[[dict], None]:
    def edit(config: dict) -> None:
        config["model"]["diffusion"]["config"][key] = value
    return edit


def set_top(key: str, value: Any) -> Callable[[dict], None]:
    def edit(config: dict) -> None:
        config[key] = value
    return edit


def truncated_weights(path: Path) -> None:
    data = (SAO1_TINY / "model.safetensors").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def nan_weights(path: Path) -> None:
    state = load_file(str(SAO1_TINY / "model.safetensors"))
    name = next(k for k in sorted(state) if k.startswith("model.") and state[k].dim() == 2)
    state[name] = state[name].clone()
    state[name][0, 0] = math.nan
    save_file(state, str(path))


class RunsCode:
    """Pickles as a call of ``os.system(command)``: a checkpoint that would run code when
    unpickled. The test only writes it; longplay must refuse to load it."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


MARKER = "code-ran"
"""The file the malicious checkpoint would create, in the ``out`` folder."""


def run_folder(folder: Path, how: str, out: Path) -> Path:
    """A training run whose checkpoints/last.ckpt is damaged (``truncated``, ``empty``) or
    malicious (``pickled-code``); the run holds no other checkpoint."""
    run = folder / "run"
    (run / "checkpoints").mkdir(parents=True)
    last = run / "checkpoints" / "last.ckpt"
    if how == "pickled-code":
        payload = {"global_step": 1, "longplay": {"stage": "vae"},
                   "payload": RunsCode(f"touch {shlex.quote(str(out / MARKER))}")}
        last.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        buffer = io.BytesIO()
        torch.save({"global_step": 1, "longplay": {"stage": "vae"},
                    "state_dict": {"weight": torch.randn(4096)}}, buffer)
        data = buffer.getvalue()
        last.write_bytes(b"" if how == "empty" else data[: len(data) // 2])
    return run


def adapter_folder(folder: Path, how: str) -> Path:
    adapter = folder / "adapter"
    adapter.mkdir()
    if how == "invalid-json":
        (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", ')
        (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    elif how == "truncated-weights":
        (adapter / "adapter_config.json").write_text(json.dumps(
            {"peft_type": "LORA", "r": 4, "lora_alpha": 4, "target_modules": ["to_q"]}))
        buffer = safetensors_bytes({"base_model.model.x.lora_A.weight": torch.zeros(4, 8)})
        (adapter / "adapter_model.safetensors").write_bytes(buffer[: len(buffer) // 2])
    return adapter  # "empty": a folder without either file


def zero_length_latents(folder: Path) -> Path:
    path = folder / "nothing.safetensors"
    save_file({"latents": torch.zeros(8, 0)}, str(path))
    return path


# -- the command-line cases -------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One bad input: ``build(inputs, outputs)`` writes what it needs under ``inputs``
    and returns the ``longplay`` arguments (outputs go under ``outputs``); ``expect``
    are the substrings of the error that name the problem."""

    id: str
    build: Callable[[Path, Path], list[Any]]
    expect: tuple[str, ...]
    loads_weights: bool = False


def generate(*extra: Any) -> Callable[[Path, Path], list[Any]]:
    return lambda inp, out: ["generate", "a calm piano", "--model", SAO1_TINY, "-o",
                             out / "song.wav", "--steps", "2", "--no-progress", *extra]


def file_cases() -> Iterator[Case]:
    for name, (make, expect) in BAD_AUDIO.items():
        yield Case(f"file-{name}-generate-init-audio",
                   lambda inp, out, make=make: generate("--init-audio", make(inp))(inp, out),
                   expect)
        yield Case(f"file-{name}-extend",
                   lambda inp, out, make=make: ["extend", make(inp), "--seconds", "1",
                                                "--prompt", "more", "--model", SAO1_TINY,
                                                "-o", out / "longer.wav", "--no-progress"],
                   expect)
        yield Case(f"file-{name}-vae-encode",
                   lambda inp, out, make=make: ["vae", "encode", make(inp), "--model",
                                                SAO1_TINY, "-o", out / "latents.safetensors",
                                                "--no-progress"],
                   expect)


CONFIG_CHANGES: list[tuple[str, str | dict[str, Any], tuple[str, ...]]] = [
    # (id, the changes to the debug config or the whole file's text, expected substrings)
    ("yaml-syntax", "trainer: {max_steps: 20\noptimizer: [lr: 1\n", ("run.yaml", "YAML")),
    ("unknown-field", {"trainer": {"max_stpes": 5}}, ("run.yaml", "max_stpes")),
    ("bool-for-int", {"trainer": {"batch_size": True}}, ("run.yaml", "trainer.batch_size")),
    ("checkpoint-every-negative", {"trainer": {"checkpoint_every_n_steps": -2}},
     ("run.yaml", "trainer.checkpoint_every_n_steps", "-2")),
    ("max-steps-zero", {"trainer": {"max_steps": 0}}, ("run.yaml", "trainer.max_steps")),
    ("data-kind-nonsense", {"data": {"kind": "nonsense"}},
     ("run.yaml", "data.kind", "nonsense")),
]


def config_cases() -> Iterator[Case]:
    for stage in ("vae", "clap", "dit"):
        for name, change, expect in CONFIG_CHANGES:
            def build(inp: Path, out: Path, stage=stage, change=change) -> list[Any]:
                text = (change if isinstance(change, str)
                        else yaml.safe_dump(debug_config(stage, change)))
                (inp / "audio").mkdir()
                return ["train", stage, write_config(inp, text), "--data", inp / "audio",
                        "-o", out / "run", "--no-progress"]
            yield Case(f"config-{stage}-{name}", build, expect)


MODEL_CONFIGS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("sample-rate-bool", {"edit": set_top("sample_rate", True)}, ("sample_rate", "True")),
    ("sample-rate-fraction", {"edit": set_top("sample_rate", 44100.9)},
     ("sample_rate", "44100.9")),
    ("num-heads-zero", {"edit": set_dit_config("num_heads", 0)}, ("num_heads",)),
    ("sample-size-negative", {"edit": set_top("sample_size", -5)}, ("sample_size", "-5")),
    ("mono-config-stereo-weights", {"edit": set_top("audio_channels", 1)},
     ("audio_channels",)),
    ("invalid-json", {"config_text": '{"model_type": "diffusion_cond", '},
     ("model_config.json",)),
]


def model_config_cases() -> Iterator[Case]:
    for name, spec, expect in MODEL_CONFIGS:
        yield Case(f"model-config-{name}-generate",
                   lambda inp, out, spec=spec: generate("--model", model_folder(inp, **spec))(
                       inp, out),
                   ("model_config.json", *expect))
        yield Case(f"model-config-{name}-info",
                   lambda inp, out, spec=spec: ["info", model_folder(inp, **spec)],
                   ("model_config.json", *expect))


def checkpoint_cases() -> Iterator[Case]:
    expect = {"truncated": ("last.ckpt", "damaged"), "empty": ("last.ckpt", "0 bytes"),
              "pickled-code": ("last.ckpt", "unsafe", "posix.system")}
    for how, words in expect.items():
        yield Case(f"checkpoint-{how}-export",
                   lambda inp, out, how=how: ["export", run_folder(inp, how, out), "-o",
                                              out / "model"],
                   words)

        def resume(inp: Path, out: Path, how=how) -> list[Any]:
            (inp / "audio").mkdir()
            return ["train", "vae", DEBUG_CONFIGS / "vae.yaml", "--data", inp / "audio",
                    "-o", run_folder(inp, how, out), "--resume", "--no-progress"]
        yield Case(f"checkpoint-{how}-resume", resume, (*words, "--resume"))
    for command in ("generate", "info"):
        for name, weights, words in (("truncated", truncated_weights, ("model.safetensors",)),
                                     ("nan", nan_weights, ("model.safetensors", "NaN"))):
            def build(inp: Path, out: Path, command=command, weights=weights) -> list[Any]:
                model = model_folder(inp, weights=weights)
                return (["info", model] if command == "info"
                        else generate("--model", model)(inp, out))
            yield Case(f"model-weights-{name}-{command}", build, words, loads_weights=True)
    for how, words in (("empty", ("adapter_config.json", "not an adapter folder")),
                       ("invalid-json", ("adapter_config.json", "JSON")),
                       ("truncated-weights", ("adapter_model.safetensors",))):
        yield Case(f"adapter-{how}-generate",
                   lambda inp, out, how=how: generate("--lora", adapter_folder(inp, how))(
                       inp, out),
                   words)
    yield Case("adapter-missing-generate",
               lambda inp, out: generate("--lora", inp / "no-such-adapter")(inp, out),
               ("no-such-adapter",))


ARGUMENT_CASES = [
    Case("args-steps-zero", generate("--steps", "0"), ("--steps",)),
    Case("args-steps-billion", generate("--steps", "1000000000"), ("--steps",)),
    Case("args-num-outputs-million", generate("--num-outputs", "1000000"), ("--num-outputs",)),
    Case("args-duration-99999", generate("--duration", "99999"), ("--duration",)),
    Case("args-seconds-start-600", generate("--seconds-start", "600"), ("--seconds-start",)),
    Case("args-seconds-total-600", generate("--seconds-total", "600"), ("--seconds-total",)),
    Case("args-empty-prompt",
         lambda inp, out: ["generate", "", "--model", SAO1_TINY, "-o", out / "song.wav"],
         ("prompt is empty",)),
    Case("args-undecodable-prompt",
         lambda inp, out: ["generate", "piano \udcff", "--model", SAO1_TINY, "-o",
                           out / "song.wav"],
         ("prompt", "not valid text")),
    Case("args-format-misfits-extension", generate("--format", "flac"),
         ("format 'flac'", "song.wav")),
    Case("args-output-folder-missing",
         lambda inp, out: ["generate", "a calm piano", "--model", SAO1_TINY, "-o",
                           out / "no-such-folder" / "song.wav"],
         ("no-such-folder", "does not exist")),
    Case("args-device-cuda9", generate("--device", "cuda:9"), ("cuda:9",)),
    Case("args-train-max-steps-negative",
         lambda inp, out: ["train", "vae", DEBUG_CONFIGS / "vae.yaml", "-o", out / "run",
                           "--max-steps", "-5"],
         ("--max-steps", "-5")),
    Case("args-train-devices-zero",
         lambda inp, out: ["train", "vae", DEBUG_CONFIGS / "vae.yaml", "-o", out / "run",
                           "--devices", "0"],
         ("--devices", "0")),
    Case("args-vae-decode-zero-length-latents",
         lambda inp, out: ["vae", "decode", zero_length_latents(inp), "--model", SAO1_TINY,
                           "-o", out / "audio.wav", "--no-progress"],
         ("nothing.safetensors", "no frames")),
]

CLI_CASES = [*file_cases(), *config_cases(), *model_config_cases(), *checkpoint_cases(),
             *ARGUMENT_CASES]


@pytest.fixture
def weights_refused(monkeypatch) -> None:
    """Loading any model's weights, or starting to train, fails the case."""
    import lightning.pytorch as lightning

    import longplay.checkpoints.diffusion as diffusion
    import longplay.cli.vae as vae_cli
    from longplay.pipelines import TextToMusicPipeline

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded (or training began) before the bad input "
                             "was found")

    monkeypatch.setattr(diffusion, "read_state_dict", refuse)
    monkeypatch.setattr(vae_cli, "_load_model", refuse)
    monkeypatch.setattr(TextToMusicPipeline, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(lightning.Trainer, "fit", refuse)


def snapshot(root: Path) -> set[str]:
    return {os.fsencode(str(p.relative_to(root))).decode("utf-8", "backslashreplace")
            for p in root.rglob("*")}


def run_cli(argv: list[Any], monkeypatch) -> tuple[int, str]:
    """``longplay ARGV`` in this process: (exit code, stderr). stderr is captured as
    Python's own sys.stderr encodes it (UTF-8, unencodable text backslash-escaped), which
    pytest's capsys does not: a file name that is not UTF-8 must reach the user."""
    buffer = io.BytesIO()
    stderr = io.TextIOWrapper(buffer, encoding="utf-8", errors="backslashreplace",
                              write_through=True)
    monkeypatch.setattr(sys, "stderr", stderr)
    try:
        code = main([a if isinstance(a, str) else os.fspath(a) for a in argv])
    except SystemExit as exit_:  # argparse's errors
        code = exit_.code
    except BaseException as err:  # what the user would see as a traceback
        monkeypatch.undo()
        pytest.fail(f"uncaught {type(err).__name__}: {err}")
    stderr.flush()
    return code, buffer.getvalue().decode("utf-8")


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_bad_command_line_input_is_refused_by_name_and_leaves_nothing(
        case: Case, tmp_path: Path, monkeypatch, request) -> None:
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    argv = case.build(inputs, outputs)
    if not case.loads_weights:
        request.getfixturevalue("weights_refused")
    monkeypatch.chdir(outputs)  # whatever a command writes by a relative path lands here
    before = snapshot(tmp_path)
    code, err = run_cli(argv, monkeypatch)
    assert code not in (0, None), f"exit code {code}; stderr: {err}"
    assert "Traceback" not in err, err
    assert "error" in err, err
    for words in case.expect:
        assert words in err, f"{words!r} not in the error: {err}"
    assert not (outputs / MARKER).exists(), "the checkpoint's pickled code ran"
    assert snapshot(tmp_path) == before, "files were left behind"


# -- the HTTP cases ---------------------------------------------------------------------

JOB = {"prompt": "warm lo-fi piano", "duration_s": 0.5, "num_inference_steps": 2, "seed": 3}
MAX_BODY_BYTES = 64 * 1024


class Recorded:
    """A pipeline that records its calls and delegates the rest to the tiny pipeline."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, settings, **kwargs: Any):
        self.calls += 1
        return self.inner(settings, **kwargs)


@pytest.fixture(scope="module")
def tiny_pipeline():
    from longplay.pipelines import TextToMusicPipeline

    return TextToMusicPipeline.from_pretrained(SAO1_TINY)


@pytest.fixture
def server(tiny_pipeline) -> Iterator[tuple[TestClient, Recorded]]:
    """A fresh server per case (so that a case which wrongly queues a job cannot fail the
    next), over the one tiny pipeline."""
    from longplay.server import ServerSettings, create_app

    pipeline = Recorded(tiny_pipeline)
    app = create_app(pipeline, ServerSettings(max_body_bytes=MAX_BODY_BYTES))
    with TestClient(app) as client:
        yield client, pipeline


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def as_json(body: dict[str, Any]) -> bytes:
    """JSON as a JavaScript client may send it: text that is not valid Unicode (a lone
    surrogate) written as a \\uXXXX escape."""
    return json.dumps(body).encode()


@dataclass(frozen=True)
class HTTPCase:
    id: str
    body: bytes
    status: int
    expect: tuple[str, ...]


HTTP_CASES = [
    HTTPCase("http-not-utf8", b'{"prompt": "caf\xe9 au lait"}', 422, ("UTF-8", "offset 15")),
    HTTPCase("http-malformed-json", b'{"prompt": "x", ', 422, ("body", "JSON")),
    HTTPCase("http-not-an-object", b"[1, 2]", 422, ("body",)),
    HTTPCase("http-steps-true", as_json({**JOB, "num_inference_steps": True}), 422,
             ("num_inference_steps", "true")),
    HTTPCase("http-num-outputs-1000", as_json({**JOB, "num_outputs": 1000}), 422,
             ("num_outputs",)),
    HTTPCase("http-empty-prompt", as_json({**JOB, "prompt": ""}), 422, ("prompt",)),
    HTTPCase("http-lone-surrogate", as_json({**JOB, "prompt": "piano \ud800"}), 422,
             ("prompt", "surrogate")),
    HTTPCase("http-init-audio-not-base64", as_json({**JOB, "init_audio_b64": "not base64!"}),
             422, ("init_audio_b64", "base64")),
    HTTPCase("http-init-audio-not-audio",
             as_json({**JOB, "init_audio_b64": b64(b"these are my notes, not audio")}), 422,
             ("init_audio_b64",)),
    HTTPCase("http-init-audio-header-1hz",
             as_json({**JOB, "init_audio_b64": b64(wav_header_bytes(1, 2, 64))}), 422,
             ("init_audio_b64", "1 Hz")),
    HTTPCase("http-init-audio-16-channels",
             as_json({**JOB, "init_audio_b64": b64(wav_header_bytes(RATE, 16, 64))}), 422,
             ("init_audio_b64", "16 channels")),
    HTTPCase("http-unknown-field", as_json({**JOB, "steps": 4}), 422, ("steps",)),
    HTTPCase("http-body-over-limit",
             as_json({**JOB, "init_audio_b64": "A" * (MAX_BODY_BYTES + 1)}), 413,
             (str(MAX_BODY_BYTES), "limit")),
]


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.id for c in HTTP_CASES])
def test_bad_http_payloads_are_refused_by_name_and_queue_nothing(case: HTTPCase,
                                                                 server) -> None:
    client, pipeline = server
    response = client.post("/v1/generations", content=case.body,
                           headers={"content-type": "application/json"})
    assert response.status_code == case.status, response.text
    detail = response.json()["detail"]
    assert "Traceback" not in response.text
    for words in case.expect:
        assert words in detail, f"{words!r} not in the error: {detail}"
    assert client.get("/v1/health").json()["queue"] == {"length": 0, "capacity": 16,
                                                         "running": 0}
    assert pipeline.calls == 0

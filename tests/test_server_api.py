"""The HTTP API end to end with FastAPI's TestClient and the tiny random-weight model."""

from __future__ import annotations

import base64
import io
import json
import re
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient
from starlette.routing import Mount

from conftest import SAO1_TINY, SAOS_TINY
from longplay.audio import normalize_output
from longplay.pipelines import GenerationError, GenerationSettings, TextToMusicPipeline
from longplay.server import GenerationRequest, ServerSettings, create_app
from longplay.server.settings import PUBLIC_PATHS

# Small and fast: 2 deterministic steps over half a second.
JOB = {"prompt": "warm lo-fi piano", "duration_s": 0.5, "num_inference_steps": 2,
       "sampler": "dpmpp-2m", "seed": 3}
FINISHED = ("succeeded", "failed")


@pytest.fixture(scope="module")
def tiny() -> TextToMusicPipeline:
    return TextToMusicPipeline.from_pretrained(SAO1_TINY)


class Wrapped:
    """A pipeline stand-in that delegates everything to a real pipeline."""

    def __init__(self, inner: TextToMusicPipeline) -> None:
        self.inner = inner
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, settings: GenerationSettings, **kwargs: Any):
        self.calls.append({"settings": settings, **kwargs})
        return self.inner(settings, **kwargs)


class Gated(Wrapped):
    """Every call waits until ``gate`` is set, so tests can hold a job in 'running'."""

    def __init__(self, inner: TextToMusicPipeline) -> None:
        super().__init__(inner)
        self.gate = threading.Event()

    def __call__(self, settings: GenerationSettings, **kwargs: Any):
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        return super().__call__(settings, **kwargs)


class FailOn(Wrapped):
    """Raises a chosen exception for chosen prompts."""

    def __init__(self, inner: TextToMusicPipeline, errors: dict[str, Exception]) -> None:
        super().__init__(inner)
        self.errors = errors

    def __call__(self, settings: GenerationSettings, **kwargs: Any):
        if settings.prompts[0] in self.errors:
            raise self.errors[settings.prompts[0]]
        return super().__call__(settings, **kwargs)


@contextmanager
def serve(pipeline, **settings: Any) -> Iterator[TestClient]:
    with TestClient(create_app(pipeline, ServerSettings(**settings))) as client:
        yield client


def wait_for(client: TestClient, job_id: str, statuses: tuple[str, ...] = FINISHED,
             timeout_s: float = 30.0, headers: dict[str, str] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(f"/v1/generations/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"job stuck in {body['status']}"
        time.sleep(0.02)


def submit(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/generations", json={**JOB, **overrides})
    assert response.status_code == 202, response.text
    return response.json()


def fields(response) -> list[str]:
    return [error["field"] for error in response.json()["errors"]]


def wav_b64(audio: np.ndarray, sample_rate: int, file_format: str = "WAV") -> str:
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format=file_format, subtype="PCM_16")
    return base64.b64encode(buffer.getvalue()).decode()


# -- the happy path -------------------------------------------------------------------------


def test_generation_is_queued_then_succeeds_with_decodable_audio(tiny):
    with serve(tiny, model_name="tiny") as client:
        response = client.post("/v1/generations", json={**JOB, "num_outputs": 2})
        assert response.status_code == 202
        accepted = response.json()
        assert accepted["status"] == "queued" and accepted["queue_position"] == 1
        assert response.headers["location"] == f"/v1/generations/{accepted['id']}"
        assert accepted["settings"]["seeds"] == [3, 4]
        assert accepted["audio_url"] is None

        done = wait_for(client, accepted["id"])
        assert done["status"] == "succeeded", done["error"]
        assert done["progress"] == {"fraction": 1.0, "stage": "decoding", "done": 1, "total": 1}
        assert done["created_at"] <= done["started_at"] <= done["finished_at"]
        assert done["num_samples"] == 22050 and done["sample_rate"] == 44100
        assert done["settings"]["num_inference_steps"] == 2
        assert done["settings"]["sampler"] == "dpmpp-2m"

        decoded = {}
        for audio_format, media in (("wav", "audio/wav"), ("flac", "audio/flac")):
            for index in (0, 1):
                got = client.get(f"{done['audio_url']}?format={audio_format}&index={index}")
                assert got.status_code == 200
                assert got.headers["content-type"] == media
                data, rate = sf.read(io.BytesIO(got.content), dtype="float32", always_2d=True)
                assert rate == 44100 and data.shape == (22050, 2)
                decoded[audio_format, index] = data
        assert np.array_equal(decoded["wav", 1], decoded["flac", 1])  # both lossless 16-bit
        assert not np.array_equal(decoded["wav", 0], decoded["wav", 1])  # seeds 3 and 4

    # The reported settings reproduce the audio (up to 16-bit rounding).
    s = done["settings"]
    again = tiny(s["prompts"][0], duration_s=s["duration_s"], num_inference_steps=2,
                 sampler=s["sampler"], guidance_scale=s["guidance_scale"], seed=s["seeds"][0],
                 num_outputs=s["num_outputs"])
    expected = normalize_output(again.audio[1], 44100)[0].T.numpy()  # the default download
    assert np.abs(decoded["wav", 1] - expected).max() <= 2 / 32768


def test_seed_is_drawn_and_reported_when_not_given(tiny):
    with serve(tiny) as client:
        accepted = submit(client, seed=None)
        seed = accepted["settings"]["seeds"][0]
        assert isinstance(seed, int) and seed >= 0
        assert wait_for(client, accepted["id"])["settings"]["seeds"] == [seed]


def test_defaults_come_from_the_model_and_the_limits(tiny):
    with serve(tiny, max_duration_s=0.25, max_steps=3) as client:
        accepted = client.post("/v1/generations", json={"prompt": "drums"}).json()
        s = accepted["settings"]
        assert s["duration_s"] == 0.25 and s["seconds_total"] == 0.25
        assert s["num_inference_steps"] == 3  # the model's 100, capped by max_steps
        assert s["sampler"] == "dpmpp-3m-sde" and s["guidance_scale"] == 7.0
        assert wait_for(client, accepted["id"])["num_samples"] == round(0.25 * 44100)


def test_audio_to_audio_from_base64_wav_and_flac(tiny):
    t = np.arange(11025) / 22050
    mono = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # 0.5 s at 22.05 kHz, mono
    with serve(tiny) as client:
        for file_format in ("WAV", "FLAC"):
            accepted = submit(client, init_audio_b64=wav_b64(mono, 22050, file_format),
                              init_noise_level=2.0)
            done = wait_for(client, accepted["id"])
            assert done["status"] == "succeeded", done["error"]
            assert done["settings"]["has_init_audio"] is True
            assert done["settings"]["init_noise_level"] == 2.0
        # A setting the pipeline itself refuses (no audio-to-audio with v-ddim) is refused at
        # submission with the pipeline's reason, and the server keeps serving.
        refused = client.post("/v1/generations", json={
            **JOB, "sampler": "v-ddim", "init_audio_b64": wav_b64(mono, 22050)})
        assert refused.status_code == 422 and fields(refused) == ["sampler"]
        assert "v-ddim" in refused.json()["detail"]
        assert wait_for(client, submit(client)["id"])["status"] == "succeeded"


def test_init_audio_is_decoded_to_the_models_rate_and_channels(tiny):
    wrapped = Wrapped(tiny)
    mono = np.full(2205, 0.25, dtype=np.float32)  # 0.1 s at 22.05 kHz
    wrapped_b64 = "\n".join(textwrap.wrap(wav_b64(mono, 22050), 76))  # as `base64` prints it
    with serve(wrapped) as client:
        assert wait_for(client, submit(client, init_audio_b64=wrapped_b64)["id"])["error"] is None
    init_audio = wrapped.calls[0]["init_audio"]
    assert init_audio.shape == (2, 4410)
    assert torch.allclose(init_audio[:, 500:-500], torch.tensor(0.25), atol=2e-3)


# -- errors ---------------------------------------------------------------------------------


def test_unknown_id_is_404(tiny):
    with serve(tiny) as client:
        for path in ("/v1/generations/nope", "/v1/generations/nope/audio"):
            response = client.get(path)
            assert response.status_code == 404
            assert "nope" in response.json()["detail"] and response.json()["errors"] == []


SINE_B64 = wav_b64((0.3 * np.sin(np.arange(4410) / 10)).astype(np.float32), 22050)


@pytest.mark.parametrize(("body", "field"), [
    ({**JOB, "duration_s": 5.0}, "duration_s"),  # beyond the 2.97 s window
    ({**JOB, "duration_s": 1.5}, "duration_s"),  # beyond this server's max_duration_s
    ({**JOB, "duration_s": 0}, "duration_s"),
    ({**JOB, "num_inference_steps": -1}, "num_inference_steps"),
    ({**JOB, "num_inference_steps": 51}, "num_inference_steps"),
    ({**JOB, "sampler": "nope"}, "sampler"),
    ({**JOB, "sampler": "pingpong"}, "sampler"),  # a rectified-flow sampler, a v model
    ({**JOB, "num_outputs": 0}, "num_outputs"),
    ({**JOB, "num_outputs": 3}, "num_outputs"),
    ({**JOB, "guidance_scale": 0}, "guidance_scale"),
    ({**JOB, "seconds_start": -1}, "seconds_start"),
    ({**JOB, "sigma_min": 600.0}, "sigma_max"),
    ({**JOB, "seed": -1}, "seed"),
    ({**JOB, "seed": 2**63 - 1, "num_outputs": 2}, "seed"),
    ({**JOB, "init_noise_level": 0.5}, "init_noise_level"),
    ({**JOB, "init_audio_b64": "not base64!"}, "init_audio_b64"),
    ({**JOB, "init_audio_b64": base64.b64encode(b"RIFF but not audio").decode()},
     "init_audio_b64"),
    ({**JOB, "prompt": "   "}, "prompt"),
    ({**JOB, "prompt": "x" * 101}, "prompt"),
    ({**JOB, "negative_prompt": "x" * 101}, "negative_prompt"),
    ({k: v for k, v in JOB.items() if k != "prompt"}, "prompt"),
    ({**JOB, "steps": 4}, "steps"),  # unknown fields are refused, not ignored
    # What only the pipeline knows is refused at submission too.
    ({**JOB, "sampler": "v-ddim", "init_audio_b64": SINE_B64}, "sampler"),
    ({**JOB, "init_audio_b64": SINE_B64, "init_noise_level": 600.0}, "init_noise_level"),
    ({**JOB, "init_audio_b64": SINE_B64, "init_noise_level": 0.01}, "init_noise_level"),
    ({**JOB, "sampler": "dpmpp"}, "sampler"),  # a flow models' name, not a v model's
    ({**JOB, "window": "half"}, "window"),
    ({**JOB, "seconds_total": 0}, "seconds_total"),
    ({**JOB, "sigma_min": 0.5, "sigma_max": 0.5}, "sigma_max"),
    ({**JOB, "guidance_interval": [5.0, 1.0]}, "guidance_interval"),
    ({**JOB, "unguided_final_steps": 50}, "unguided_final_steps"),
])
def test_invalid_requests_are_422_naming_the_field_and_never_queued(tiny, body, field):
    wrapped = Wrapped(tiny)
    with serve(wrapped, max_duration_s=1.0, max_steps=50, max_outputs=2,
               max_prompt_chars=100) as client:
        response = client.post("/v1/generations", json=body)
        assert response.status_code == 422, response.text
        assert field in fields(response)
        assert response.json()["detail"].startswith(f"{field}: ")
        assert client.get("/v1/health").json()["queue"] == {"length": 0, "capacity": 16,
                                                             "running": 0}
    assert wrapped.calls == []


def test_guidance_interval_reaches_the_pipeline(tiny):
    wrapped = Wrapped(tiny)
    with serve(wrapped) as client:
        done = wait_for(client, submit(client, num_inference_steps=4, duration_s=0.5,
                                       guidance_interval=[0.5, 100.0],
                                       unguided_final_steps=1)["id"])
        assert done["status"] == "succeeded"
        assert done["settings"]["guidance_interval"] == [0.5, 100.0]
        assert done["settings"]["unguided_final_steps"] == 1


def test_flow_models_take_stable_audio_tools_sampler_names():
    saos = TextToMusicPipeline.from_pretrained(SAOS_TINY)
    with serve(saos) as client:
        assert "euler" in client.get("/v1/health").json()["model"]["samplers"]
        done = wait_for(client, submit(client, sampler="euler", num_inference_steps=2,
                                       duration_s=0.5)["id"])
        assert done["status"] == "succeeded" and done["settings"]["sampler"] == "rf-euler"


@pytest.mark.parametrize(("content", "field"), [
    ('{"prompt": "x", "duration_s": NaN}', "duration_s"),
    ('{"prompt": "x", ', "body"),
    ("[1, 2]", "body"),
])
def test_malformed_json_is_422(tiny, content, field):
    with serve(tiny) as client:
        response = client.post("/v1/generations", content=content,
                               headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert field in fields(response)


def refused_without_a_trace(wrapped: Wrapped, client: TestClient, response) -> str:
    """The 422's message, after checking that the refused request reached no pipeline and
    left nothing queued (the server writes no files: a job's audio lives in memory)."""
    assert response.status_code == 422, response.text
    assert wrapped.calls == []
    assert client.get("/v1/health").json()["queue"] == {"length": 0, "capacity": 16,
                                                         "running": 0}
    return response.json()["detail"]


@pytest.mark.parametrize(("content", "offset"), [
    (b'{"prompt": "caf\xe9 au lait"}', 15),  # Latin-1, not UTF-8
    (b'{"prompt": "x"}\xff', 15),
    (b'{"prompt": "x", "negative_prompt": "\xc3\x28"}', 36),  # a broken 2-byte sequence
])
def test_a_body_that_is_not_utf8_is_422_saying_where(tiny, content, offset):
    wrapped = Wrapped(tiny)
    with serve(wrapped) as client:
        response = client.post("/v1/generations", content=content,
                               headers={"content-type": "application/json"})
        detail = refused_without_a_trace(wrapped, client, response)
        assert fields(response) == ["body"]
        assert "not valid UTF-8 JSON" in detail and f"offset {offset}" in detail
        assert client.post("/v1/generations", json=JOB).status_code == 202  # still serving


@pytest.mark.parametrize(("extra", "field"), [
    ({"prompt": "lo-fi \ud800 piano"}, "prompt"),
    ({"negative_prompt": "\udfff"}, "negative_prompt"),
    ({"sections": [[0.2, "drums \udc00"]]}, "sections.0.1"),
    ({"adapters": [{"name": "a\ud83d"}]}, "adapters.0.name"),
])
def test_text_with_a_lone_surrogate_is_422_naming_the_field(tiny, extra, field):
    # json.dumps writes the lone surrogate as a \uXXXX escape, as a JavaScript client may.
    wrapped = Wrapped(tiny)
    with serve(wrapped) as client:
        response = client.post("/v1/generations", content=json.dumps({**JOB, **extra}),
                               headers={"content-type": "application/json"})
        detail = refused_without_a_trace(wrapped, client, response)
        assert fields(response) == [field]
        assert detail.startswith(f"{field}: is not valid Unicode") and "surrogate" in detail
        # A proper pair (an emoji) is text like any other.
        assert client.post("/v1/generations", json={**JOB, "prompt": "piano \U0001f3b9"}
                           ).status_code == 202


def _request_fields_of_type(*json_types: str) -> list[str]:
    """The request's fields whose JSON type (or a member of its union) is one of these."""
    properties = GenerationRequest.model_json_schema()["properties"]
    return sorted(name for name, schema in properties.items()
                  if {s.get("type") for s in schema.get("anyOf", [schema])} & set(json_types))


NUMBER_FIELDS = _request_fields_of_type("integer", "number")
FLAG_FIELDS = _request_fields_of_type("boolean")


def test_every_number_and_flag_field_is_found():
    assert {"num_inference_steps", "seed", "duration_s", "guidance_scale",
            "unguided_final_steps"} <= set(NUMBER_FIELDS)
    assert FLAG_FIELDS == ["loop", "splice"]


@pytest.mark.parametrize(("extra", "field", "message"), [
    *(({name: True}, name, "got true") for name in NUMBER_FIELDS),
    *(({name: 1}, name, "must be true or false, got 1") for name in FLAG_FIELDS),
    ({"num_inference_steps": "2"}, "num_inference_steps", 'must be an integer, got "2"'),
    ({"num_inference_steps": 2.5}, "num_inference_steps", "must be an integer, got 2.5"),
    ({"guidance_scale": "7"}, "guidance_scale", 'must be a number, got "7"'),
    ({"guidance_interval": [True, 20.0]}, "guidance_interval.0", "must be a number"),
    ({"inpaint_regions": [[0.1, False]]}, "inpaint_regions.0.1", "must be a number"),
    ({"sections": [[True, "drums"]]}, "sections.0.0", "must be a number"),
    ({"adapters": [{"name": "x", "scale": True}]}, "adapters.0.scale", "must be a number"),
])
def test_numbers_and_flags_take_only_their_json_type(tiny, extra, field, message):
    wrapped = Wrapped(tiny)
    with serve(wrapped) as client:
        response = client.post("/v1/generations", json={**JOB, **extra})
        detail = refused_without_a_trace(wrapped, client, response)
        assert fields(response) == [field]
        assert detail.startswith(f"{field}: ") and message in detail


def test_integers_are_numbers(tiny):
    with serve(tiny) as client:
        done = wait_for(client, submit(client, guidance_scale=3, duration_s=1)["id"])
    assert done["status"] == "succeeded" and done["settings"]["guidance_scale"] == 3.0


RIFF_WITHOUT_DATA = (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00"
                     b"\x44\xac\x00\x00\x10\xb1\x02\x00\x04\x00\x10\x00")


@pytest.mark.parametrize("field", ["init_audio_b64", "inpaint_audio_b64"])
@pytest.mark.parametrize("raw", [b"RIFF but not audio", RIFF_WITHOUT_DATA, b"fLaC\x00\x00"])
def test_unreadable_audio_is_422_in_plain_words(tiny, field, raw):
    wrapped = Wrapped(tiny)
    with serve(wrapped) as client:
        response = client.post("/v1/generations",
                               json={**JOB, field: base64.b64encode(raw).decode()})
        detail = refused_without_a_trace(wrapped, client, response)
    assert fields(response) == [field]
    assert detail.startswith(f"{field}: is not a readable WAV or FLAC file (")
    assert " at 0x" not in detail and "<" not in detail  # no object's repr


def test_audio_format_and_index_are_validated(tiny):
    with serve(tiny) as client:
        done = wait_for(client, submit(client)["id"])
        response = client.get(f"{done['audio_url']}?format=mp3")
        assert response.status_code == 422
        assert fields(response) == ["format"] and "wav" in response.json()["detail"]
        response = client.get(f"{done['audio_url']}?index=1")
        assert response.status_code == 422 and fields(response) == ["index"]
        assert client.get(f"{done['audio_url']}?index=-1").status_code == 422


def test_body_over_the_limit_is_413_with_or_without_content_length(tiny):
    limit = 4096
    with serve(tiny, max_body_bytes=limit) as client:
        big = {**JOB, "init_audio_b64": "A" * limit}
        response = client.post("/v1/generations", json=big)
        assert response.status_code == 413
        assert str(limit) in response.json()["detail"]

        def chunks() -> Iterator[bytes]:
            yield b'{"prompt": "x", "init_audio_b64": "'
            for _ in range(8):
                yield b"A" * 1024
            yield b'"}'

        response = client.post("/v1/generations", content=chunks(),
                               headers={"content-type": "application/json"})
        assert "content-length" not in response.request.headers
        assert response.status_code == 413 and "limit" in response.json()["detail"]
        # Just under the limit is read (and then judged on its content).
        response = client.post("/v1/generations", json={**JOB, "init_audio_b64": "A" * 3000})
        assert response.status_code == 422 and fields(response) == ["init_audio_b64"]


def test_full_queue_is_429_and_unfinished_audio_is_409(tiny):
    gated = Gated(tiny)
    with serve(gated, queue_size=2, retry_after_s=7) as client:
        running = submit(client)
        wait_for(client, running["id"], statuses=("running",))
        queued = [submit(client) for _ in range(2)]
        assert [q["queue_position"] for q in queued] == [1, 2]
        assert client.get(f"/v1/generations/{queued[1]['id']}").json()["queue_position"] == 2

        refused = client.post("/v1/generations", json=JOB)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "7"
        assert "full" in refused.json()["detail"]
        assert client.get("/v1/health").json()["queue"] == {"length": 2, "capacity": 2,
                                                             "running": 1}
        for job in (running, queued[0]):
            response = client.get(f"/v1/generations/{job['id']}/audio")
            assert response.status_code == 409
            assert "not ready" in response.json()["detail"]

        gated.gate.set()
        for job in (running, *queued):
            assert wait_for(client, job["id"])["status"] == "succeeded"
        # Drained: the queue takes jobs again.
        assert wait_for(client, submit(client)["id"])["status"] == "succeeded"
    assert len(gated.calls) == 4


def test_failing_generations_are_reported_and_the_server_keeps_serving(tiny):
    failing = FailOn(tiny, {
        "silence": GenerationError("output(s) [0] are silent (peak below 1e-06)"),
        "bad": ValueError("guidance_scale must be > 0"),
        "crash": RuntimeError("CUDA out of memory"),
    })
    with serve(failing) as client:
        for prompt, reason in (("silence", "output(s) [0] are silent"),
                               ("bad", "guidance_scale must be > 0"),
                               ("crash", "internal error (RuntimeError): CUDA out of memory")):
            failed = wait_for(client, submit(client, prompt=prompt)["id"])
            assert failed["status"] == "failed"
            assert failed["error"].startswith(reason)
            assert failed["finished_at"] is not None and failed["audio_url"] is None
            audio = client.get(f"/v1/generations/{failed['id']}/audio")
            assert audio.status_code == 409 and reason in audio.json()["detail"]
        ok = wait_for(client, submit(client)["id"])
        assert ok["status"] == "succeeded" and ok["error"] is None
        assert client.get("/v1/health").json()["status"] == "ok"


def test_api_key_guards_everything_but_health(tiny):
    key = "s3cret-key"
    with serve(tiny, api_key=key) as client:
        health = client.get("/v1/health")
        assert health.status_code == 200 and health.json()["auth_required"] is True

        refused = client.post("/v1/generations", json=JOB)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "API key" in refused.json()["detail"]
        for headers in ({"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"},
                        {"Authorization": f"Basic {key}"}):
            assert client.post("/v1/generations", json=JOB, headers=headers).status_code == 401

        accepted = client.post("/v1/generations", json=JOB,
                               headers={"Authorization": f"Bearer {key}"})
        assert accepted.status_code == 202
        job_id = accepted.json()["id"]
        for path in (f"/v1/generations/{job_id}", f"/v1/generations/{job_id}/audio",
                     "/v1/generations/nope"):
            assert client.get(path).status_code == 401
        done = wait_for(client, job_id, headers={"X-API-Key": key})
        assert done["status"] == "succeeded"
        audio = client.get(done["audio_url"], headers={"X-API-Key": key})
        assert audio.status_code == 200

        schema = client.get("/openapi.json").json()
        assert {"HTTPBearer", "APIKeyHeader"} <= set(schema["components"]["securitySchemes"])


def test_the_key_guards_every_path_but_the_public_ones(tiny):
    """What the server answers without the key agrees with PUBLIC_PATHS, which the help
    of --api-key lists: every route of the app is either public or refused."""
    key = "s3cret-key"
    app = create_app(tiny, ServerSettings(api_key=key))

    def public(path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)

    with TestClient(app) as client:
        # The API's operations (its schema lists them all), and what the app serves
        # besides: the schema, the docs pages and their files.
        operations = {(method.upper(), path)
                      for path, item in client.get("/openapi.json").json()["paths"].items()
                      for method in item}
        for route in app.routes:
            if isinstance(route, Mount):
                operations.add(("GET", route.path + "/swagger-ui-bundle.js"))
            elif hasattr(route, "path"):
                operations |= {(m, route.path) for m in route.methods - {"HEAD"}}
        checked = set()
        for method, route_path in sorted(operations):
            path = route_path.replace("{job_id}", "nope")
            response = client.request(method, path)
            if public(path):
                assert response.status_code == 200, (method, path)
            else:
                assert response.status_code == 401, (method, path)
                assert client.request(method, path, headers={"X-API-Key": key}
                                      ).status_code != 401
            checked.add((method, route_path, public(path)))
    assert {("GET", "/docs", True), ("GET", "/openapi.json", True), ("GET", "/redoc", True),
            ("GET", "/v1/health", True), ("POST", "/v1/generations", False),
            ("GET", "/v1/adapters", False)} <= checked


def test_docs_pages_load_nothing_from_elsewhere(tiny):
    with serve(tiny) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            assert "http://" not in html and "https://" not in html, page
            links = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert links and all(link.startswith("/docs/assets/") for link in links), links
            for link in links:
                assert client.get(link).status_code == 200, link
        script = client.get("/docs/assets/swagger-ui-bundle.js")
        assert "javascript" in script.headers["content-type"] and len(script.content) > 100_000


def test_health_describes_model_queue_and_limits(tiny):
    with serve(tiny, model_name="tiny", queue_size=5, max_outputs=3, max_duration_s=60) as client:
        health = client.get("/v1/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["auth_required"] is False
    assert body["model"]["name"] == "tiny" and body["model"]["objective"] == "v"
    assert body["model"]["draft"] is None  # a plain pipeline drafts nothing
    assert body["model"]["window_s"] == pytest.approx(2.9722, abs=1e-4)
    assert "pingpong" not in body["model"]["samplers"] and "dpmpp-2m" in body["model"]["samplers"]
    assert body["queue"] == {"length": 0, "capacity": 5, "running": 0}
    assert body["workers"] == 1
    # max_duration_s above the window is allowed: longer pieces are sampled in windows.
    assert body["limits"]["max_duration_s"] == 60.0
    assert body["limits"]["max_outputs"] == 3


def test_openapi_lists_the_paths_with_typed_bodies(tiny):
    with serve(tiny) as client:
        schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/v1/generations", "/v1/generations/{job_id}", "/v1/generations/{job_id}/audio",
            "/v1/health"} <= set(paths)
    post = paths["/v1/generations"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/GenerationRequest")
    assert post["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/GenerationStatus")
    assert {"413", "422", "429"} <= set(post["responses"])
    audio = paths["/v1/generations/{job_id}/audio"]["get"]
    assert {"audio/wav", "audio/flac"} <= set(audio["responses"]["200"]["content"])
    assert paths["/v1/health"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"]["$ref"].endswith("/Health")
    assert "securitySchemes" not in schema.get("components", {})  # no key, no auth


def test_oldest_finished_jobs_are_evicted(tiny):
    with serve(tiny, max_finished_jobs=2) as client:
        ids = [wait_for(client, submit(client)["id"])["id"] for _ in range(3)]
        assert client.get(f"/v1/generations/{ids[0]}").status_code == 404
        assert "2 most recent" in client.get(f"/v1/generations/{ids[0]}").json()["detail"]
        for job_id in ids[1:]:
            assert client.get(f"/v1/generations/{job_id}/audio").status_code == 200


def test_each_worker_owns_a_pipeline_and_they_run_concurrently(tiny):
    made: list[Gated] = []

    def factory() -> Gated:
        made.append(Gated(TextToMusicPipeline.from_pretrained(SAO1_TINY)))
        return made[-1]

    with serve(factory, workers=2) as client:
        assert len(made) == 2 and made[0].inner is not made[1].inner
        jobs = [submit(client, seed=i) for i in range(2)]
        for job in jobs:
            wait_for(client, job["id"], statuses=("running",))
        assert client.get("/v1/health").json()["queue"]["running"] == 2
        for pipeline in made:
            pipeline.gate.set()
        assert all(wait_for(client, job["id"])["status"] == "succeeded" for job in jobs)
    assert [len(p.calls) for p in made] == [1, 1]


def test_shutdown_fails_queued_and_aborts_running_jobs(tiny):
    gated = Gated(tiny)
    app = create_app(gated, ServerSettings())
    with TestClient(app) as client:
        running = submit(client)
        wait_for(client, running["id"], statuses=("running",))
        queued = submit(client)

        def open_gate_once_stopping() -> None:
            deadline = time.monotonic() + 30
            while not app.state.server.queue.stopping and time.monotonic() < deadline:
                time.sleep(0.01)
            gated.gate.set()

        threading.Thread(target=open_gate_once_stopping, daemon=True).start()
    queue = app.state.server.queue
    assert queue.get(queued["id"]).error == "the server shut down before this job ran"
    assert queue.get(running["id"]).error == "the server shut down while this job ran"


def test_settings_and_app_arguments_are_checked(tiny):
    with pytest.raises(ValueError, match="queue_size"):
        ServerSettings(queue_size=0)
    with pytest.raises(ValueError, match="api_key"):
        ServerSettings(api_key=" ")
    with pytest.raises(ValueError, match="max_duration_s"):
        ServerSettings(max_duration_s=float("nan"))
    with pytest.raises(ValueError, match="factory"):
        create_app(tiny, ServerSettings(workers=2))
    assert "s3cret" not in repr(ServerSettings(api_key="s3cret"))


def test_extension_and_inpainting_over_http(tiny):
    t = np.arange(44100) / 44100
    tone = np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * 2, axis=1).astype(np.float32)  # 1 s
    wrapped = Wrapped(tiny)
    with serve(wrapped, max_duration_s=6.0) as client:
        extended = wait_for(client, submit(client, duration_s=None, extend_s=3.0,
                                           inpaint_audio_b64=wav_b64(tone, 44100))["id"])
        assert extended["status"] == "succeeded", extended["error"]
        assert extended["num_samples"] == 4 * 44100 and extended["joins_s"][0] == 1.0
        assert extended["settings"]["inpaint_regions"] == [[1.0, 4.0]]
        assert extended["settings"]["num_windows"] == 2  # beyond the 2.97 s window
        audio = client.get(f"{extended['audio_url']}?format=wav").content
        data, _ = sf.read(io.BytesIO(audio), dtype="float32", always_2d=True)
        kept = round(0.7 * 44100)  # the recording itself, before the soft edge
        assert np.abs(data[:kept] - tone[:kept]).max() <= 1 / 32768
        regenerated = wait_for(client, submit(client, duration_s=None,
                                              inpaint_audio_b64=wav_b64(tone, 44100),
                                              inpaint_regions=[[0.2, 0.6]])["id"])
        assert regenerated["status"] == "succeeded"
        assert regenerated["joins_s"] == [0.2, 0.6]
        piece = wait_for(client, submit(client, duration_s=5.0, sections=[[2.5, "drums"]],
                                        loop=False)["id"])
        assert piece["settings"]["sections"] == [[0.0, JOB["prompt"]], [2.5, "drums"]]
    assert wrapped.calls[0]["inpaint_audio"].shape == (2, 44100)


@pytest.mark.parametrize(("extra", "field"), [
    ({"extend_s": 2.0}, "extend_s"),  # nothing to extend
    ({"extend_s": 9.0, "inpaint_audio_b64": SINE_B64}, "extend_s"),  # beyond max_duration_s
    ({"inpaint_regions": [[0.1, 0.2]]}, "inpaint_regions"),  # no audio
    ({"inpaint_audio_b64": SINE_B64, "inpaint_regions": [[0.3, 0.1]]}, "inpaint_regions"),
    ({"inpaint_audio_b64": SINE_B64, "init_audio_b64": SINE_B64}, "inpaint_audio_b64"),
    ({"inpaint_audio_b64": "not base64"}, "inpaint_audio_b64"),
    ({"loop": True, "inpaint_audio_b64": SINE_B64}, "loop"),
    ({"sections": [[0.0, "again at zero"]]}, "sections"),
    ({"resample_steps": 0}, "resample_steps"),
    ({"resample_steps": 2, "sampler": "v-ddim"}, "resample_steps"),
])
def test_bad_editing_requests_are_422_at_submission(tiny, extra, field):
    wrapped = Wrapped(tiny)
    with serve(wrapped, max_duration_s=6.0) as client:
        body = {**JOB, **extra}
        if "inpaint_audio_b64" in extra or "extend_s" in extra:
            body.pop("duration_s")
        response = client.post("/v1/generations", json=body)
        assert response.status_code == 422, response.text
        assert field in fields(response)
    assert wrapped.calls == []


# -- adapters ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    from test_adapters import random_adapter

    root = tmp_path_factory.mktemp("served-adapters")
    random_adapter(root / "bright", 1)
    random_adapter(root / "dark", 2, rank=4)
    (root / "not-an-adapter").mkdir()
    return root


def audio_of(client: TestClient, job: dict[str, Any]) -> np.ndarray:
    body = wait_for(client, job["id"])
    assert body["status"] == "succeeded", body["error"]
    data = client.get(f"/v1/generations/{job['id']}/audio").content
    return sf.read(io.BytesIO(data), dtype="float32")[0]


def test_adapters_apply_per_job_and_leave_the_model_clean(tiny, adapter_dir):
    with serve(tiny, adapters_dir=adapter_dir) as client:
        listed = client.get("/v1/adapters").json()
        assert [(a["name"], a["rank"]) for a in listed] == [("bright", 2), ("dark", 4)]
        styled = {"adapters": [{"name": "bright", "scale": 0.8}]}
        first = submit(client, **styled)
        assert first["adapters"] == [{"name": "bright", "scale": 0.8}]
        with_adapter = audio_of(client, first)
        base = audio_of(client, submit(client))
        stacked = audio_of(client, submit(client, adapters=[{"name": "bright", "scale": 0.8},
                                                            {"name": "dark"}]))
        base_again = audio_of(client, submit(client))
        with_adapter_again = audio_of(client, submit(client, **styled))
    assert np.abs(with_adapter - base).max() > 1e-3
    assert np.abs(stacked - with_adapter).max() > 1e-3
    np.testing.assert_array_equal(base_again, base)
    np.testing.assert_array_equal(with_adapter_again, with_adapter)


def test_unknown_or_unusable_adapters_are_422_before_queueing(tiny, adapter_dir):
    with serve(tiny, adapters_dir=adapter_dir) as client:
        response = client.post("/v1/generations", json={**JOB, "adapters": [{"name": "nope"}]})
        assert response.status_code == 422 and fields(response) == ["adapters.0.name"]
        assert "available: bright, dark" in response.json()["detail"]
        response = client.post("/v1/generations",
                               json={**JOB, "adapters": [{"name": "dark", "scale": 1e9}]})
        assert response.status_code == 422 and fields(response) == ["adapters.0.scale"]
        assert client.get("/v1/health").json()["queue"]["length"] == 0
    other = TextToMusicPipeline.from_pretrained(SAOS_TINY)
    with serve(other, adapters_dir=adapter_dir) as client:
        response = client.post("/v1/generations", json={**JOB, "sampler": None,
                                                        "adapters": [{"name": "bright"}]})
        assert response.status_code == 422 and "trained on" in response.json()["detail"]
        assert client.get("/v1/adapters").json() == []  # none fits this model
    with serve(tiny) as client:
        response = client.post("/v1/generations", json={**JOB, "adapters": [{"name": "x"}]})
        assert response.status_code == 422 and "--lora-dir" in response.json()["detail"]


def test_a_drafting_server_drafts_plain_requests_and_not_edits(tiny):
    """A DraftedPipeline served: a plain request without steps gets the refinement's
    default steps (capped by the limit) and a record of its draft, which reproduces the
    samples; a loop runs the model's own sampler with the model's default steps."""
    from longplay.pipelines.drafts import DRAFT_REFINEMENT, DraftedPipeline

    drafted = DraftedPipeline(tiny, tiny)
    body = {"prompt": "warm lo-fi piano", "duration_s": 0.5, "seed": 3}
    with serve(drafted, max_steps=30) as client:
        model = client.get("/v1/health").json()["model"]
        assert model["draft"] == SAO1_TINY.name and model["default_steps"] == 30
        accepted = client.post("/v1/generations", json=body).json()
        s = accepted["settings"]
        assert s["num_inference_steps"] == DRAFT_REFINEMENT.num_inference_steps
        assert s["seeds"] == [3] and s["draft"]["model"] == SAO1_TINY.name
        assert s["has_init_latents"] and s["init_noise_level"] == DRAFT_REFINEMENT.init_noise_level
        done = wait_for(client, accepted["id"])
        assert done["status"] == "succeeded" and done["settings"] == s
        served = client.get(f"/v1/generations/{accepted['id']}/audio?format=wav").content
        looped = client.post("/v1/generations", json={**body, "loop": True}).json()["settings"]
        assert looped["draft"] is None and looped["num_inference_steps"] == 30
    expected = drafted("warm lo-fi piano", duration_s=0.5, seed=3).audio[0]
    audio, rate = sf.read(io.BytesIO(served), dtype="float32", always_2d=True)
    reference = normalize_output(expected, rate)[0].T.numpy()
    assert np.abs(audio - reference).max() <= 2 / 32768
    with serve(drafted, max_steps=5) as client:  # the refinement's 12 steps, capped
        s = client.post("/v1/generations", json=body).json()["settings"]
        assert s["num_inference_steps"] == 5 and s["draft"] is not None

"""The HTTP API over text-to-music pipelines: ``create_app(pipeline, settings)``.

Endpoints (all JSON unless stated; errors are ``{"detail": "...", "errors": [...]}``):

- ``POST /v1/generations``: queue a generation -> 202 with its status. 422 names the bad
  field; 413 for a body over ``max_body_bytes``; 429 (with ``Retry-After``) when the queue
  is full.
- ``GET /v1/generations/{id}``: status, progress, settings (seed included), error, times.
- ``GET /v1/generations/{id}/audio?format=wav|flac&index=i``: the audio (16-bit) once the
  job succeeded; 409 before that.
- ``GET /v1/health``: model, queue, workers and limits; never needs the API key.
- ``GET /v1/adapters``: the LoRA adapters of the server's adapter folder, which a request
  applies by name (``adapters: [{"name": ..., "scale": ...}]``) to its job only.

With an API key set, the ``/v1/generations`` and ``/v1/adapters`` endpoints need
``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (401 otherwise); the paths of
:data:`~longplay.server.settings.PUBLIC_PATHS` stay open: ``/v1/health``, and
``/openapi.json`` with the pages that show it, ``/docs`` (Swagger UI: its Authorize
button takes the key for the calls tried there) and ``/redoc``, whose scripts and styles
the server holds itself (the ``fastapi-offline`` package), so they work offline.

Everything the app needs lives on ``app.state.server`` (a :class:`ServerState`). The
worker threads start and stop with the app's lifespan (``with TestClient(app)`` in tests,
uvicorn when served).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from longplay import __version__
from longplay.adapters import AdapterLibrary
from longplay.audio import normalize_output
from longplay.errors import AdapterError, SettingsError
from longplay.pipelines import MAX_DURATION_S, GenerationSettings
from longplay.server.audio import MEDIA_TYPES, AudioFormat, decode_audio_b64, encode_audio
from longplay.server.jobs import (
    GenerationPipeline,
    GenerationQueue,
    JobView,
    PipelineFactory,
    QueueClosedError,
    QueueFullError,
)
from longplay.server.middleware import BodySizeLimit
from longplay.server.schemas import (
    AdapterInfo,
    AdapterUse,
    ErrorResponse,
    FieldError,
    GenerationRequest,
    GenerationStatus,
    Health,
    ModelInfo,
    QueueInfo,
    RequestLimits,
    limit_errors,
)
from longplay.server.settings import ServerSettings

logger = logging.getLogger(__name__)

DOCS_ASSETS = "/docs/assets"
"""Where the scripts and styles of /docs and /redoc are served (public, under /docs)."""

REQUEST_FIELDS = {"init_audio": "init_audio_b64", "inpaint_audio": "inpaint_audio_b64"}
"""Pipeline arguments that a request gives under another name."""


@dataclass(frozen=True)
class ServerState:
    """What the endpoints share: settings, the queue, what is known about the model, and
    the pipeline whose ``resolve_settings`` validates requests (it runs no model)."""

    settings: ServerSettings
    queue: GenerationQueue
    model: ModelInfo
    limits: RequestLimits
    validator: GenerationPipeline
    adapters: AdapterLibrary


def _state(request: Request) -> ServerState:
    return request.app.state.server


State = Annotated[ServerState, Depends(_state)]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def require_api_key(
    state: State,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    """401 unless the request carries the server's key (compared in constant time)."""
    expected = state.settings.api_key
    if expected is None:
        return
    offered = [key for key in (bearer.credentials if bearer else None, api_key) if key]
    if not any(secrets.compare_digest(key.encode(), expected.encode()) for key in offered):
        raise HTTPException(
            401, "missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            headers={"WWW-Authenticate": "Bearer"})


# -- helpers -------------------------------------------------------------------------------


def _bad(field: str, message: str, value: Any = None) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("body", field),
                                    "msg": message, "input": value}])


def _resolve(request: GenerationRequest, inputs: dict[str, torch.Tensor],
             state: ServerState) -> GenerationSettings:
    """The request as the pipeline's settings record: every default filled in (the
    server's duration and step limits first), the seed drawn. A setting the pipeline
    would refuse raises RequestValidationError naming the request's field."""
    limits = state.limits
    rate = state.model.sample_rate
    known = inputs.get("inpaint_audio")
    duration = request.duration_s
    if request.extend_s is not None:
        if known is None:
            raise _bad("extend_s", "needs inpaint_audio_b64 (the audio to continue)")
        if duration is not None:
            raise _bad("extend_s", "give duration_s or extend_s, not both")
        duration = known.shape[-1] / rate + request.extend_s
    elif duration is None and known is None:
        duration = min(limits.max_duration_s, state.model.window_s)
    piece = known.shape[-1] / rate if duration is None and known is not None else duration
    if piece > limits.max_duration_s + 1e-9:
        field = "extend_s" if request.extend_s is not None else (
            "duration_s" if request.duration_s is not None else "inpaint_audio_b64")
        raise _bad(field, f"the piece would last {piece:g} s, more than this server's limit "
                          f"of {limits.max_duration_s:.3f} s")
    sections = (None if request.sections is None
                else [(0.0, request.prompt), *request.sections])

    def resolve(steps: int | None, seed: int | None) -> GenerationSettings:
        return state.validator.resolve_settings(
            None if sections else request.prompt, request.negative_prompt, duration_s=duration,
            seconds_start=request.seconds_start, seconds_total=request.seconds_total,
            num_inference_steps=steps, guidance_scale=request.guidance_scale,
            sampler=request.sampler, sigma_min=request.sigma_min, sigma_max=request.sigma_max,
            seed=seed, num_outputs=request.num_outputs, init_noise_level=request.init_noise_level,
            window=request.window, inpaint_regions=request.inpaint_regions,
            inpaint_edge_s=request.inpaint_edge_s, splice=request.splice,
            resample_steps=request.resample_steps, jump_length=request.jump_length,
            context_s=request.context_s, sections=sections, loop=request.loop,
            guidance_interval=request.guidance_interval,
            unguided_final_steps=request.unguided_final_steps, **inputs)

    try:
        # The pipeline's default steps (a drafted request's are the refinement's), at
        # most the server's limit.
        resolved = resolve(request.num_inference_steps, request.seed)
        if request.num_inference_steps is None and resolved.num_inference_steps > limits.max_steps:
            resolved = resolve(limits.max_steps, resolved.seeds[0])
        return resolved
    except SettingsError as error:
        field = REQUEST_FIELDS.get(error.field, error.field)
        message = str(error).removeprefix(f"{error.field} ")
        value = None if field.endswith("_b64") else getattr(request, field, None)
        raise _bad(field, message, value) from None


def _status(view: JobView) -> GenerationStatus:
    done = view.status == "succeeded" and view.audio is not None
    return GenerationStatus(
        id=view.id, status=view.status, progress=view.progress,
        queue_position=view.queue_position, settings=view.settings, error=view.error,
        created_at=view.created_at, started_at=view.started_at, finished_at=view.finished_at,
        sample_rate=view.sample_rate,
        num_samples=int(view.audio.shape[-1]) if done else None,
        audio_url=f"/v1/generations/{view.id}/audio" if done else None,
        joins_s=list(view.joins_s),
        adapters=[AdapterUse(name=n, scale=w) for n, w in view.adapters])


def _find(state: ServerState, job_id: str) -> JobView:
    view = state.queue.get(job_id)
    if view is None:
        raise HTTPException(404, f"no generation with id {job_id!r} (finished jobs are kept "
                                 f"for the {state.settings.max_finished_jobs} most recent only)")
    return view


_EXPECTED = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
             "string_type": "a string"}
"""What a field of each strict JSON type takes, for the message when it gets another."""


def _json_value(value: Any, limit: int = 40) -> str:
    text = json.dumps(value) if isinstance(value, bool | int | float | str | None) else (
        type(value).__name__)
    return text if len(text) <= limit else text[:limit] + "..."


def _readable(error: dict[str, Any]) -> FieldError:
    """One pydantic/FastAPI error as ``field: message``."""
    loc = [str(part) for part in error.get("loc", ())]
    location = loc[0] if loc else "body"
    field = ".".join(loc[1:]) or location
    message = str(error.get("msg", "is invalid"))
    kind = error.get("type")
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif kind in _EXPECTED:
        message = f"must be {_EXPECTED[kind]}, got {_json_value(error.get('input'))}"
    elif kind == "json_invalid":
        field = "body"
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        message = (f"is not valid JSON{where} "
                   f"({error.get('ctx', {}).get('error', 'decode error')})")
    return FieldError(field=field, location=location, message=message)


def _error_response(status: int, errors: list[FieldError], detail: str | None = None,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    detail = detail or "; ".join(f"{e.field}: {e.message}" for e in errors) or "invalid request"
    return JSONResponse(status_code=status, headers=headers,
                        content=ErrorResponse(detail=detail, errors=errors).model_dump())


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _error_response(422, [_readable(e) for e in exc.errors()])


def _not_utf8(error: UnicodeDecodeError) -> FieldError:
    """A body that JSON cannot decode as text: where, and the fix."""
    byte = error.object[error.start:error.start + 1].hex()
    return FieldError(field="body", location="body",
                      message=f"is not valid UTF-8 JSON: the byte 0x{byte} at offset "
                              f"{error.start} cannot be decoded ({error.reason}); send the "
                              "body encoded as UTF-8")


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Every other error in the same shape as the validation errors."""
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI's answer to a body json.loads cannot decode is a bare "error parsing the
        # body"; the cause says where, and it is the same kind of error as bad JSON.
        return _error_response(422, [_not_utf8(exc.__cause__)])
    return _error_response(exc.status_code, [], str(exc.detail), exc.headers)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in ((401, "missing or wrong API key"),
                       (404, "no such generation (or evicted)"),
                       (422, "invalid request; the message names the field"))
}

# -- endpoints -----------------------------------------------------------------------------

generations = APIRouter(prefix="/v1/generations", tags=["generations"], responses=_ERRORS)
health = APIRouter(prefix="/v1", tags=["health"])
adapters_router = APIRouter(prefix="/v1/adapters", tags=["adapters"], responses=_ERRORS)


@generations.post(
    "", status_code=202, response_model=GenerationStatus,
    responses={413: {"model": ErrorResponse, "description": "request body too large"},
               429: {"model": ErrorResponse, "description": "queue full; see Retry-After"},
               503: {"model": ErrorResponse, "description": "shutting down"}})
def create_generation(body: GenerationRequest, response: Response,
                      state: State) -> GenerationStatus:
    """Queue a generation; poll ``GET /v1/generations/{id}`` for its progress."""
    errors = limit_errors(body, state.limits)
    inputs: dict[str, torch.Tensor] = {}
    for name, data, longest in (("init_audio", body.init_audio_b64, state.model.window_s),
                                ("inpaint_audio", body.inpaint_audio_b64,
                                 state.limits.max_duration_s)):
        if errors or data is None:
            continue
        try:
            inputs[name] = decode_audio_b64(
                data, sample_rate=state.model.sample_rate,
                channels=state.model.audio_channels, max_duration_s=longest)
        except ValueError as error:
            errors.append({"type": "value_error", "loc": ("body", f"{name}_b64"),
                           "msg": str(error), "input": None})
    adapters = []
    for i, use in enumerate(body.adapters):
        try:
            adapters.append((use.name, state.adapters.get(use.name), use.scale))
        except AdapterError as error:
            errors.append({"type": "value_error", "loc": ("body", "adapters", i, "name"),
                           "msg": str(error), "input": use.name})
    if errors:
        raise RequestValidationError(errors)
    settings = _resolve(body, inputs, state)
    try:
        view = state.queue.submit(settings, inputs, adapters)
    except QueueFullError as error:
        wait_s = state.settings.retry_after_s
        raise HTTPException(429, f"{error}; try again in {wait_s} s",
                            headers={"Retry-After": str(wait_s)}) from None
    except QueueClosedError as error:
        raise HTTPException(503, str(error)) from None
    response.headers["Location"] = f"/v1/generations/{view.id}"
    return _status(view)


@generations.get("/{job_id}", response_model=GenerationStatus)
def get_generation(job_id: str, state: State) -> GenerationStatus:
    """A generation's status, progress, settings and (once failed) error."""
    return _status(_find(state, job_id))


@generations.get(
    "/{job_id}/audio", response_class=Response,
    responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()},
                     "description": "a 16-bit audio file"},
               409: {"model": ErrorResponse, "description": "not finished, or failed"}})
def get_generation_audio(
    job_id: str, state: State,
    audio_format: Annotated[AudioFormat, Query(alias="format")] = "wav",
    index: Annotated[int, Query(ge=0, description="which output")] = 0,
    normalize: Annotated[bool | None, Query(description=(
        "DC block (zero-phase high-pass at 10 Hz) and peak normalisation to -1 dBFS, as "
        "the command line writes files; false: the raw model output (16-bit, clipped at "
        "full scale). Default: true, except for edits that keep input audio"))] = None,
) -> Response:
    """Output ``index`` of a succeeded generation as a WAV or FLAC file; the
    ``X-Longplay-Output`` header records the processing (JSON)."""
    view = _find(state, job_id)
    if view.status == "failed":
        raise HTTPException(409, f"generation {job_id} failed: {view.error}")
    if view.status != "succeeded" or view.audio is None:
        raise HTTPException(409, f"generation {job_id} is {view.status} "
                                 f"({view.progress.fraction:.0%}); its audio is not ready")
    if index >= view.audio.shape[0]:
        raise RequestValidationError([{
            "type": "value_error", "loc": ("query", "index"), "input": index,
            "msg": f"must be below num_outputs ({view.audio.shape[0]}), got {index}"}])
    if normalize is None:
        normalize = view.settings.normalize_by_default
    audio, processing = normalize_output(view.audio[index], view.sample_rate,
                                         normalize=normalize)
    data = encode_audio(audio, view.sample_rate, audio_format)
    filename = f"{job_id}_{index}.{audio_format}"
    return Response(data, media_type=MEDIA_TYPES[audio_format],
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "X-Longplay-Output": json.dumps(processing.as_dict())})


@adapters_router.get("", response_model=list[AdapterInfo])
def list_adapters(state: State) -> list[AdapterInfo]:
    """The adapters a request may apply (the server's adapter folder; empty without one)."""
    return [AdapterInfo(name=name, rank=adapter.rank,
                        dora=bool(adapter.config.get("use_dora", False)),
                        base_model=adapter.base.name if adapter.base else "")
            for name, adapter in state.adapters.usable()]


@health.get("/health", response_model=Health)
def get_health(state: State) -> Health:
    """Liveness, the model, the queue and the limits (open without the API key)."""
    stats = state.queue.stats()
    return Health(status="ok", version=__version__, model=state.model,
                  queue=QueueInfo(length=stats.length, capacity=stats.capacity,
                                  running=stats.running),
                  workers=stats.workers, limits=state.limits,
                  auth_required=state.settings.api_key is not None,
                  max_finished_jobs=state.settings.max_finished_jobs)


# -- the app -------------------------------------------------------------------------------


def _pipelines(source: GenerationPipeline | PipelineFactory,
               workers: int) -> list[GenerationPipeline]:
    if isinstance(source, GenerationPipeline):
        if workers != 1:
            raise ValueError(f"workers={workers} needs a pipeline factory: each worker runs its "
                             "own copy of the model, one generation at a time")
        return [source]
    pipelines = [source() for _ in range(workers)]
    for pipeline in pipelines:
        if not isinstance(pipeline, GenerationPipeline):
            raise TypeError(f"the pipeline factory returned {type(pipeline).__name__}, not a "
                            "pipeline")
    return pipelines


def create_app(pipeline: GenerationPipeline | PipelineFactory,
               settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``pipeline``.

    Args:
        pipeline: a loaded :class:`~longplay.pipelines.TextToMusicPipeline` (one worker), or
            a zero-argument factory called once per worker here, so each worker owns a model.
        settings: limits and behaviour (default :class:`ServerSettings`).
    """
    settings = ServerSettings() if settings is None else settings
    pipelines = _pipelines(pipeline, settings.workers)
    first = pipelines[0]
    window_s = float(first.max_duration_s)
    max_duration_s = window_s if settings.max_duration_s is None else min(
        settings.max_duration_s, MAX_DURATION_S)
    model = ModelInfo(
        name=settings.model_name, objective=first.config.objective,
        sample_rate=first.sample_rate, audio_channels=first.config.audio_channels,
        window_s=window_s, samplers=list(first.objective.accepted_sampler_names),
        default_sampler=first.defaults.sampler,
        default_steps=min(first.defaults.num_inference_steps, settings.max_steps),
        default_guidance_scale=first.defaults.guidance_scale,
        draft=getattr(first, "draft_name", None))
    limits = RequestLimits(max_duration_s=max_duration_s, max_steps=settings.max_steps,
                           max_outputs=settings.max_outputs,
                           max_prompt_chars=settings.max_prompt_chars,
                           max_body_bytes=settings.max_body_bytes)
    queue = GenerationQueue(pipelines, settings.queue_size, settings.max_finished_jobs)
    identity = getattr(first, "base_identity", None)
    state = ServerState(settings=settings, queue=queue, model=model, limits=limits,
                        validator=first, adapters=AdapterLibrary(settings.adapters_dir, identity))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        queue.start()
        try:
            yield
        finally:
            await run_in_threadpool(queue.stop)

    # FastAPI's /docs and /redoc load their scripts from a CDN: blank pages offline.
    app = FastAPIOffline(title="longplay", version=__version__, lifespan=lifespan,
                         description="Text-to-music generation: queue a job, poll it, fetch "
                                     "the audio.", static_url=DOCS_ASSETS)
    app.state.server = state
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    auth = [Depends(require_api_key)] if settings.api_key is not None else []
    app.include_router(generations, dependencies=auth)
    app.include_router(adapters_router, dependencies=auth)
    app.include_router(health)
    return app

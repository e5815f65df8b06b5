"""Request and response bodies of the HTTP API (pydantic models, shown in /openapi.json).

The request model carries the checks that hold for every server (JSON types taken
strictly, signs, valid Unicode text, known sampler names, no unknown fields); the limits
of one server (duration, step and output caps, prompt length) are checked by
:func:`limit_errors`, and everything that depends on the model (the window, the samplers
that fit it, audio-to-audio's noise levels...) by the pipeline's own ``resolve_settings``,
all before a job is queued: a request the pipeline would refuse never enters the queue.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from longplay.config import WINDOWS
from longplay.diffusion import OBJECTIVES
from longplay.pipelines import DEFAULT_EDGE_S, DEFAULT_JUMP_LENGTH, MAX_SEED, GenerationSettings
from longplay.server.jobs import SAMPLING_SHARE, JobProgress, JobStatus

SAMPLER_NAMES = tuple(sorted({name for objective in OBJECTIVES.values()
                              for name in objective.accepted_sampler_names}))
SamplerName = Literal[SAMPLER_NAMES]  # type: ignore[valid-type]
WindowName = Literal[WINDOWS]  # type: ignore[valid-type]


MAX_ADAPTERS = 8
"""Most adapters one request may stack."""


def _valid_unicode(value: Any) -> Any:
    """Refuse a string with a lone surrogate before anything reads it: JSON can spell
    one (``"\\ud800"``), but it is no character, and a tokenizer cannot encode it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"is not valid Unicode: character {error.start} is a lone surrogate "
                f"({value[error.start]!r}, half of a UTF-16 pair); send the text as UTF-8, "
                "or escape both halves of the pair") from None
    return value


# Request fields take JSON's own types only: no true for 1, no "2" for 2, no 2.0 for an
# integer (pydantic's lax mode would convert them silently).
Integer = Annotated[int, Strict()]
Number = Annotated[float, Strict()]  # an integer is a number too
Flag = Annotated[bool, Strict()]
Text = Annotated[str, BeforeValidator(_valid_unicode)]


class AdapterUse(BaseModel):
    """An adapter of the server's adapter folder and its strength."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Text = Field(min_length=1, description="the adapter's folder name (GET /v1/adapters)")
    scale: Number = Field(1.0, ge=-4, le=4, description="strength: 0 = off, 1 = as trained")


class AdapterInfo(BaseModel):
    name: str
    rank: int
    dora: bool
    base_model: str = Field(description="the name of the model it was trained on")


class GenerationRequest(BaseModel):
    """``POST /v1/generations``: the pipeline call's arguments; omitted ones take the
    model's defaults (see ``GET /v1/health``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    prompt: Text = Field(min_length=1, description="what the music should be (from 0 s, "
                                                  "before any sections)")
    negative_prompt: Text | None = Field(
        None, description="prompt for the unconditional branch of guidance")
    duration_s: Number | None = Field(
        None, gt=0, description="seconds of audio; default and maximum: limits.max_duration_s")
    seconds_start: Number = Field(0.0, ge=0,
                                  description="timing conditioning: start of the piece")
    seconds_total: Number | None = Field(
        None, gt=0, description="timing conditioning: length of the piece; default duration_s")
    num_inference_steps: Integer | None = Field(None, ge=1, description="sampler steps")
    guidance_scale: Number | None = Field(None, gt=0, description="1 = no guidance")
    sampler: SamplerName | None = Field(  # type: ignore[valid-type]
        None, description="one of the model's samplers (GET /v1/health: model.samplers)")
    sigma_min: Number | None = Field(None, gt=0, description="lowest noise level (v models; "
                                                            "default the model's "
                                                            "inference.sigma_min, else 0.03)")
    sigma_max: Number | None = Field(None, gt=0, description="highest noise level (v models; "
                                                             "default the model's "
                                                             "inference.sigma_max, else 500)")
    seed: Integer | None = Field(
        None, ge=0, le=MAX_SEED,
        description="seed of output 0; output i uses seed + i; default: drawn and reported")
    num_outputs: Integer = Field(1, ge=1, description="outputs generated from the prompt")
    init_audio_b64: str | None = Field(
        None, description="audio-to-audio: a base64 WAV or FLAC file to start from (resampled "
                          "to the model's rate; only the model's window is used)")
    init_noise_level: Number | None = Field(
        None, gt=0, description="how much of init_audio to change: a sigma for v models "
                                "(default 1.0), a time in (0, 1] for rectified flow (0.5)")
    window: WindowName | None = Field(  # type: ignore[valid-type]
        None, description="full: sample the model's whole window, then trim; fit: the "
                          "shortest window that holds duration_s; default: the model's")
    inpaint_audio_b64: str | None = Field(
        None, description="extension and inpainting: a base64 WAV or FLAC file to keep "
                          "(resampled to the model's rate); the model generates around it")
    inpaint_regions: list[tuple[Number, Number]] | None = Field(
        None, description="with inpaint_audio_b64: the regions [start_s, end_s] to generate; "
                          "default: what follows the audio")
    extend_s: Number | None = Field(
        None, gt=0, description="with inpaint_audio_b64: continue it by this many seconds "
                                "(instead of duration_s)")
    inpaint_edge_s: Number = Field(DEFAULT_EDGE_S, ge=0,
                                   description="soft edge of the kept audio")
    splice: Flag = Field(True, description="keep the audio's own samples outside the generated "
                                           "regions (else its VAE reconstruction)")
    resample_steps: Integer = Field(1, ge=1, description="RePaint resampling (1: off)")
    jump_length: Integer = Field(DEFAULT_JUMP_LENGTH, ge=1, description="steps per resampled "
                                                                    "segment")
    context_s: Number | None = Field(
        None, ge=0, description="beyond one window: seconds each window keeps of what came "
                                "before (default a quarter of the window)")
    sections: list[tuple[Number, Text]] | None = Field(
        None, description="[start_s, prompt] parts of the piece after the opening prompt "
                          "(which holds from 0 s)")
    loop: Flag = Field(False, description="make the audio loop seamlessly")
    guidance_interval: tuple[Number, Number] | None = Field(
        None, description="[lo, hi]: guidance only for noise levels in (lo, hi] (VE sigmas "
                          "for v models, RF times for flows); default the model's (the demo "
                          "model: [0.5, 20]); [0, 1e9] guides every step")
    unguided_final_steps: Integer = Field(0, ge=0, description="the last steps run without "
                                                           "guidance")
    adapters: list[AdapterUse] = Field(
        default_factory=list, max_length=MAX_ADAPTERS,
        description="LoRA adapters of this server's adapter folder (GET /v1/adapters) "
                    "applied to this job only, each with its strength; their updates add up")


class RequestLimits(BaseModel):
    """The limits of this server and model that a request must respect."""

    max_duration_s: float
    max_steps: int
    max_outputs: int
    max_prompt_chars: int
    max_body_bytes: int


def limit_errors(request: GenerationRequest, limits: RequestLimits) -> list[dict[str, Any]]:
    """The request's violations of this server's ``limits``, as pydantic-style error dicts
    located in the body (empty when it is within them)."""
    errors: list[dict[str, Any]] = []

    def bad(field: str, message: str) -> None:
        errors.append({"type": "value_error", "loc": ("body", field), "msg": message,
                       "input": getattr(request, field)})

    for field in ("prompt", "negative_prompt"):
        text = getattr(request, field)
        if text is not None and not text.strip():
            bad(field, "must not be blank")
        elif text is not None and len(text) > limits.max_prompt_chars:
            bad(field, f"must be at most {limits.max_prompt_chars} characters, got {len(text)}")
    if request.duration_s is not None and request.duration_s > limits.max_duration_s:
        bad("duration_s", f"must be at most {limits.max_duration_s:.3f} s (this server's limit "
                          f"within the model's window), got {request.duration_s:g}")
    if request.num_inference_steps is not None and request.num_inference_steps > limits.max_steps:
        bad("num_inference_steps", f"must be at most {limits.max_steps}, got "
                                   f"{request.num_inference_steps}")
    if request.num_outputs > limits.max_outputs:
        bad("num_outputs", f"must be at most {limits.max_outputs}, got {request.num_outputs}")
    return errors


class GenerationStatus(BaseModel):
    """A job as ``POST /v1/generations`` (202) and ``GET /v1/generations/{id}`` show it."""

    id: str
    status: JobStatus
    progress: JobProgress = Field(
        description=f"fraction in [0, 1] (sampling counts for {SAMPLING_SHARE:.0%}, decoding for "
                    "the rest) and the pipeline's current stage")
    queue_position: int | None = Field(description="1 = runs next; null unless queued")
    settings: GenerationSettings = Field(
        description="the settings the job runs with: the pipeline's record, every default "
                    "and the seeds resolved when the job was accepted")
    error: str | None = Field(description="why the job failed; null otherwise")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    sample_rate: int
    num_samples: int | None = Field(description="samples per output channel once succeeded")
    audio_url: str | None = Field(
        description="GET it with ?format=wav|flac&index=i once succeeded")
    joins_s: list[float] = Field(
        default_factory=list,
        description="where generated audio meets kept audio (region edges, windows, a "
                    "loop's wrap-around), once succeeded")
    adapters: list[AdapterUse] = Field(default_factory=list,
                                       description="the adapters the job applies")


class ModelInfo(BaseModel):
    name: str
    objective: str
    sample_rate: int
    audio_channels: int
    window_s: float
    samplers: list[str]
    default_sampler: str
    default_steps: int
    default_guidance_scale: float
    draft: str | None = Field(
        default=None,
        description="the few-step model that drafts plain text-to-music requests of one "
                    "window (no input audio, loop or sections), which this model then "
                    "refines from the draft (by default in fewer steps: the job's settings "
                    "give them, and settings.draft how the draft was made); null: none")


class QueueInfo(BaseModel):
    length: int = Field(description="jobs waiting")
    capacity: int = Field(description="jobs that may wait; one more is refused with 429")
    running: int


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    model: ModelInfo
    queue: QueueInfo
    workers: int
    limits: RequestLimits
    auth_required: bool
    max_finished_jobs: int = Field(description="finished jobs kept; older ones answer 404")


class FieldError(BaseModel):
    field: str = Field(description="the offending field, e.g. 'duration_s' or 'format'")
    location: str = Field(description="body, query, path or header")
    message: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: ``detail`` is one readable line."""

    detail: str
    errors: list[FieldError] = Field(default_factory=list)

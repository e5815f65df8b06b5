"""The settings of a generation: one record from the request to the output.

:func:`resolve_settings` turns the keyword arguments of a pipeline call into a complete,
validated :class:`GenerationSettings` (the model's defaults filled in, the seed drawn once)
using only the model's config, so that every entry point (Python, the command line, the
HTTP API, the studio) can check a request before any weights are touched. The pipeline
runs the record; the sidecar, the API's job status and the studio's history show it.

Shape legend: P prompts, B batch (prompts x outputs), C audio channels, S samples,
D latent channels, T latent frames, L text tokens, E text-encoder width.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from longplay.config import WINDOW_QUANTUM_FRAMES, WINDOWS, DiffusionModelConfig
from longplay.diffusion import Objective, SamplerSpec, SamplingDefaults, get_objective
from longplay.errors import SettingsError
from longplay.pipelines.windows import generate_frames, plan_windows, section_boundaries

__all__ = [
    "DEFAULT_CONTEXT_FRACTION",
    "DEFAULT_EDGE_S",
    "DEFAULT_JUMP_LENGTH",
    "DEFAULT_SIGMA_MAX",
    "DEFAULT_SIGMA_MIN",
    "DRAWN_SEED_BOUND",
    "MAX_BATCH_SIZE",
    "MAX_DURATION_S",
    "MAX_INFERENCE_STEPS",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "PRECISIONS",
    "WINDOW_QUANTUM_FRAMES",
    "DraftRecord",
    "GenerationSettings",
    "check_text",
    "draw_seed",
    "guidance_times",
    "resolve_settings",
    "sampling_defaults",
]

MAX_SEED = 2**63 - 1
"""The largest seed a generation accepts (item i of a batch uses seed + i <= MAX_SEED)."""
DRAWN_SEED_BOUND = 2**31 - 1
"""Seeds drawn when none is given are below this: they fit the 32-bit integers of other
tools and are exact in JavaScript numbers (the studio, JSON clients)."""
DEFAULT_SIGMA_MIN: float = get_objective("v").defaults.sigma_min
DEFAULT_SIGMA_MAX: float = get_objective("v").defaults.sigma_max
"""The VE noise levels of the v-objective samplers, log-linear from max to min (the
paper's and the reference UI's); a model's ``inference.sigma_min``/``sigma_max`` replace
them for that model."""
PRECISIONS = ("fp32", "bf16", "int8", "auto")
"""auto: bf16 where the device runs it fast, else fp32. int8 (CPU only): the DiT's
transformer blocks with int8 linear layers (PyTorch's dynamic quantisation)."""
MAX_DURATION_S = 3600.0
"""The longest generation accepted (sampled window by window beyond the model's)."""
DEFAULT_EDGE_S = 0.2
"""Soft edges of a kept region: the ramp into a generated region (about 4 latent frames)."""
DEFAULT_CONTEXT_FRACTION = 0.25
"""Beyond one window, each window keeps this share of itself from what came before."""
DEFAULT_JUMP_LENGTH = 10
"""RePaint's jump length (steps per resampled segment) when resampling is on."""
MAX_EDGE_S = 10.0
MAX_RESAMPLE_STEPS = 100
MAX_PROMPT_CHARS = 20_000
"""The longest prompt accepted, in characters."""
MAX_INFERENCE_STEPS = 1000
"""The most sampler steps a generation accepts (the v-objective's training grid has 1000
levels; quality stops improving long before)."""
MAX_BATCH_SIZE = 64
"""The most items (prompts x outputs) one call generates at once; more would only run out
of memory: loop over calls instead."""


@dataclass(frozen=True)
class DraftRecord:
    """How a drafted generation's init latents were made
    (:class:`longplay.pipelines.drafts.DraftedPipeline`): a few-step model that shares the
    model's VAE sampled the whole window in ``num_inference_steps`` steps of ``sampler``
    from the record's own ``seeds`` (with the record's prompt, length, timing and window;
    no guidance), and the model refined that draft with the rest of the record, its
    seeds then ``seeds + seed_offset``. ``model``: the draft model's folder name."""

    model: str
    num_inference_steps: int
    sampler: str
    seed_offset: int


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that determines a generation (with the model and the input tensors),
    as used: every default resolved, the seeds drawn.

    Attributes:
        prompts: the P prompts; empty when the caller gave ``prompt_embeds``.
        negative_prompt: the prompt of guidance's unconditional branch, or None (an
            all-zero context, or the given ``negative_prompt_embeds``).
        duration_s: seconds of audio returned per item.
        seconds_start, seconds_total: the timing conditioning.
        num_inference_steps: network evaluations of the sampler (per guidance branch).
        guidance_scale: classifier-free guidance; 1 runs no unconditional pass.
        sampler: the canonical sampler name (an alias given by the caller is resolved).
        sigma_min, sigma_max: the VE noise levels of the v-objective samplers; None for
            models that do not use them (rectified flow).
        num_outputs: items generated per prompt.
        seeds: [B] the seed of each item: seeds[i] = seeds[0] + i.
        init_noise_level: the level init audio (or init latents) is noised to, None
            without either.
        has_init_audio, has_initial_latents, has_prompt_embeds, has_negative_prompt_embeds,
        has_init_latents: which input tensors the generation used (they are not part of
            the record).
        window: "full" or "fit", how the sampled window was chosen.
        window_frames: latent frames sampled at once (then decoded and trimmed to
            duration_s); beyond one window, the length of each window.
        precision: what the DiT ran in ("fp32" or "bf16").
        has_inpaint_audio: whether known audio was kept (extension, inpainting).
        inpaint_regions: the regions (start_s, end_s) of the piece that were generated
            around the known audio; everything else was kept.
        inpaint_edge_s: the soft edge of the kept regions, in seconds.
        splice: whether the output keeps the known audio's own samples outside the
            generated regions (else its VAE reconstruction).
        resample_steps, jump_length: RePaint's resampling (1: none).
        context_s: beyond one window, what each window keeps of what came before.
        num_windows: how many windows were sampled.
        sections: (start_s, prompt) of each part of the piece, or empty: one prompt.
        loop: whether the audio loops seamlessly (its end flows into its start).
        guidance_interval: (lo, hi) noise levels (VE sigmas for v models, RF times for
            flows): guidance applies for levels in (lo, hi], one conditional pass
            elsewhere; None: at every level. A call without one takes the model's
            (``inference.guidance_interval``); one that holds every level, e.g.
            ``(0, inf)``, turns a model's default off.
        unguided_final_steps: the last this many evaluations run without guidance.
        draft: how the init latents were drafted (:class:`DraftRecord`), or None: not a
            drafted generation.
    """

    prompts: tuple[str, ...]
    negative_prompt: str | None
    duration_s: float
    seconds_start: float
    seconds_total: float
    num_inference_steps: int
    guidance_scale: float
    sampler: str
    sigma_min: float | None
    sigma_max: float | None
    num_outputs: int
    seeds: tuple[int, ...]
    init_noise_level: float | None
    has_init_audio: bool
    has_initial_latents: bool
    window_frames: int
    window: str = "full"
    has_prompt_embeds: bool = False
    has_negative_prompt_embeds: bool = False
    precision: str = "fp32"
    has_inpaint_audio: bool = False
    inpaint_regions: tuple[tuple[float, float], ...] = ()
    inpaint_edge_s: float = DEFAULT_EDGE_S
    splice: bool = True
    resample_steps: int = 1
    jump_length: int = DEFAULT_JUMP_LENGTH
    context_s: float = 0.0
    num_windows: int = 1
    sections: tuple[tuple[float, str], ...] = ()
    loop: bool = False
    guidance_interval: tuple[float, float] | None = None
    unguided_final_steps: int = 0
    has_init_latents: bool = False
    draft: DraftRecord | None = None

    @property
    def guided_evaluations(self) -> int:
        """How many of the sampler's evaluations pay for guidance's second pass, at most
        (levels outside ``guidance_interval`` pay none either)."""
        if self.guidance_scale == 1:
            return 0
        return self.num_inference_steps - self.unguided_final_steps

    @property
    def normalize_by_default(self) -> bool:
        """Whether the outputs are written normalised by default
        (:func:`longplay.audio.normalize_output`): yes, except for edits that keep input
        audio (extend, inpaint), whose kept samples stay the input's own."""
        return not self.has_inpaint_audio

    @property
    def batch_size(self) -> int:
        """B: the number of items generated."""
        return len(self.seeds)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def call_arguments(self) -> dict[str, Any]:
        """The keyword arguments of a pipeline call that resolve to this record (with the
        same input tensors)."""
        return {
            "prompt": list(self.prompts) if self.prompts and not self.sections else None,
            "negative_prompt": self.negative_prompt, "duration_s": self.duration_s,
            "seconds_start": self.seconds_start, "seconds_total": self.seconds_total,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale, "sampler": self.sampler,
            "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
            "seed": self.seeds[0] if self.seeds else None, "num_outputs": self.num_outputs,
            "init_noise_level": self.init_noise_level, "window": self.window,
            "inpaint_regions": ([list(r) for r in self.inpaint_regions]
                                if self.has_inpaint_audio else None),
            "inpaint_edge_s": self.inpaint_edge_s, "splice": self.splice,
            "resample_steps": self.resample_steps, "jump_length": self.jump_length,
            "context_s": self.context_s if self.num_windows > 1 else None,
            "sections": [list(section) for section in self.sections] or None,
            "loop": self.loop,
            "guidance_interval": ([0.0, math.inf] if self.guidance_interval is None
                                  else list(self.guidance_interval)),
            "unguided_final_steps": self.unguided_final_steps,
        }


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A random seed in [0, DRAWN_SEED_BOUND): from ``generator`` when given (so that a
    seeded generator gives a reproducible seed), else from the operating system."""
    if generator is not None:
        return int(torch.randint(0, DRAWN_SEED_BOUND, (1,), generator=generator).item())
    return secrets.randbelow(DRAWN_SEED_BOUND)


def sampling_defaults(config: DiffusionModelConfig) -> SamplingDefaults:
    """The model's defaults: its objective's, with the model's own sampler, number of
    steps and guidance where its config sets them (``inference.sampler``, ``.steps``,
    ``.guidance_scale``, ``.sigma_min``, ``.sigma_max``: a distilled model's few steps
    without guidance, on the grid chosen for it)."""
    defaults = get_objective(config.objective).defaults
    if config.steps is not None:
        defaults = replace(defaults, num_inference_steps=config.steps)
    if config.sampler is not None:
        defaults = replace(defaults, sampler=config.sampler)
    if config.guidance_scale is not None:
        defaults = replace(defaults, guidance_scale=config.guidance_scale)
    if config.guidance_interval is not None:
        defaults = replace(defaults, guidance_interval=config.guidance_interval)
    if config.sigma_min is not None:  # v models only (the config checks)
        defaults = replace(defaults, sigma_min=config.sigma_min)
    if config.sigma_max is not None:
        defaults = replace(defaults, sigma_max=config.sigma_max)
    return defaults


# -- validation -------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_int(field: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise SettingsError(field, f"{field} must be a positive integer, got {value!r}")
    return value


def _finite(field: str, value: Any) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise SettingsError(field, f"{field} must be a finite number, got {value!r}")
    return float(value)


def check_text(field: str, text: Any) -> str:
    """``text`` checked to be a usable prompt: a string with something to say, that is
    valid Unicode (no lone surrogates: what Python makes of undecodable bytes in a
    command-line argument or a file name). One rule for every entry point: the command
    line, Python, the HTTP API and the studio all refuse an empty prompt.

    Raises:
        SettingsError: naming ``field``.
    """
    if not isinstance(text, str):
        raise SettingsError(field, f"{field} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise SettingsError(field, f"{field} is empty; describe the music (e.g. 'a calm piano "
                                   "piece')")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise SettingsError(field, f"{field} is not valid text: character {err.start} is an "
                                   "undecodable byte (the terminal or file is not UTF-8); give "
                                   "the prompt in UTF-8") from None
    if len(text) > MAX_PROMPT_CHARS:
        raise SettingsError(field, f"{field} has {len(text)} characters; at most "
                                   f"{MAX_PROMPT_CHARS} are accepted (the text encoder reads "
                                   "only the first few hundred tokens)")
    return text


def _prompts(prompt: Any, field: str) -> tuple[str, ...]:
    prompts = (prompt,) if isinstance(prompt, str) else None
    if prompts is None and isinstance(prompt, Sequence):
        prompts = tuple(prompt)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise SettingsError(field, f"{field} must be a string or a non-empty list of strings, "
                                   f"got {type(prompt).__name__}")
    for i, text in enumerate(prompts):
        check_text(field if len(prompts) == 1 else f"{field}[{i}]", text)
    return prompts


def _check_embeds(field: str, embeds: Any, mask: Any, mask_field: str, rows: int | None,
                  config: DiffusionModelConfig) -> int:
    """Validate text-encoder features [N, L, E] and their mask [N, L]; returns N."""
    text = config.conditioning.text
    if text is None:
        raise SettingsError(field, f"{field}: this model has no text conditioning")
    if not isinstance(embeds, torch.Tensor) or embeds.dim() != 3 or not (
            embeds.is_floating_point()) or embeds.shape[-1] != text.feature_dim:
        shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
        raise SettingsError(field, f"{field} must be a float tensor [N, L, {text.feature_dim}] "
                                   f"of text-encoder features (pipe.encode_prompt), got {shape}")
    if embeds.shape[0] < 1 or (rows is not None and embeds.shape[0] not in (1, rows)):
        expected = "at least 1" if rows is None else f"1 or {rows}"
        raise SettingsError(field, f"{field} must have {expected} rows, got {embeds.shape[0]}")
    if not torch.isfinite(embeds).all():
        raise SettingsError(field, f"{field} contains NaN or infinite values")
    if mask is not None and (not isinstance(mask, torch.Tensor)
                             or tuple(mask.shape) != tuple(embeds.shape[:2])):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise SettingsError(mask_field, f"{mask_field} must be a tensor "
                                        f"{list(embeds.shape[:2])} (1 = token), got {shape}")
    return int(embeds.shape[0])


def resolve_settings(
    config: DiffusionModelConfig,
    prompt: str | Sequence[str] | None = None,
    negative_prompt: str | None = None,
    *,
    duration_s: float | None = None,
    seconds_start: float = 0.0,
    seconds_total: float | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    sampler: str | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    num_outputs: int = 1,
    latents: torch.Tensor | None = None,
    init_audio: torch.Tensor | None = None,
    init_noise_level: float | None = None,
    window: str | None = None,
    init_latents: torch.Tensor | None = None,
    prompt_embeds: torch.Tensor | None = None,
    prompt_attention_mask: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
    negative_attention_mask: torch.Tensor | None = None,
    inpaint_audio: torch.Tensor | None = None,
    inpaint_regions: Sequence[Sequence[float]] | None = None,
    inpaint_edge_s: float = DEFAULT_EDGE_S,
    splice: bool = True,
    resample_steps: int = 1,
    jump_length: int = DEFAULT_JUMP_LENGTH,
    context_s: float | None = None,
    sections: Sequence[Sequence[float | str]] | None = None,
    loop: bool = False,
    guidance_interval: Sequence[float] | None = None,
    unguided_final_steps: int = 0,
    precision: str = "fp32",
    draw: bool = True,
) -> GenerationSettings:
    """Validate a pipeline call's arguments against the model ``config`` and fill in the
    defaults; see ``TextToMusicPipeline.__call__`` for the arguments.

    With ``draw=False`` no seed is drawn when none is given (``seeds`` is then empty):
    a check that leaves ``generator`` untouched.

    Raises:
        SettingsError: (a ValueError) naming the argument at fault in ``field``.
    """
    objective = get_objective(config.objective)
    defaults = sampling_defaults(config)
    hop, sample_rate = config.vae.hop_length, config.sample_rate

    # Prompts: strings, precomputed text-encoder features, or sections of one piece.
    if sections is not None:
        if prompt is not None or prompt_embeds is not None:
            raise SettingsError("sections", "give sections or a prompt, not both (the first "
                                            "section, at 0 s, is the opening prompt)")
        prompts: tuple[str, ...] = ()
        num_prompts = 1
    elif prompt_embeds is not None:
        if prompt is not None:
            raise SettingsError("prompt", "give prompt or prompt_embeds, not both")
        num_prompts = _check_embeds("prompt_embeds", prompt_embeds, prompt_attention_mask,
                                    "prompt_attention_mask", None, config)
        prompts = ()
    else:
        if prompt_attention_mask is not None:
            raise SettingsError("prompt_attention_mask", "prompt_attention_mask needs "
                                                         "prompt_embeds")
        prompts = _prompts(prompt, "prompt")
        num_prompts = len(prompts)
    if negative_prompt is not None:
        check_text("negative_prompt", negative_prompt)
    if negative_prompt_embeds is not None:
        if negative_prompt is not None:
            raise SettingsError("negative_prompt", "give negative_prompt or "
                                                   "negative_prompt_embeds, not both")
        _check_embeds("negative_prompt_embeds", negative_prompt_embeds, negative_attention_mask,
                      "negative_attention_mask", num_prompts, config)
    elif negative_attention_mask is not None:
        raise SettingsError("negative_attention_mask", "negative_attention_mask needs "
                                                       "negative_prompt_embeds")

    num_outputs = _positive_int("num_outputs", num_outputs)
    batch = num_prompts * num_outputs
    if batch > MAX_BATCH_SIZE:
        raise SettingsError("num_outputs", f"{num_prompts} prompt(s) x {num_outputs} output(s) "
                                           f"= {batch} items; at most {MAX_BATCH_SIZE} "
                                           "(MAX_BATCH_SIZE) are generated at once: split the "
                                           "request into several calls")
    steps = _positive_int("num_inference_steps", defaults.num_inference_steps
                          if num_inference_steps is None else num_inference_steps)
    if steps > MAX_INFERENCE_STEPS:
        raise SettingsError("num_inference_steps", f"num_inference_steps must be at most "
                                                   f"{MAX_INFERENCE_STEPS} "
                                                   f"(MAX_INFERENCE_STEPS), got {steps}")
    scale = _finite("guidance_scale", defaults.guidance_scale
                    if guidance_scale is None else guidance_scale)
    if scale <= 0:
        raise SettingsError("guidance_scale", f"guidance_scale must be > 0 (1 = no guidance), "
                                              f"got {scale:g}")
    if objective.level_kind == "ve":
        # The call's, else the model's (inference.sigma_min/max, else the objective's).
        sigma_min = _finite("sigma_min", defaults.sigma_min if sigma_min is None else sigma_min)
        sigma_max = _finite("sigma_max", defaults.sigma_max if sigma_max is None else sigma_max)
        if not 0 < sigma_min < sigma_max:
            raise SettingsError("sigma_max", f"need 0 < sigma_min < sigma_max, got "
                                             f"{sigma_min:g} and {sigma_max:g}")
    else:  # the noise levels of a flow are times in [0, 1]: no sigmas to set or record
        for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
            if value is not None:
                raise SettingsError(name, f"{name} sets the noise levels of v-objective "
                                          f"models; this {config.objective} model samples "
                                          "times in [0, 1] and does not use it")
    # None: the model's default; an interval that holds every level: guidance everywhere.
    interval = _guidance_interval(defaults.guidance_interval if guidance_interval is None
                                  else guidance_interval)
    top = sigma_max if sigma_max is not None else 1.0
    if interval is not None and interval[0] <= 0 and interval[1] >= top:
        interval = None
    if not _is_int(unguided_final_steps) or not 0 <= unguided_final_steps < steps:
        raise SettingsError("unguided_final_steps", f"unguided_final_steps must be an integer "
                                                    f"in [0, {steps}) (fewer than the steps), "
                                                    f"got {unguided_final_steps!r}")
    sampler_name = defaults.sampler if sampler is None else sampler
    if not isinstance(sampler_name, str):
        raise SettingsError("sampler", f"sampler must be a name, got {sampler_name!r}")
    try:
        spec = objective.sampler(sampler_name, model=f"this {config.objective} model")
    except ValueError as err:
        raise SettingsError("sampler", str(err)) from None

    # The piece's length and the window(s) it is sampled in.
    window_mode = config.window if window is None else window
    if window_mode not in WINDOWS:
        raise SettingsError("window", f"window must be one of {', '.join(WINDOWS)}, got "
                                      f"{window_mode!r}")
    if latents is not None:
        _check_latents("latents", latents, batch, config)
    if init_latents is not None:
        _check_latents("init_latents", init_latents, batch, config)
        if init_audio is not None or inpaint_audio is not None:
            other = "init_audio" if init_audio is not None else "inpaint_audio"
            raise SettingsError("init_latents", f"give init_latents or {other}, not both: "
                                                "init_latents are the start itself, in the "
                                                "model's latent space")
        if latents is not None and latents.shape[-1] != init_latents.shape[-1]:
            raise SettingsError("init_latents", f"init_latents have {init_latents.shape[-1]} "
                                                f"frames and latents {latents.shape[-1]}: they "
                                                "are noise and start of the same window")
    if not isinstance(loop, bool):
        raise SettingsError("loop", f"loop must be true or false, got {loop!r}")
    if not isinstance(splice, bool):
        raise SettingsError("splice", f"splice must be true or false, got {splice!r}")
    known_s = _check_inpaint_audio(inpaint_audio, init_audio, loop, batch, config)
    given = latents if latents is not None else init_latents
    frames = config.window_frames if given is None else int(given.shape[-1])
    window_s = frames * hop / sample_rate
    one_window = given is not None or init_audio is not None or loop
    if duration_s is None:
        duration = known_s if inpaint_audio is not None else window_s
    else:
        duration = _finite("duration_s", duration_s)
    limit = window_s if one_window else MAX_DURATION_S
    if not 0 < duration <= limit + 1e-9:
        why = ("the model's window" if not one_window
               else "one window: given latents, init audio and loops are not chained")
        raise SettingsError("duration_s", f"duration_s must be in (0, {limit:.2f}] s ({why}); "
                                          f"got {duration:g}")
    latent_rate = sample_rate / hop
    total_frames = max(1, math.ceil(duration * latent_rate - 1e-9))
    regions = _regions(inpaint_regions, inpaint_audio is not None, known_s, duration)
    generate = (generate_frames(total_frames, regions, latent_rate) if inpaint_audio is not None
                else torch.ones(total_frames, dtype=torch.bool))
    edge_s = _finite("inpaint_edge_s", inpaint_edge_s)
    if not 0 <= edge_s <= MAX_EDGE_S:
        raise SettingsError("inpaint_edge_s", f"inpaint_edge_s must be in [0, {MAX_EDGE_S:g}] s, "
                                              f"got {edge_s:g}")
    if loop:
        frames = min(total_frames, config.window_frames)
    elif given is None and total_frames <= config.window_frames and window_mode == "fit":
        frames = min(frames, WINDOW_QUANTUM_FRAMES * math.ceil(
            total_frames / WINDOW_QUANTUM_FRAMES))
    parts = _sections(sections, duration)
    chained = (total_frames > frames or len(parts) > 1) and not one_window
    context = 0.0
    num_windows = int(bool(generate.any()))
    if chained:
        sampled_s = frames / latent_rate  # the windows' length (a "fit" one may be shorter)
        context = (DEFAULT_CONTEXT_FRACTION * sampled_s if context_s is None
                   else _finite("context_s", context_s))
        if not 0 <= context < sampled_s:
            raise SettingsError("context_s", f"context_s must be in [0, {sampled_s:.2f}) s, "
                                             f"shorter than the window; got {context:g}")
        num_windows = len(plan_windows(
            generate, frames, round(context * latent_rate),
            quantum_frames=WINDOW_QUANTUM_FRAMES if window_mode == "fit" else None,
            boundaries=section_boundaries(parts, latent_rate)))
    elif context_s is not None:
        _finite("context_s", context_s)
    resample_steps = _positive_int("resample_steps", resample_steps)
    jump_length = _positive_int("jump_length", jump_length)
    if resample_steps > MAX_RESAMPLE_STEPS:
        raise SettingsError("resample_steps", f"resample_steps must be at most "
                                              f"{MAX_RESAMPLE_STEPS}, got {resample_steps}")
    if resample_steps > 1 and not spec.supports_init:
        raise SettingsError("resample_steps", f"the {spec.name!r} sampler cannot resample: it "
                                              "always runs from pure noise to the end")
    seconds_start, total = _timing(config, seconds_start, seconds_total, duration)
    if inpaint_audio is None:
        level = _check_init(objective, spec.supports_init, spec.name, init_audio,
                            init_noise_level, sigma_min, sigma_max, batch, config,
                            init_latents=init_latents)
    else:  # inpainting starts from pure noise, or part-way at init_noise_level
        level = None if init_noise_level is None else _check_init(
            objective, spec.supports_init, spec.name, inpaint_audio, init_noise_level,
            sigma_min, sigma_max, batch, config)

    if seed is not None and generator is not None:
        raise SettingsError("seed", "give seed or generator, not both")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED - batch + 1):
        raise SettingsError("seed", f"seed must be an integer in [0, 2**63 - 1] with seed + "
                                    f"{batch - 1} (the last item's) within it, got {seed!r}")
    if seed is None and draw:
        seed = draw_seed(generator)
    seeds = () if seed is None else tuple(seed + i for i in range(batch))
    return GenerationSettings(
        prompts=(parts[0][1],) if parts else prompts, negative_prompt=negative_prompt,
        duration_s=float(duration),
        seconds_start=seconds_start, seconds_total=float(total), num_inference_steps=steps,
        guidance_scale=scale, sampler=spec.name, sigma_min=sigma_min, sigma_max=sigma_max,
        num_outputs=num_outputs, seeds=seeds, init_noise_level=level,
        has_init_audio=init_audio is not None, has_initial_latents=latents is not None,
        has_init_latents=init_latents is not None,
        window_frames=int(frames), window=window_mode,
        has_prompt_embeds=prompt_embeds is not None,
        has_negative_prompt_embeds=negative_prompt_embeds is not None, precision=precision,
        has_inpaint_audio=inpaint_audio is not None, inpaint_regions=regions,
        inpaint_edge_s=edge_s, splice=splice, resample_steps=resample_steps,
        jump_length=jump_length, context_s=float(context), num_windows=num_windows,
        sections=parts, loop=loop, guidance_interval=interval,
        unguided_final_steps=int(unguided_final_steps))


def guidance_times(s: GenerationSettings, objective: Objective, spec: SamplerSpec,
                   grid: torch.Tensor) -> tuple[float, float] | None:
    """The network times (t_lo, t_hi) between which a run on ``grid`` applies guidance,
    from ``s.guidance_interval`` and ``s.unguided_final_steps``; None: everywhere.

    The last ``unguided_final_steps`` evaluation levels of the grid fall below t_lo (the
    bound lies halfway between two levels' times, so rounding cannot move a level
    across it)."""
    if s.guidance_scale == 1 or (s.guidance_interval is None and s.unguided_final_steps == 0):
        return None
    lo, hi = 0.0, math.inf
    if s.guidance_interval is not None:
        lo, hi = (objective.network_time(v) for v in s.guidance_interval)
    if s.unguided_final_steps:
        levels = grid.tolist()
        levels = levels if spec.kind == "v-ddim" else levels[:-1]  # the evaluated levels
        k = len(levels) - s.unguided_final_steps
        times = [spec.network_time(v) for v in levels[k - 1:k + 1]]
        lo = max(lo, (times[0] + times[1]) / 2)
    return lo, hi


def _guidance_interval(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if (isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2
            or not all(_is_number(v) for v in value)):
        raise SettingsError("guidance_interval", f"guidance_interval must be two noise levels "
                                                 f"[lo, hi], got {value!r}")
    lo, hi = (float(v) for v in value)
    if not (math.isfinite(lo) and 0 <= lo < hi and not math.isnan(hi)):
        raise SettingsError("guidance_interval", f"guidance_interval needs 0 <= lo < hi, got "
                                                 f"[{lo:g}, {hi:g}]")
    return lo, hi


def _timing(config: DiffusionModelConfig, seconds_start: Any, seconds_total: Any,
            duration: float) -> tuple[float, float]:
    """(seconds_start, seconds_total) of the timing conditioning, checked against the
    ranges the model's timing conditioners were trained on (``[min, max]`` of each, 0-512 s
    for Stable Audio Open): a value given outside its range is refused, not clamped.
    ``seconds_total`` defaults to ``duration``; when that lies beyond the range (a piece
    longer than 512 s, sampled window by window), the model is conditioned on the range's
    end, and the record says so (``seconds_total`` is the value the model saw)."""
    ranges = dict(config.conditioning.timing)
    start = _finite("seconds_start", seconds_start)
    if start < 0:
        raise SettingsError("seconds_start", f"seconds_start must be >= 0, got {start:g}")
    if seconds_total is None:
        total = duration
        if "seconds_total" in ranges:
            total = min(total, ranges["seconds_total"].max_seconds)
    else:
        total = _finite("seconds_total", seconds_total)
    if total <= 0:
        raise SettingsError("seconds_total", f"seconds_total must be > 0, got {total:g}")
    for name, value in (("seconds_start", start), ("seconds_total", total)):
        limits = ranges.get(name)
        if limits is not None and not limits.min_seconds <= value <= limits.max_seconds:
            raise SettingsError(name, f"{name} must be in [{limits.min_seconds:g}, "
                                      f"{limits.max_seconds:g}] s, the range this model's "
                                      f"timing conditioning knows; got {value:g}")
    if start >= total:
        raise SettingsError("seconds_start", f"seconds_start ({start:g} s) must be before the "
                                             f"end of the piece, seconds_total ({total:g} s)")
    return start, total


def _check_latents(name: str, value: Any, batch: int, config: DiffusionModelConfig) -> None:
    """Validate latents given for one window: [batch, D, T], T in [1, window], finite."""
    expected = (batch, config.vae.latent_dim)
    if not isinstance(value, torch.Tensor) or value.dim() != 3 or tuple(
            value.shape[:2]) != expected:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else value
        raise SettingsError(name, f"{name} must be [{batch}, {expected[1]}, T] for {batch} "
                                  f"output(s), got {shape}")
    if value.shape[-1] > config.window_frames:
        raise SettingsError(name, f"{name} have {value.shape[-1]} frames, more than the "
                                  f"model's window of {config.window_frames}")
    if value.shape[-1] < 1:
        raise SettingsError(name, f"{name} have no frames")
    if not torch.isfinite(value).all():
        raise SettingsError(name, f"{name} contain NaN or infinite values")


def _check_init(objective: Objective, supports_init: bool, sampler: str, init_audio: Any,
                init_noise_level: Any, sigma_min: float, sigma_max: float, batch: int,
                config: DiffusionModelConfig, *,
                init_latents: torch.Tensor | None = None) -> float | None:
    """Validate audio-to-audio (from ``init_audio``, or from ``init_latents`` already
    checked); returns the init noise level to use (None without it)."""
    if init_audio is None and init_latents is None:
        if init_noise_level is not None:
            raise SettingsError("init_noise_level", "init_noise_level needs init_audio or "
                                                    "init_latents")
        return None
    if init_audio is not None:
        _check_init_audio(init_audio, batch, config)
    if not supports_init:
        raise SettingsError("sampler", f"audio-to-audio is not available with the {sampler!r} "
                                       "sampler; use a DPM-Solver++ sampler")
    level = (objective.default_init_noise_level if init_noise_level is None
             else _finite("init_noise_level", init_noise_level))
    try:
        objective.check_init_noise_level(level, sigma_min, sigma_max)
    except ValueError as err:
        raise SettingsError("init_noise_level", str(err)) from None
    return level


def _check_init_audio(init_audio: Any, batch: int, config: DiffusionModelConfig) -> None:
    """Validate the audio of audio-to-audio: [C, S] or [B, C, S], float, finite."""
    channels = config.audio_channels
    ok = isinstance(init_audio, torch.Tensor) and init_audio.dim() in (2, 3) and (
        init_audio.shape[-2] == channels) and (init_audio.dim() == 2
                                               or init_audio.shape[0] == batch)
    if not ok:
        shape = tuple(init_audio.shape) if isinstance(init_audio, torch.Tensor) else init_audio
        raise SettingsError("init_audio", f"init_audio must be [{channels}, S] or [{batch}, "
                                          f"{channels}, S] at {config.sample_rate} Hz, got "
                                          f"{shape}")
    if init_audio.shape[-1] < 1:
        raise SettingsError("init_audio", "init_audio has no samples")
    if not init_audio.is_floating_point():
        raise SettingsError("init_audio", f"init_audio must hold float samples in [-1, 1], got "
                                          f"{init_audio.dtype} (convert integer PCM with "
                                          "audio.float() / 32768 for 16-bit)")
    if not torch.isfinite(init_audio).all():
        raise SettingsError("init_audio", "init_audio contains NaN or infinite samples")


def _check_inpaint_audio(inpaint_audio: Any, init_audio: Any, loop: bool, batch: int,
                         config: DiffusionModelConfig) -> float:
    """Validate the known audio of an extension or inpainting; returns its length in s."""
    if inpaint_audio is None:
        return 0.0
    if init_audio is not None:
        raise SettingsError("inpaint_audio", "give init_audio (audio-to-audio) or inpaint_audio "
                                             "(keep it, generate around it), not both; "
                                             "init_noise_level applies to either")
    if loop:
        raise SettingsError("loop", "a loop is generated from scratch: it takes no "
                                    "inpaint_audio")
    channels = config.audio_channels
    if not isinstance(inpaint_audio, torch.Tensor) or inpaint_audio.dim() not in (2, 3) or (
            inpaint_audio.shape[-2] != channels) or (inpaint_audio.dim() == 3
                                                     and inpaint_audio.shape[0] != batch):
        shape = (tuple(inpaint_audio.shape) if isinstance(inpaint_audio, torch.Tensor)
                 else type(inpaint_audio).__name__)
        raise SettingsError("inpaint_audio", f"inpaint_audio must be [{channels}, S] or "
                                             f"[{batch}, {channels}, S] at {config.sample_rate} "
                                             f"Hz, got {shape}")
    if inpaint_audio.shape[-1] < 1:
        raise SettingsError("inpaint_audio", "inpaint_audio has no samples")
    if not inpaint_audio.is_floating_point() or not torch.isfinite(inpaint_audio).all():
        raise SettingsError("inpaint_audio", "inpaint_audio must hold finite float samples")
    return inpaint_audio.shape[-1] / config.sample_rate


def _regions(regions: Any, has_audio: bool, known_s: float,
             duration: float) -> tuple[tuple[float, float], ...]:
    """The regions to generate, sorted and merged; what lies past the known audio is
    always generated (there is nothing to keep there)."""
    if regions is None:
        given: list[tuple[float, float]] = []
    elif not has_audio:
        raise SettingsError("inpaint_regions", "inpaint_regions need inpaint_audio (the audio "
                                               "around them)")
    else:
        if isinstance(regions, str) or not isinstance(regions, Sequence):
            raise SettingsError("inpaint_regions", "inpaint_regions must be a list of "
                                                   "(start_s, end_s) pairs")
        given = []
        for region in regions:
            if isinstance(region, str) or not isinstance(region, Sequence) or len(region) != 2:
                raise SettingsError("inpaint_regions", f"each region must be a pair (start_s, "
                                                       f"end_s), got {region!r}")
            start, end = (_finite("inpaint_regions", v) for v in region)
            if not 0 <= start < end <= duration + 1e-9:
                raise SettingsError("inpaint_regions", f"region ({start:g}, {end:g}) must lie "
                                                       f"within the piece, 0 <= start < end <= "
                                                       f"{duration:g} s")
            given.append((start, min(end, duration)))
    if has_audio and known_s < duration - 1e-9:
        given.append((known_s, duration))
    merged: list[tuple[float, float]] = []
    for start, end in sorted(given):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _sections(sections: Any, duration: float) -> tuple[tuple[float, str], ...]:
    """(start_s, prompt) parts of one piece: the first at 0, starts increasing."""
    if sections is None:
        return ()
    if isinstance(sections, str) or not isinstance(sections, Sequence) or not sections:
        raise SettingsError("sections", "sections must be a non-empty list of (start_s, "
                                        "prompt) pairs")
    parts: list[tuple[float, str]] = []
    for section in sections:
        if isinstance(section, str) or not isinstance(section, Sequence) or len(section) != 2:
            raise SettingsError("sections", f"each section must be (start_s, prompt), got "
                                            f"{section!r}")
        start, text = section
        start = _finite("sections", start)
        if not isinstance(text, str) or not text.strip():
            raise SettingsError("sections", f"the section at {start:g} s needs a prompt")
        check_text("sections", text)
        if parts and start <= parts[-1][0]:
            raise SettingsError("sections", "section starts must increase")
        if start >= duration:
            raise SettingsError("sections", f"the section at {start:g} s starts after the "
                                            f"piece ends ({duration:g} s)")
        parts.append((start, text))
    if parts[0][0] != 0:
        raise SettingsError("sections", "the first section must start at 0 s")
    return tuple(parts)

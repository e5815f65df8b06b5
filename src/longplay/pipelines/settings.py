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

from longplay.config import WINDOWS, DiffusionModelConfig
from longplay.diffusion import Objective, SamplingDefaults, get_objective
from longplay.errors import SettingsError

__all__ = [
    "DEFAULT_SIGMA_MAX",
    "DEFAULT_SIGMA_MIN",
    "DRAWN_SEED_BOUND",
    "MAX_SEED",
    "PRECISIONS",
    "WINDOW_QUANTUM_FRAMES",
    "GenerationSettings",
    "draw_seed",
    "resolve_settings",
    "sampling_defaults",
]

MAX_SEED = 2**63 - 1
"""The largest seed a generation accepts (item i of a batch uses seed + i <= MAX_SEED)."""
DRAWN_SEED_BOUND = 2**31 - 1
"""Seeds drawn when none is given are below this: they fit the 32-bit integers of other
tools and are exact in JavaScript numbers (the studio, JSON clients)."""
DEFAULT_SIGMA_MIN = 0.03
DEFAULT_SIGMA_MAX = 500.0
"""The VE noise levels of the v-objective samplers, log-linear from max to min (the
paper's and the reference UI's)."""
PRECISIONS = ("fp32", "bf16", "auto")
"""auto: bf16 where the device runs it fast, else fp32."""
WINDOW_QUANTUM_FRAMES = 64
"""A "fit" window is the request rounded up to a multiple of this many latent frames."""


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
        sigma_min, sigma_max: the VE noise levels of the v-objective samplers.
        num_outputs: items generated per prompt.
        seeds: [B] the seed of each item: seeds[i] = seeds[0] + i.
        init_noise_level: the level init audio is noised to, None without init audio.
        has_init_audio, has_initial_latents, has_prompt_embeds, has_negative_prompt_embeds:
            which input tensors the generation used (they are not part of the record).
        window: "full" or "fit", how the sampled window was chosen.
        window_frames: latent frames sampled (then decoded and trimmed to duration_s).
        precision: what the DiT ran in ("fp32" or "bf16").
    """

    prompts: tuple[str, ...]
    negative_prompt: str | None
    duration_s: float
    seconds_start: float
    seconds_total: float
    num_inference_steps: int
    guidance_scale: float
    sampler: str
    sigma_min: float
    sigma_max: float
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
            "prompt": list(self.prompts) if self.prompts else None,
            "negative_prompt": self.negative_prompt, "duration_s": self.duration_s,
            "seconds_start": self.seconds_start, "seconds_total": self.seconds_total,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale, "sampler": self.sampler,
            "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
            "seed": self.seeds[0] if self.seeds else None, "num_outputs": self.num_outputs,
            "init_noise_level": self.init_noise_level, "window": self.window,
        }


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A random seed in [0, DRAWN_SEED_BOUND): from ``generator`` when given (so that a
    seeded generator gives a reproducible seed), else from the operating system."""
    if generator is not None:
        return int(torch.randint(0, DRAWN_SEED_BOUND, (1,), generator=generator).item())
    return secrets.randbelow(DRAWN_SEED_BOUND)


def sampling_defaults(config: DiffusionModelConfig) -> SamplingDefaults:
    """The model's defaults: its objective's, with the model's own number of steps where
    its config sets one (``inference.steps``)."""
    defaults = get_objective(config.objective).defaults
    if config.steps is not None:
        defaults = replace(defaults, num_inference_steps=config.steps)
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


def _prompts(prompt: Any, field: str) -> tuple[str, ...]:
    prompts = (prompt,) if isinstance(prompt, str) else None
    if prompts is None and isinstance(prompt, Sequence):
        prompts = tuple(prompt)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise SettingsError(field, f"{field} must be a string or a non-empty list of strings, "
                                   f"got {type(prompt).__name__}")
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
    sigma_min: float = DEFAULT_SIGMA_MIN,
    sigma_max: float = DEFAULT_SIGMA_MAX,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    num_outputs: int = 1,
    latents: torch.Tensor | None = None,
    init_audio: torch.Tensor | None = None,
    init_noise_level: float | None = None,
    window: str | None = None,
    prompt_embeds: torch.Tensor | None = None,
    prompt_attention_mask: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
    negative_attention_mask: torch.Tensor | None = None,
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

    # Prompts: strings or precomputed text-encoder features, not both.
    if prompt_embeds is not None:
        if prompt is not None:
            raise SettingsError("prompt", "give prompt or prompt_embeds, not both")
        num_prompts = _check_embeds("prompt_embeds", prompt_embeds, prompt_attention_mask,
                                    "prompt_attention_mask", None, config)
        prompts: tuple[str, ...] = ()
    else:
        if prompt_attention_mask is not None:
            raise SettingsError("prompt_attention_mask", "prompt_attention_mask needs "
                                                         "prompt_embeds")
        prompts = _prompts(prompt, "prompt")
        num_prompts = len(prompts)
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise SettingsError("negative_prompt", "negative_prompt must be a string, got "
                                               f"{type(negative_prompt).__name__}")
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
    steps = _positive_int("num_inference_steps", defaults.num_inference_steps
                          if num_inference_steps is None else num_inference_steps)
    scale = _finite("guidance_scale", defaults.guidance_scale
                    if guidance_scale is None else guidance_scale)
    if scale <= 0:
        raise SettingsError("guidance_scale", f"guidance_scale must be > 0 (1 = no guidance), "
                                              f"got {scale:g}")
    sigma_min = _finite("sigma_min", sigma_min)
    sigma_max = _finite("sigma_max", sigma_max)
    if not 0 < sigma_min < sigma_max:
        raise SettingsError("sigma_max", f"need 0 < sigma_min < sigma_max, got {sigma_min:g} "
                                         f"and {sigma_max:g}")
    sampler_name = defaults.sampler if sampler is None else sampler
    if not isinstance(sampler_name, str):
        raise SettingsError("sampler", f"sampler must be a name, got {sampler_name!r}")
    try:
        spec = objective.sampler(sampler_name, model=f"this {config.objective} model")
    except ValueError as err:
        raise SettingsError("sampler", str(err)) from None

    # The window: the latents' length, else the model's (or the shortest that fits).
    window_mode = config.window if window is None else window
    if window_mode not in WINDOWS:
        raise SettingsError("window", f"window must be one of {', '.join(WINDOWS)}, got "
                                      f"{window_mode!r}")
    if latents is not None:
        expected = (batch, config.vae.latent_dim)
        if not isinstance(latents, torch.Tensor) or latents.dim() != 3 or tuple(
                latents.shape[:2]) != expected:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else latents
            raise SettingsError("latents", f"latents must be [{batch}, {expected[1]}, T] for "
                                           f"{batch} output(s), got {shape}")
        if latents.shape[-1] > config.window_frames:
            raise SettingsError("latents", f"latents have {latents.shape[-1]} frames, more than "
                                           f"the model's window of {config.window_frames}")
        if latents.shape[-1] < 1:
            raise SettingsError("latents", "latents have no frames")
        if not torch.isfinite(latents).all():
            raise SettingsError("latents", "latents contain NaN or infinite values")
    frames = config.window_frames if latents is None else int(latents.shape[-1])
    window_s = frames * hop / sample_rate
    duration = window_s if duration_s is None else _finite("duration_s", duration_s)
    if not 0 < duration <= window_s + 1e-9:
        raise SettingsError("duration_s", f"duration_s must be in (0, {window_s:.2f}] s, the "
                                          f"model's window; got {duration:g}")
    if latents is None and window_mode == "fit":
        frames = min(frames, WINDOW_QUANTUM_FRAMES * math.ceil(
            duration * sample_rate / hop / WINDOW_QUANTUM_FRAMES))
    seconds_start = _finite("seconds_start", seconds_start)
    if seconds_start < 0:
        raise SettingsError("seconds_start", f"seconds_start must be >= 0, got "
                                             f"{seconds_start:g}")
    total = duration if seconds_total is None else _finite("seconds_total", seconds_total)
    if total <= 0:
        raise SettingsError("seconds_total", f"seconds_total must be > 0, got {total:g}")

    level = _check_init(objective, spec.supports_init, spec.name, init_audio, init_noise_level,
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
        prompts=prompts, negative_prompt=negative_prompt, duration_s=float(duration),
        seconds_start=seconds_start, seconds_total=float(total), num_inference_steps=steps,
        guidance_scale=scale, sampler=spec.name, sigma_min=sigma_min, sigma_max=sigma_max,
        num_outputs=num_outputs, seeds=seeds, init_noise_level=level,
        has_init_audio=init_audio is not None, has_initial_latents=latents is not None,
        window_frames=int(frames), window=window_mode,
        has_prompt_embeds=prompt_embeds is not None,
        has_negative_prompt_embeds=negative_prompt_embeds is not None, precision=precision)


def _check_init(objective: Objective, supports_init: bool, sampler: str, init_audio: Any,
                init_noise_level: Any, sigma_min: float, sigma_max: float, batch: int,
                config: DiffusionModelConfig) -> float | None:
    """Validate audio-to-audio; returns the init noise level to use (None without it)."""
    if init_audio is None:
        if init_noise_level is not None:
            raise SettingsError("init_noise_level", "init_noise_level needs init_audio")
        return None
    channels = config.audio_channels
    ok = isinstance(init_audio, torch.Tensor) and init_audio.dim() in (2, 3) and (
        init_audio.shape[-2] == channels) and (init_audio.dim() == 2
                                               or init_audio.shape[0] == batch)
    if not ok:
        shape = tuple(init_audio.shape) if isinstance(init_audio, torch.Tensor) else init_audio
        raise SettingsError("init_audio", f"init_audio must be [{channels}, S] or [{batch}, "
                                          f"{channels}, S] at {config.sample_rate} Hz, got "
                                          f"{shape}")
    if not torch.isfinite(init_audio).all():
        raise SettingsError("init_audio", "init_audio contains NaN or infinite samples")
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

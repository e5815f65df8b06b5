"""Text (+ timing) -> conditioning -> sampler -> latents -> chunked VAE decode -> trim.

Shape legend: P prompts, B batch (prompts x outputs), C audio channels, S samples,
D latent channels, T latent frames, L text tokens, E text-encoder width.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from longplay.builders import DiffusionModel
from longplay.checkpoints import load_diffusion_model
from longplay.conditioning import Conditioning, ConditioningTokens
from longplay.diffusion import NoiseFn, Objective, SamplingDefaults, get_objective, guided
from longplay.errors import GenerationError, SettingsError
from longplay.layers import Compiler, shared_weights_copy
from longplay.pipelines.settings import (
    DEFAULT_SIGMA_MAX,
    DEFAULT_SIGMA_MIN,
    PRECISIONS,
    GenerationSettings,
    resolve_settings,
    sampling_defaults,
)
from longplay.transformer import DiTContext

__all__ = [
    "COMPILABLE",
    "TextToMusicOutput",
    "TextToMusicPipeline",
    "bf16_supported",
    "default_compile_parts",
]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` with stage "sampling" or "decoding"."""

SILENCE_PEAK = 1e-6
COMPILABLE = ("dit", "vae")
"""Components ``compile=`` can name: the DiT's blocks and the VAE's decoder."""


def default_compile_parts(device: torch.device) -> tuple[str, ...]:
    """What ``compile=True`` compiles: on a GPU the DiT's blocks and the VAE decoder; on a
    CPU the VAE decoder only, where fusing the Snake activations with the casts around
    the convolutions gains 1.1x (fp32) to 1.6x (bf16), while the DiT's step is bound by
    its matrix products and gains nothing (benchmarks/compile.py)."""
    return COMPILABLE if device.type == "cuda" else ("vae",)


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 matmuls are fast here: CUDA with bf16, or a CPU whose oneDNN
    has native bf16 (AVX512-BF16 / AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` as it will run on ``device``: auto picks, unsupported bf16 warns."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision == "bf16" and not bf16_supported(device):
        logger.warning("bf16 is not supported on this device (no AVX512-BF16/AMX through "
                       "oneDNN): running in fp32")
        return "fp32"
    return precision


def _full_precision(dtype: torch.dtype) -> torch.dtype:
    """The dtype an "fp32" DiT runs in: float32, or float64 where the model is in it."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _compile_parts(compile: bool | str | Sequence[str] | None,
                   device: torch.device) -> tuple[str, ...]:
    if compile is True:
        return default_compile_parts(device)
    if compile is False or compile is None:
        return ()
    parts = (compile,) if isinstance(compile, str) else tuple(compile)
    unknown = [p for p in parts if p not in COMPILABLE]
    if unknown:
        raise ValueError(f"compile must be True, False or a list of {', '.join(COMPILABLE)}; "
                         f"got {unknown!r}")
    return parts


@dataclass(frozen=True)
class TextToMusicOutput:
    """audio [B, C, S] (S = duration_s * sample_rate), latents [B, D, T] (the whole
    window), the sample rate and the settings. Item i is prompt i // num_outputs."""

    audio: torch.Tensor
    latents: torch.Tensor
    sample_rate: int
    settings: GenerationSettings

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.settings.seeds


class TextToMusicPipeline:
    """Generate music from text with a latent diffusion model.

    >>> pipe = TextToMusicPipeline.from_pretrained("stable-audio-open-1.0/")
    >>> out = pipe("warm lo-fi piano, 80 BPM", duration_s=30, seed=0)
    >>> out.audio.shape  # [1, 2, 1323000]

    The pipeline never changes the model it is given: it runs its own copy of the DiT and
    VAE modules over the same weights (converted to bf16 for the DiT when it runs in bf16),
    so pipelines of different precisions or compilation can share one model, and
    ``pipe.precision`` always says what runs. ``pipe.model`` is that copy.
    """

    def __init__(self, model: DiffusionModel, *, precision: str = "fp32",
                 compile: bool | str | Sequence[str] = False) -> None:
        device = model.dit.project_in.weight.device
        self.precision = _resolve_precision(precision, device)
        parts = _compile_parts(compile, device)
        self.config = model.config
        self.objective: Objective = get_objective(model.config.objective)
        self.defaults: SamplingDefaults = sampling_defaults(model.config)
        # The DiT in bf16 or as given; the sampler's state, the text encoder, the
        # conditioner and the VAE's weights and activations stay as loaded. On a CPU the
        # VAE's convolutions also run in bf16 (fp32 accumulation in oneDNN: decoded audio
        # within ~48 dB SI-SDR of fp32); on a GPU the VAE stays in fp32, as half-precision
        # VAE decodes are reported to add audible noise.
        bf16 = self.precision == "bf16"
        self.dit_dtype = torch.bfloat16 if bf16 else _full_precision(
            model.dit.project_in.weight.dtype)
        dit = shared_weights_copy(model.dit, self.dit_dtype)
        vae = shared_weights_copy(model.vae)
        vae.set_conv_dtype(torch.bfloat16 if bf16 and device.type == "cpu" else None)
        # Compiled on first use (tens of seconds per component on a CPU; torch caches the
        # result on disk for later processes); eager with one warning where the compiler
        # is missing or fails.
        self._compilers: dict[str, Compiler] = {}
        if "dit" in parts:
            self._compilers["dit"] = Compiler("the diffusion transformer's blocks", device)
        if "vae" in parts:
            self._compilers["vae"] = Compiler("the VAE decoder", device)
        dit.compile_blocks(self._compilers.get("dit"))
        vae.compile_decoder(self._compilers.get("vae"))
        self.model = DiffusionModel(model.config, vae, model.conditioner, dit,
                                    model.text_encoder, model.source)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, text_encoder_path: str | Path | None = None,
                        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                        precision: str = "fp32",
                        compile: bool | str | Sequence[str] = False) -> TextToMusicPipeline:
        """Load a Stable Audio Open 1.0 / Open Small folder, or a diffusers folder.

        ``precision="bf16"`` runs the diffusion transformer in bfloat16 (where the device
        supports it, else fp32 with a warning) and keeps the sampler, the text encoder and
        the VAE's weights in fp32; on a CPU the VAE's convolutions run in bf16 too. About
        2x faster DiT steps and 1.5-2x faster decodes on CPUs with AVX512-BF16
        (benchmarks/). ``precision="auto"`` (the command line's default) picks bf16 where
        the device supports it and fp32 elsewhere, without a warning; the default here is
        fp32, the reference's exact arithmetic, as in diffusers. The DiT is loaded in the
        precision it runs in.

        ``compile=True`` runs what gains from ``torch.compile`` on the device through it
        (:func:`default_compile_parts`), or name the parts: ``compile=("dit", "vae")``."""
        target = _resolve_precision(precision, torch.device(device))
        dit_dtype = torch.bfloat16 if target == "bf16" else dtype
        model = load_diffusion_model(path, text_encoder_path=text_encoder_path, device=device,
                                     dtype=dtype, dit_dtype=dit_dtype)
        return cls(model, precision=target, compile=compile)

    @property
    def compiled(self) -> tuple[str, ...]:
        """The components running through ``torch.compile`` now (a component falls back
        to eager, with a warning, where the compiler is missing or fails)."""
        return tuple(name for name, c in self._compilers.items() if c.active)

    @property
    def device(self) -> torch.device:
        return self.model.dit.project_in.weight.device

    @property
    def vae_dtype(self) -> torch.dtype:
        """The VAE's dtype, which is also the sampler's (the DiT may run in bf16)."""
        return next(self.model.vae.parameters()).dtype

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def max_duration_s(self) -> float:
        return self.config.max_duration_s

    # -- settings -----------------------------------------------------------------------

    def resolve_settings(
        self,
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
    ) -> GenerationSettings:
        """The complete, validated settings of a call with these arguments (see
        :meth:`__call__`): the model's defaults filled in and the seed drawn (once, here).
        Nothing runs; pass the result to :meth:`__call__` with the same tensors.

        Raises:
            SettingsError: (a ValueError) naming the argument at fault in ``field``.
        """
        return resolve_settings(
            self.config, prompt, negative_prompt, duration_s=duration_s,
            seconds_start=seconds_start, seconds_total=seconds_total,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            sampler=sampler, sigma_min=sigma_min, sigma_max=sigma_max, generator=generator,
            seed=seed, num_outputs=num_outputs, latents=latents, init_audio=init_audio,
            init_noise_level=init_noise_level, window=window, prompt_embeds=prompt_embeds,
            prompt_attention_mask=prompt_attention_mask,
            negative_prompt_embeds=negative_prompt_embeds,
            negative_attention_mask=negative_attention_mask, precision=self.precision)

    def check_inputs(self, prompt: str | Sequence[str] | None = None,
                     negative_prompt: str | None = None, **kwargs) -> None:
        """Validate the arguments of a call (the keyword arguments of :meth:`__call__`,
        ``window`` included) without running anything or drawing a seed.

        Raises:
            SettingsError: (a ValueError) naming the argument at fault in ``field``.
        """
        resolve_settings(self.config, prompt, negative_prompt, precision=self.precision,
                         draw=False, **kwargs)

    # -- conditioning -------------------------------------------------------------------

    def encode_prompt(self, prompts: Sequence[str]) -> ConditioningTokens | None:
        """Text-encoder features [P, L, E] and mask [P, L] of ``prompts`` (None for a
        model without text conditioning): what ``prompt_embeds`` takes."""
        encoder = self.model.text_encoder
        if self.config.conditioning.text is None:
            return None
        if encoder is None:
            raise ValueError("this pipeline was loaded without its text encoder")
        return encoder.encode(encoder.tokenize(list(prompts)))

    def prepare_conditioning(self, features: ConditioningTokens | None, batch: int,
                             seconds_start: float, seconds_total: float) -> Conditioning:
        """The conditioning of ``batch`` items from text features [B, L, E] (or None) and
        the timing values."""
        seconds = {}
        for cid in self.model.conditioner.timing_ids:
            value = seconds_start if cid == "seconds_start" else seconds_total
            seconds[cid] = torch.full((batch,), float(value), device=self.device)
        return self.model.conditioner(features, seconds)

    # -- the call -----------------------------------------------------------------------

    def __call__(
        self,
        prompt: str | Sequence[str] | GenerationSettings | None = None,
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
        noise_fn: NoiseFn | None = None,
        progress: ProgressFn | None = None,
    ) -> TextToMusicOutput:
        """Generate audio [B, C, duration_s * sample_rate] for B = P * num_outputs.

        Args:
            prompt: one prompt or a list of P; item i of the batch is prompt
                i // num_outputs. Or the :class:`GenerationSettings` that
                :meth:`resolve_settings` returned (then no other setting may be given;
                the tensors below still are).
            negative_prompt: the unconditional branch of guidance uses this prompt's
                tokens instead of an all-zero context.
            duration_s: output length; default the model's window. Also the
                ``seconds_total`` conditioning unless that is given.
            seconds_start, seconds_total: timing conditioning (seconds_total defaults to
                duration_s): the position and length of the piece the window belongs to.
            num_inference_steps, guidance_scale, sampler: default per objective (v models:
                100 steps of "dpmpp-3m-sde" with guidance 7; rectified flow: 8 "pingpong"
                steps without guidance); a model config may set its own number of
                steps (``inference.steps``; the demo model: 50). Guidance 1 runs no
                unconditional pass. Rectified-flow models also take stable-audio-tools'
                sampler names "euler" and "dpmpp" (recorded as "rf-euler", "rf-dpmpp").
            sigma_min, sigma_max: the log-linear noise levels of the VE samplers.
            generator / seed: item i uses seed + i, so item i of a batch equals a single
                generation with seed + i. A generator gives the base seed from its state;
                with neither, a random seed is drawn and recorded in the output.
            latents: initial noise [B, D, T] (standard normal, unscaled), as in diffusers;
                T sets the window (default the model's).
            init_audio: audio-to-audio: [C, S] or [B, C, S] at the model's sample rate, encoded
                and noised to ``init_noise_level`` (a VE sigma for v models, default 1.0; an RF
                time in (0, 1] for rectified-flow models, default 0.5) before sampling.
            window: "full" samples the model's whole training window and trims it (the
                paper's and diffusers' behaviour; the model learns to end the piece and
                leave the rest silent); "fit" samples the shortest window of a multiple of
                64 latent frames (3 s at 21.5 Hz) that holds ``duration_s``: much faster
                for short requests, for models also trained on shorter windows. Default:
                the model's ``window`` setting ("full" unless its config says otherwise).
                Ignored when ``latents`` are given (their T is the window).
            prompt_embeds, prompt_attention_mask: precomputed text-encoder features
                [P, L, E] and mask [P, L] (:meth:`encode_prompt`) instead of ``prompt``, as
                in diffusers; the mask defaults to all tokens.
            negative_prompt_embeds, negative_attention_mask: the same for the negative
                prompt ([1 or P, L, E]).
            noise_fn: replaces the stochastic samplers' per-step noise (tests).
            progress: ``progress(stage, done, total)``.
        """
        # 1. Check the inputs and resolve the settings (defaults, seeds).
        tensors = {"latents": latents, "init_audio": init_audio, "prompt_embeds": prompt_embeds,
                   "prompt_attention_mask": prompt_attention_mask,
                   "negative_prompt_embeds": negative_prompt_embeds,
                   "negative_attention_mask": negative_attention_mask}
        if isinstance(prompt, GenerationSettings):
            given = {"negative_prompt": negative_prompt, "duration_s": duration_s,
                     "seconds_total": seconds_total,
                     "num_inference_steps": num_inference_steps,
                     "guidance_scale": guidance_scale, "sampler": sampler,
                     "generator": generator, "seed": seed, "init_noise_level": init_noise_level,
                     "window": window}
            extra = [k for k, v in given.items() if v is not None] + [
                k for k, v, default in (("seconds_start", seconds_start, 0.0),
                                        ("sigma_min", sigma_min, DEFAULT_SIGMA_MIN),
                                        ("sigma_max", sigma_max, DEFAULT_SIGMA_MAX),
                                        ("num_outputs", num_outputs, 1)) if v != default]
            if extra:
                raise SettingsError(extra[0], f"give the resolved settings or keyword "
                                              f"arguments, not both (got {', '.join(extra)})")
            settings = self._check_resolved(prompt, tensors)
        else:
            settings = self.resolve_settings(
                prompt, negative_prompt, duration_s=duration_s, seconds_start=seconds_start,
                seconds_total=seconds_total, num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale, sampler=sampler, sigma_min=sigma_min,
                sigma_max=sigma_max, generator=generator, seed=seed, num_outputs=num_outputs,
                init_noise_level=init_noise_level, window=window, **tensors)
        s = settings
        batch = s.batch_size
        spec = self.objective.sampler(s.sampler)
        generators = [torch.Generator().manual_seed(seed) for seed in s.seeds]
        latent_shape = (self.config.vae.latent_dim, s.window_frames)
        if latents is None:
            noise = torch.cat([torch.randn((1, *latent_shape), generator=g) for g in generators])
        else:
            noise = latents.float().cpu()
        noise = noise.to(self.device, self.vae_dtype)
        if noise_fn is None and spec.stochastic:
            def noise_fn(i: int, x: torch.Tensor) -> torch.Tensor:
                draws = [torch.randn((1, *x.shape[1:]), generator=g) for g in generators]
                return torch.cat(draws).to(x.device, x.dtype)

        with torch.inference_mode():
            # 2. Encode the prompts (or take the given features), one row per item.
            features = self._text_features(s.prompts, prompt_embeds, prompt_attention_mask,
                                           s.num_outputs)
            # 3. The conditioning and the guided network function.
            cond = self.prepare_conditioning(features, batch, s.seconds_start, s.seconds_total)
            model_fn = self._model_fn(cond, s, negative_prompt_embeds, negative_attention_mask)
            # 4. The starting state: noise, or the encoded init audio noised to its level.
            init_latents = (None if init_audio is None
                            else self._encode_init(init_audio, batch, s.window_frames))
            start = self.objective.start(spec, noise, s.num_inference_steps,
                                         sigma_min=s.sigma_min, sigma_max=s.sigma_max,
                                         init_latents=init_latents,
                                         init_noise_level=s.init_noise_level)

            def on_step(step) -> None:
                if progress is not None:
                    progress("sampling", step.i + 1, s.num_inference_steps)

            # 5. Sample.
            sampled = spec.fn(self.objective.denoiser(model_fn), start.x, start.grid,
                              noise_fn=noise_fn, callback=on_step)
            if not torch.isfinite(sampled).all():
                raise GenerationError("sampling produced NaN or infinite latents; the model "
                                      "weights or the settings (e.g. a huge guidance scale) are "
                                      "unusable")
            # 6. Decode and trim. Chunks as large as the memory allows (or none when the
            # batch fits); a batch too large for efficient chunks is decoded a few items
            # at a time.
            vae = self.model.vae
            plan = vae.auto_decode_plan(sampled.shape[-1], batch=sampled.shape[0],
                                        dtype=sampled.dtype)
            audio = vae.decode(
                sampled, num_samples=round(s.duration_s * self.sample_rate),
                chunk_frames=plan.chunk_frames, batch_size=plan.batch_size,
                progress=None if progress is None else lambda i, n: progress("decoding", i, n))
        # 7. Refuse unusable output.
        self._check_output(audio)
        return TextToMusicOutput(audio.float().cpu(), sampled.float().cpu(), self.sample_rate,
                                 settings)

    # -- pieces of the call -------------------------------------------------------------

    def _check_resolved(self, settings: GenerationSettings,
                        tensors: dict[str, torch.Tensor | None]) -> GenerationSettings:
        """``settings`` checked against the model and the given tensors: it must resolve
        to itself (a record made for another model, or edited by hand, is refused)."""
        if not settings.seeds:
            raise SettingsError("seed", "these settings have no seeds; use resolve_settings "
                                        "to make them")
        again = self.resolve_settings(**settings.call_arguments(), **tensors)
        mine = [f for f in ("prompts", "negative_prompt", "duration_s", "seconds_start",
                            "seconds_total", "num_inference_steps", "guidance_scale",
                            "sampler", "sigma_min", "sigma_max", "num_outputs", "seeds",
                            "init_noise_level", "has_init_audio", "has_initial_latents",
                            "window_frames", "window", "has_prompt_embeds",
                            "has_negative_prompt_embeds")
                if getattr(again, f) != getattr(settings, f)]
        if mine:
            raise SettingsError(mine[0], f"the settings do not fit this model and these inputs "
                                         f"({', '.join(mine)} differ from what they resolve to)")
        return again

    def _text_features(self, prompts: tuple[str, ...], prompt_embeds: torch.Tensor | None,
                       mask: torch.Tensor | None, num_outputs: int) -> ConditioningTokens | None:
        """Features [B, L, E] and mask [B, L] of the prompts (or the given features)."""
        if prompt_embeds is not None:
            features = _given_features(prompt_embeds, mask, self.device)
        else:
            features = self.encode_prompt(prompts)
        if features is None or num_outputs == 1:
            return features
        return ConditioningTokens(features.tokens.repeat_interleave(num_outputs, 0),
                                  features.mask.repeat_interleave(num_outputs, 0))

    def _model_fn(self, cond: Conditioning, s: GenerationSettings,
                  negative_embeds: torch.Tensor | None,
                  negative_mask: torch.Tensor | None):
        """The network function the sampler calls, with the conditioning projected once."""
        dit, dtype = self.model.dit, self.dit_dtype
        cond_context = dit.prepare_context(cond.to(self.device, dtype))

        # The sampler works in the latents' dtype; the network in the pipeline's.
        def model_cond(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return dit(x.to(dtype), t, cond_context).to(x.dtype)

        if s.guidance_scale == 1:
            return model_cond
        batch = s.batch_size
        if s.negative_prompt is not None or negative_embeds is not None:
            if negative_embeds is not None:
                features = _given_features(negative_embeds, negative_mask, self.device)
                repeat = batch // features.tokens.shape[0]  # one row, or one per prompt
                features = ConditioningTokens(features.tokens.repeat_interleave(repeat, 0),
                                              features.mask.repeat_interleave(repeat, 0))
            else:
                features = self.encode_prompt([s.negative_prompt] * batch)
            uncond = self.prepare_conditioning(features, batch, s.seconds_start, s.seconds_total)
        else:
            uncond = cond.without_context()
        both: DiTContext = dit.prepare_context(cond.cat(uncond).to(self.device, dtype))

        def model_both(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return dit(x.to(dtype), t, both).to(x.dtype)

        return guided(model_cond, model_both, s.guidance_scale)

    def _encode_init(self, init_audio: torch.Tensor, batch: int, window: int) -> torch.Tensor:
        audio = init_audio if init_audio.dim() == 3 else init_audio[None].expand(batch, -1, -1)
        num_samples = window * self.config.vae.hop_length
        audio = audio[..., :num_samples].to(self.device, self.vae_dtype)
        if audio.shape[-1] < num_samples:
            audio = torch.nn.functional.pad(audio, (0, num_samples - audio.shape[-1]))
        return self.model.vae.encode(audio).mode()  # [B, D, T]

    def _check_output(self, audio: torch.Tensor) -> None:
        if not torch.isfinite(audio).all():
            raise GenerationError("the decoded audio contains NaN or infinite samples; check the "
                                  "model weights and the precision it runs in")
        peaks = audio.abs().flatten(1).amax(dim=1)
        silent = [i for i, p in enumerate(peaks.tolist()) if p < SILENCE_PEAK]
        if silent:
            raise GenerationError(f"output(s) {silent} are silent (peak below {SILENCE_PEAK}); the "
                                  "model produced no sound for these settings")


def _given_features(embeds: torch.Tensor, mask: torch.Tensor | None,
                    device: torch.device) -> ConditioningTokens:
    """Caller-given text features [N, L, E] and mask [N, L] (default: every token), with
    the padding zeroed as the text encoders return it."""
    mask = (torch.ones(embeds.shape[:2], dtype=torch.bool) if mask is None
            else mask.to(torch.bool))
    mask = mask.to(device)
    tokens = embeds.to(device, torch.float32) * mask[..., None]
    return ConditioningTokens(tokens, mask)

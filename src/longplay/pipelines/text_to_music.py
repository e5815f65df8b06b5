"""Text (+ timing) -> conditioning -> sampler -> latents -> chunked VAE decode -> trim.

Shape legend: B batch (prompts x outputs), C audio channels, S samples, D latent
channels, T latent frames.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from longplay.checkpoints.diffusion import DiffusionModel, load_diffusion_model
from longplay.conditioning import Conditioning, ConditioningTokens
from longplay.config import WINDOWS
from longplay.diffusion import (
    SAMPLERS,
    RFDenoiser,
    VDenoiser,
    get_sampler,
    guided,
    log_linear_sigmas,
    logsnr_shift_t_grid,
)
from longplay.layers import Compiler
from longplay.transformer import DiTContext

logger = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` with stage "sampling" or "decoding"."""

SILENCE_PEAK = 1e-6
PRECISIONS = ("fp32", "bf16", "auto")
"""auto: bf16 where the device runs it fast (``bf16_supported``), else fp32."""
WINDOW_QUANTUM_FRAMES = 64
"""A "fit" window is the request rounded up to a multiple of this many latent frames."""
MAX_SEED = 2**63 - 1
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


class GenerationError(RuntimeError):
    """A generation that produced unusable output (NaN or silence); the message says why."""


@dataclass(frozen=True)
class SamplingDefaults:
    """Per-objective defaults of the pipeline call."""

    sampler: str
    num_inference_steps: int
    guidance_scale: float


# v-objective models (Stable Audio Open 1.0, Stable Audio 2.0): the paper's DPM-Solver++,
# 100 steps, CFG 7, with the stochastic 3M variant of the reference UI. Rectified-flow
# models (Stable Audio Open Small): 8 ping-pong steps without guidance.
DEFAULTS = {
    "v": SamplingDefaults("dpmpp-3m-sde", 100, 7.0),
    "rectified_flow": SamplingDefaults("pingpong", 8, 1.0),
    "rf_denoiser": SamplingDefaults("pingpong", 8, 1.0),
}


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that determines a generation (with the model), as used."""

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
    window_frames: int  # latent frames sampled (then decoded and trimmed to duration_s)
    precision: str = "fp32"  # what the DiT ran in ("fp32" or "bf16")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _as_prompts(prompt: str | Sequence[str], what: str) -> tuple[str, ...]:
    prompts = (prompt,) if isinstance(prompt, str) else tuple(prompt)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"{what} must be a string or a non-empty list of strings")
    return prompts


class TextToMusicPipeline:
    """Generate music from text with a latent diffusion model.

    >>> pipe = TextToMusicPipeline.from_pretrained("stable-audio-open-1.0/")
    >>> out = pipe("warm lo-fi piano, 80 BPM", duration_s=30, seed=0)
    >>> out.audio.shape  # [1, 2, 1323000]
    """

    def __init__(self, model: DiffusionModel, *, precision: str = "fp32",
                 compile: bool | Sequence[str] = False) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got "
                             f"{precision!r}")
        parts = self._compile_parts(compile, model.dit.project_in.weight.device)
        self.model = model
        self.config = model.config
        if precision == "auto":
            precision = "bf16" if bf16_supported(self.device) else "fp32"
        self.precision = precision
        self.dit_dtype = torch.float32
        if precision == "bf16":
            if not bf16_supported(self.device):
                logger.warning("bf16 is not supported on this device (no AVX512-BF16/AMX "
                               "through oneDNN): running in fp32")
                self.precision = "fp32"
            else:
                # The DiT in bf16; the sampler's state, the text encoder, the conditioner
                # and the VAE's weights and activations stay as loaded (fp32). On a CPU the
                # VAE's convolutions also run in bf16 (fp32 accumulation in oneDNN: decoded
                # audio within ~48 dB SI-SDR of fp32); on a GPU the VAE stays in fp32, as
                # half-precision VAE decodes are reported to add audible noise.
                self.dit_dtype = torch.bfloat16
                model.dit.to(torch.bfloat16)
                if self.device.type == "cpu":
                    model.vae.set_conv_dtype(torch.bfloat16)
        # Compiled on first use (tens of seconds per component on a CPU; torch caches the
        # result on disk for later processes); eager with one warning where the compiler
        # is missing or fails.
        # A part not asked for runs eagerly, even if another pipeline compiled it.
        self._compilers: dict[str, Compiler] = {}
        if "dit" in parts:
            self._compilers["dit"] = Compiler("the diffusion transformer's blocks",
                                              self.device)
        if "vae" in parts:
            self._compilers["vae"] = Compiler("the VAE decoder", self.device)
        model.dit.compile_blocks(self._compilers.get("dit"))
        model.vae.compile_decoder(self._compilers.get("vae"))
        self.defaults = DEFAULTS[model.config.objective]
        if model.config.steps is not None:  # the model's own default
            self.defaults = replace(self.defaults, num_inference_steps=model.config.steps)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, text_encoder_path: str | Path | None = None,
                        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                        precision: str = "fp32",
                        compile: bool | Sequence[str] = False) -> TextToMusicPipeline:
        """Load a Stable Audio Open 1.0 / Open Small folder, or a diffusers folder.

        ``precision="bf16"`` runs the diffusion transformer in bfloat16 (where the device
        supports it, else fp32 with a warning) and keeps the sampler, the text encoder and
        the VAE's weights in fp32; on a CPU the VAE's convolutions run in bf16 too. About
        2x faster DiT steps and 1.5-2x faster decodes on CPUs with AVX512-BF16
        (benchmarks/). ``precision="auto"`` (the command line's default) picks bf16 where
        the device supports it and fp32 elsewhere, without a warning; the default here is
        fp32, the reference's exact arithmetic, as in diffusers.

        ``compile=True`` runs what gains from ``torch.compile`` on the device through it
        (:func:`default_compile_parts`), or name the parts: ``compile=("dit", "vae")``."""
        return cls(load_diffusion_model(path, text_encoder_path=text_encoder_path, device=device,
                                        dtype=dtype), precision=precision, compile=compile)

    @staticmethod
    def _compile_parts(compile: bool | Sequence[str], device: torch.device) -> tuple[str, ...]:
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

    # -- conditioning -------------------------------------------------------------------

    def encode_prompt(self, prompts: Sequence[str]) -> ConditioningTokens | None:
        """Text encoder features [P, L, D_text] (None for a model without text)."""
        encoder = self.model.text_encoder
        if self.config.conditioning.text is None:
            return None
        if encoder is None:
            raise ValueError("this pipeline was loaded without its text encoder")
        return encoder.encode(encoder.tokenize(list(prompts)))

    def _conditioning(self, features: ConditioningTokens | None, batch: int, seconds_start: float,
                      seconds_total: float) -> Conditioning:
        seconds = {}
        for cid in self.model.conditioner.timing_ids:
            value = seconds_start if cid == "seconds_start" else seconds_total
            seconds[cid] = torch.full((batch,), float(value), device=self.device)
        return self.model.conditioner(features, seconds)

    # -- the call -----------------------------------------------------------------------

    def __call__(
        self,
        prompt: str | Sequence[str],
        negative_prompt: str | None = None,
        *,
        duration_s: float | None = None,
        seconds_start: float = 0.0,
        seconds_total: float | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        sampler: str | None = None,
        sigma_min: float = 0.03,
        sigma_max: float = 500.0,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        num_outputs: int = 1,
        latents: torch.Tensor | None = None,
        init_audio: torch.Tensor | None = None,
        init_noise_level: float | None = None,
        window: str | None = None,
        noise_fn: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
        progress: ProgressFn | None = None,
    ) -> TextToMusicOutput:
        """Generate audio [B, C, duration_s * sample_rate] for B = len(prompts) * num_outputs.

        Args:
            prompt: one prompt or a list; item i of the batch is prompt i // num_outputs.
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
                unconditional pass.
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
            noise_fn: replaces the stochastic samplers' per-step noise (tests).
            progress: ``progress(stage, done, total)``.
        """
        d = self.defaults
        prompts = _as_prompts(prompt, "prompt")
        steps = d.num_inference_steps if num_inference_steps is None else num_inference_steps
        scale = d.guidance_scale if guidance_scale is None else guidance_scale
        sampler_name = d.sampler if sampler is None else sampler
        hop, sr = self.config.vae.hop_length, self.config.sample_rate
        batch = len(prompts) * num_outputs if isinstance(num_outputs, int) else 0
        window_mode = self.config.window if window is None else window
        frames = self.config.window_frames if latents is None else latents.shape[-1]
        window_s = frames * hop / sr
        duration = window_s if duration_s is None else duration_s
        total = duration if seconds_total is None else seconds_total
        spec = self._check_inputs(
            prompts, negative_prompt, duration, seconds_start, total, steps, scale, sampler_name,
            sigma_min, sigma_max, generator, seed, num_outputs, latents, init_audio,
            init_noise_level, window_s, batch)
        if window_mode not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {window_mode!r}")
        if latents is None and window_mode == "fit":
            frames = min(frames, WINDOW_QUANTUM_FRAMES * math.ceil(
                duration * sr / hop / WINDOW_QUANTUM_FRAMES))

        if seed is None:
            seed = (int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
                    if generator is not None else secrets.randbelow(2**31 - 1))
        seeds = tuple(seed + i for i in range(batch))
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        latent_shape = (self.config.vae.latent_dim, frames)
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
            features = self.encode_prompt(prompts)
            if features is not None and num_outputs > 1:
                features = ConditioningTokens(features.tokens.repeat_interleave(num_outputs, 0),
                                              features.mask.repeat_interleave(num_outputs, 0))
            cond = self._conditioning(features, batch, seconds_start, total)
            model_fn = self._model_fn(cond, negative_prompt, scale, batch, seconds_start, total)
            init_latents = None
            if init_audio is not None:
                init_latents = self._encode_init(init_audio, batch, frames)
            x, grid, level = self._start(spec.kind, noise, init_latents, init_noise_level, steps,
                                         sigma_min, sigma_max)
            denoiser = VDenoiser(model_fn) if spec.kind != "rf" else RFDenoiser(model_fn)

            def on_step(step) -> None:
                if progress is not None:
                    progress("sampling", step.i + 1, steps)

            sampled = spec.fn(denoiser, x, grid, noise_fn=noise_fn, callback=on_step)
            if not torch.isfinite(sampled).all():
                raise GenerationError("sampling produced NaN or infinite latents; the model "
                                      "weights or the settings (e.g. a huge guidance scale) are "
                                      "unusable")
            num_samples = round(duration * sr)
            vae = self.model.vae
            # Chunks as large as the memory allows (DECODE_MEMORY_BUDGET, or half of what
            # is free): fewer, larger chunks decode faster; none when the batch fits. A
            # batch too large for efficient chunks is decoded a few items at a time.
            plan = vae.auto_decode_plan(sampled.shape[-1], batch=sampled.shape[0],
                                        dtype=sampled.dtype)
            audio = vae.decode(
                sampled, num_samples=num_samples, chunk_frames=plan.chunk_frames,
                batch_size=plan.batch_size,
                progress=None if progress is None else lambda i, n: progress("decoding", i, n))
        self._check_output(audio)
        settings = GenerationSettings(
            prompts=prompts, negative_prompt=negative_prompt, duration_s=float(duration),
            seconds_start=float(seconds_start), seconds_total=float(total),
            num_inference_steps=int(steps), guidance_scale=float(scale), sampler=sampler_name,
            sigma_min=float(sigma_min), sigma_max=float(sigma_max), num_outputs=num_outputs,
            seeds=seeds, init_noise_level=level, has_init_audio=init_audio is not None,
            has_initial_latents=latents is not None, window_frames=int(frames),
            precision=self.precision)
        return TextToMusicOutput(audio.float().cpu(), sampled.float().cpu(), sr, settings)

    # -- pieces of the call -------------------------------------------------------------

    def _model_fn(self, cond: Conditioning, negative_prompt: str | None, scale: float,
                  batch: int, seconds_start: float, seconds_total: float):
        """The network function the sampler calls, with the conditioning projected once."""
        dit, dtype = self.model.dit, self.dit_dtype
        cond_context = dit.prepare_context(cond.to(self.device, dtype))

        # The sampler works in the latents' dtype; the network in the pipeline's.
        def model_cond(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return dit(x.to(dtype), t, cond_context).to(x.dtype)

        if scale == 1:
            return model_cond
        if negative_prompt is not None:
            features = self.encode_prompt([negative_prompt] * batch)
            uncond = self._conditioning(features, batch, seconds_start, seconds_total)
        else:
            uncond = cond.without_context()
        both: DiTContext = dit.prepare_context(cond.cat(uncond).to(self.device, dtype))

        def model_both(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return dit(x.to(dtype), t, both).to(x.dtype)

        return guided(model_cond, model_both, scale)

    def _encode_init(self, init_audio: torch.Tensor, batch: int, window: int) -> torch.Tensor:
        audio = init_audio if init_audio.dim() == 3 else init_audio[None].expand(batch, -1, -1)
        num_samples = window * self.config.vae.hop_length
        audio = audio[..., :num_samples].to(self.device, self.vae_dtype)
        if audio.shape[-1] < num_samples:
            audio = torch.nn.functional.pad(audio, (0, num_samples - audio.shape[-1]))
        return self.model.vae.encode(audio).mode()  # [B, D, T]

    def _start(self, kind: str, noise: torch.Tensor, init_latents: torch.Tensor | None,
               init_noise_level: float | None, steps: int, sigma_min: float,
               sigma_max: float) -> tuple[torch.Tensor, torch.Tensor, float | None]:
        """The sampler's starting point and grid (and the init noise level used)."""
        dev = noise.device
        if kind == "ve":
            top = sigma_max if init_latents is None else (init_noise_level or 1.0)
            sigmas = log_linear_sigmas(steps, sigma_min, top).to(dev)
            x = noise * sigmas[0] if init_latents is None else init_latents + noise * sigmas[0]
            return x, sigmas, None if init_latents is None else float(top)
        if kind == "rf":
            grid = logsnr_shift_t_grid(steps, include_endpoint=True).to(dev)
            if init_latents is None:
                return noise, grid, None
            level = 0.5 if init_noise_level is None else init_noise_level
            grid = grid * level
            return (1 - level) * init_latents + level * noise, grid, float(level)
        if init_latents is not None:
            raise ValueError("audio-to-audio is not available with the 'v-ddim' sampler; use a "
                             "DPM-Solver++ sampler")
        return noise, logsnr_shift_t_grid(steps, include_endpoint=False).to(dev), None

    def _check_inputs(self, prompts, negative_prompt, duration, seconds_start, seconds_total,
                      steps, scale, sampler_name, sigma_min, sigma_max, generator, seed,
                      num_outputs, latents, init_audio, init_noise_level, window_s, batch):
        """Validate every argument up front; returns the sampler spec."""
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise ValueError("negative_prompt must be a string")
        if not isinstance(num_outputs, int) or num_outputs < 1:
            raise ValueError(f"num_outputs must be a positive integer, got {num_outputs!r}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {steps!r}")
        for name, value in (("duration_s", duration), ("seconds_start", seconds_start),
                            ("seconds_total", seconds_total), ("guidance_scale", scale),
                            ("sigma_min", sigma_min), ("sigma_max", sigma_max)):
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0 < duration <= window_s + 1e-9:
            raise ValueError(f"duration_s must be in (0, {window_s:.2f}] s, the model's window; "
                             f"got {duration}")
        if seconds_start < 0 or seconds_total <= 0:
            raise ValueError("seconds_start must be >= 0 and seconds_total > 0, got "
                             f"{seconds_start} and {seconds_total}")
        if scale <= 0:
            raise ValueError(f"guidance_scale must be > 0 (1 = no guidance), got {scale}")
        try:
            spec = get_sampler(sampler_name)
        except ValueError:
            raise ValueError(f"unknown sampler {sampler_name!r}; choose one of "
                             f"{', '.join(sorted(SAMPLERS))}") from None
        is_rf = self.config.objective != "v"
        if (spec.kind == "rf") != is_rf:
            fitting = sorted(n for n, s in SAMPLERS.items() if (s.kind == "rf") == is_rf)
            raise ValueError(f"sampler {sampler_name!r} does not fit this {self.config.objective} "
                             f"model; use one of {', '.join(fitting)}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        if seed is not None and (not isinstance(seed, int) or not 0 <= seed <= MAX_SEED - batch):
            raise ValueError(f"seed must be an integer in [0, 2**63 - 1 - batch], got {seed!r}")
        if latents is not None:
            expected = (batch, self.config.vae.latent_dim)
            if latents.dim() != 3 or tuple(latents.shape[:2]) != expected:
                raise ValueError(f"latents must be [{batch}, {expected[1]}, T] for {batch} "
                                 f"output(s), got {tuple(latents.shape)}")
            if latents.shape[-1] > self.config.window_frames:
                raise ValueError(f"latents have {latents.shape[-1]} frames, more than the "
                                 f"model's window of {self.config.window_frames}")
            if not torch.isfinite(latents).all():
                raise ValueError("latents contain NaN or infinite values")
        if init_audio is not None:
            channels = self.config.audio_channels
            ok = init_audio.dim() in (2, 3) and init_audio.shape[-2] == channels and (
                init_audio.dim() == 2 or init_audio.shape[0] == batch)
            if not ok:
                raise ValueError(f"init_audio must be [{channels}, S] or [{batch}, {channels}, S] "
                                 f"at {self.sample_rate} Hz, got {tuple(init_audio.shape)}")
            if not torch.isfinite(init_audio).all():
                raise ValueError("init_audio contains NaN or infinite samples")
        if init_noise_level is not None:
            if init_audio is None:
                raise ValueError("init_noise_level needs init_audio")
            upper = 1.0 if is_rf else sigma_max
            if not 0 < init_noise_level <= upper:
                raise ValueError(f"init_noise_level must be in (0, {upper}], got "
                                 f"{init_noise_level}")
            if not is_rf and init_noise_level <= sigma_min:
                raise ValueError(f"init_noise_level must exceed sigma_min ({sigma_min})")
        return spec

    def _check_output(self, audio: torch.Tensor) -> None:
        if not torch.isfinite(audio).all():
            raise GenerationError("the decoded audio contains NaN or infinite samples; check the "
                                  "model weights and the precision it runs in")
        peaks = audio.abs().flatten(1).amax(dim=1)
        silent = [i for i, p in enumerate(peaks.tolist()) if p < SILENCE_PEAK]
        if silent:
            raise GenerationError(f"output(s) {silent} are silent (peak below {SILENCE_PEAK}); the "
                                  "model produced no sound for these settings")

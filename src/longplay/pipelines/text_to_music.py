"""Text (+ timing) -> conditioning -> sampler -> latents -> chunked VAE decode -> trim.

Shape legend: P prompts, B batch (prompts x outputs), C audio channels, S samples,
D latent channels, T latent frames, L text tokens, E text-encoder width.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from longplay.adapters import (
    BaseIdentity,
    LoRAAdapter,
    adapters_applied,
    base_identity,
    load_adapter,
)
from longplay.builders import DiffusionModel
from longplay.checkpoints import load_diffusion_model
from longplay.conditioning import Conditioning, ConditioningTokens
from longplay.config import INPAINT_INPUT_ID, INPAINT_MASK_ID, dataclass_to_dict
from longplay.diffusion import (
    CircularModel,
    InpaintingModel,
    NoiseFn,
    Objective,
    SamplingDefaults,
    get_objective,
    guided,
    inpainting_start,
    sample_with_resampling,
    soft_keep_mask,
)
from longplay.errors import AdapterError, GenerationError, SettingsError
from longplay.layers import (
    Compiler,
    int8_unavailable_reason,
    quantize_linears_int8,
    shared_weights_copy,
)
from longplay.pipelines import settings as generation_settings
from longplay.pipelines.settings import (
    DEFAULT_EDGE_S,
    DEFAULT_JUMP_LENGTH,
    DEFAULT_SIGMA_MAX,
    DEFAULT_SIGMA_MIN,
    PRECISIONS,
    GenerationSettings,
    guidance_times,
    resolve_settings,
    sampling_defaults,
)
from longplay.pipelines.windows import (
    Window,
    generate_frames,
    plan_windows,
    section_boundaries,
    section_prompt,
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

AdapterArg = tuple["str | Path | LoRAAdapter", float]
"""An adapter (its folder, or one loaded with :func:`longplay.adapters.load_adapter`) and
its strength."""

ProgressFn = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` with stage "sampling" or "decoding"."""

SILENCE_PEAK = 1e-6
LOOP_DECODE_CONTEXT_FRAMES = 16
"""Latent frames of the loop's other end decoded as context on each side (the decoder's
receptive field is about 9 frames each side)."""
OUTPUT_TYPES = ("audio", "latent")
"""What a call returns: decoded audio with its latents, or the latents alone."""
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


def resolve_device(device: torch.device | str) -> torch.device:
    """``device`` checked to exist here (before any weights load).

    Raises:
        ValueError: not a device name, or a CUDA/MPS device this machine lacks.
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a device name; use cpu, cuda or cuda:N") \
            from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device}: this machine has no CUDA device (or torch was "
                             "installed without CUDA); use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {device}: only {torch.cuda.device_count()} CUDA "
                             "device(s) here")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device}: MPS is not available here; use cpu")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` as it will run on ``device``: auto picks, unsupported bf16 warns."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError(f"precision int8 runs on CPUs (PyTorch's dynamic quantisation), not "
                             f"on {device.type}; use bf16 there")
        reason = int8_unavailable_reason()
        if reason is not None:
            logger.warning("int8 is unavailable (%s): running in fp32", reason)
            return "fp32"
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
    """audio [B, C, S] (S = duration_s * sample_rate; None for ``output_type="latent"``),
    latents [B, D, T] (the whole piece's, the sampled window included), the sample rate
    and the settings. Item i is prompt i // num_outputs. ``joins_s``: where generated
    audio meets kept audio (region edges, the windows of a long piece, a loop's
    wrap-around at its end), for :mod:`longplay.evaluation.joins`."""

    audio: torch.Tensor | None
    latents: torch.Tensor
    sample_rate: int
    settings: GenerationSettings
    joins_s: tuple[float, ...] = ()
    adapters: tuple[dict, ...] = ()
    """The adapters applied: name, path, scale and rank of each."""

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
        self.precision = resolve_precision(precision, device)
        parts = _compile_parts(compile, device)
        self.config = model.config
        self.objective: Objective = get_objective(model.config.objective)
        self.defaults: SamplingDefaults = sampling_defaults(model.config)
        # The DiT in bf16 or as given; the sampler's state, the text encoder, the
        # conditioner and the VAE's weights and activations stay as loaded. On a CPU the
        # VAE's convolutions also run in bf16 (fp32 accumulation in oneDNN: decoded audio
        # within ~48 dB SI-SDR of fp32); on a GPU the VAE stays in fp32, as half-precision
        # VAE decodes are reported to add audible noise.
        # int8: the transformer blocks' linear layers hold int8 weights (new tensors; the
        # model's stay as they are); where the CPU has bf16, the attention products and
        # the VAE's convolutions run as in bf16.
        bf16 = self.precision == "bf16"
        int8 = self.precision == "int8"
        self.dit_dtype = torch.bfloat16 if bf16 else _full_precision(
            model.dit.project_in.weight.dtype)
        dit = shared_weights_copy(model.dit, self.dit_dtype)
        if int8:
            quantize_linears_int8(dit.blocks)
            if bf16_supported(device):  # the attention products as in bf16
                dit.set_attention_dtype(torch.bfloat16)
        vae = shared_weights_copy(model.vae)
        bf16_vae = bf16 or (int8 and bf16_supported(device))
        vae.set_conv_dtype(torch.bfloat16 if bf16_vae and device.type == "cpu" else None)
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
        self._adapters: dict[str, LoRAAdapter] = {}
        self._active: list[tuple[str, float]] = []
        self._identity: BaseIdentity | None = None

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

        ``precision="int8"`` (CPU only, opt-in) gives the DiT's transformer blocks int8
        linear layers through PyTorch's dynamic quantisation: faster than bf16 per step
        on CPUs, with the output error that benchmarks/dit_step.py reports.

        ``compile=True`` runs what gains from ``torch.compile`` on the device through it
        (:func:`default_compile_parts`), or name the parts: ``compile=("dit", "vae")``."""
        device = resolve_device(device)
        target = resolve_precision(precision, device)
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

    # -- adapters -----------------------------------------------------------------------

    def base_identity(self) -> BaseIdentity:
        """The identity of this pipeline's DiT that adapters record (computed once)."""
        if self._identity is None:
            if self.precision == "int8":
                raise AdapterError("adapters apply to fp32 and bf16 pipelines, not int8: merge "
                                   "the adapter into the model (`longplay export --merge-lora`) "
                                   "and run that in int8")
            name = Path(str(self.model.source)).name if self.model.source else ""
            self._identity = base_identity(self.model.dit, dataclass_to_dict(self.config.dit),
                                           name)
        return self._identity

    def _loaded(self, adapter: str | Path | LoRAAdapter) -> LoRAAdapter:
        loaded = adapter if isinstance(adapter, LoRAAdapter) else load_adapter(adapter)
        loaded.check_base(self.base_identity())
        return loaded

    def load_lora_weights(self, path: str | Path | LoRAAdapter, adapter_name: str | None = None,
                          scale: float = 1.0) -> str:
        """Load an adapter folder (peft's format, from ``longplay train lora``) and make it
        active with ``scale``, next to those already active; returns its name (default
        the folder's name). An adapter trained on another model is refused here.

        >>> pipe.load_lora_weights("adapters/chorales", scale=0.8)
        >>> pipe.set_adapters(["chorales", "jazz"], [0.8, 0.5])  # stacked
        >>> pipe.unload_lora_weights()  # the base model again
        """
        adapter = self._loaded(path)
        name = adapter_name or adapter.name
        if not math.isfinite(scale):
            raise AdapterError(f"the scale of adapter {name!r} must be finite, got {scale}")
        self._adapters[name] = adapter
        self._active = [(n, w) for n, w in self._active if n != name] + [(name, float(scale))]
        return name

    def set_adapters(self, adapter_names: str | Sequence[str],
                     adapter_weights: float | Sequence[float] | None = None) -> None:
        """Choose which loaded adapters apply, and with which strengths (default 1 each);
        an empty list applies none."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if adapter_weights is None:
            weights = [1.0] * len(names)
        elif isinstance(adapter_weights, int | float):
            weights = [float(adapter_weights)] * len(names)
        else:
            weights = [float(w) for w in adapter_weights]
        if len(weights) != len(names):
            raise AdapterError(f"{len(names)} adapters but {len(weights)} weights")
        unknown = [n for n in names if n not in self._adapters]
        if unknown:
            raise AdapterError(f"adapter {unknown[0]!r} is not loaded (loaded: "
                               f"{', '.join(self._adapters) or 'none'}); load it with "
                               "load_lora_weights")
        if not all(math.isfinite(w) for w in weights):
            raise AdapterError(f"adapter weights must be finite, got {weights}")
        self._active = list(zip(names, weights, strict=True))

    def unload_lora_weights(self) -> None:
        """Forget every loaded adapter: the pipeline generates with its base model."""
        self._adapters.clear()
        self._active = []

    @property
    def active_adapters(self) -> tuple[tuple[str, float], ...]:
        """(name, scale) of the adapters a call applies."""
        return tuple(self._active)

    def _call_adapters(self, adapters: Sequence[AdapterArg] | None
                       ) -> list[tuple[str, LoRAAdapter, float]]:
        if adapters is None:
            return [(n, self._adapters[n], w) for n, w in self._active]
        resolved = []
        for i, item in enumerate(adapters):
            try:
                adapter, scale = item
            except (TypeError, ValueError):
                raise SettingsError("adapters", f"adapters[{i}] must be (adapter folder, "
                                                f"scale), got {item!r}") from None
            if isinstance(scale, bool) or not isinstance(scale, int | float) or not (
                    math.isfinite(scale)):
                raise SettingsError("adapters", f"adapters[{i}]: the scale must be a finite "
                                                f"number, got {scale!r}")
            loaded = self._loaded(adapter)
            resolved.append((loaded.name, loaded, float(scale)))
        return resolved

    # -- settings -----------------------------------------------------------------------

    def resolve_settings(self, prompt: str | Sequence[str] | None = None,
                         negative_prompt: str | None = None, **kwargs) -> GenerationSettings:
        """The complete, validated settings of a call with these arguments (the keyword
        arguments of :meth:`__call__` but ``noise_fn`` and ``progress``): the model's
        defaults filled in and the seed drawn (once, here). Nothing runs; pass the result
        to :meth:`__call__` with the same tensors.

        Raises:
            SettingsError: (a ValueError) naming the argument at fault in ``field``.
        """
        return resolve_settings(self.config, prompt, negative_prompt, precision=self.precision,
                                **kwargs)

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
        adapters: Sequence[AdapterArg] | None = None,
        noise_fn: NoiseFn | None = None,
        progress: ProgressFn | None = None,
        output_type: str = "audio",
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
            sigma_min, sigma_max: the log-linear noise levels of the VE samplers (default
                0.03 and 500); rectified-flow models have none and refuse them.
            generator / seed: item i uses seed + i, so item i of a batch equals a single
                generation with seed + i. A generator gives the base seed from its state;
                with neither, a random seed is drawn and recorded in the output.
            latents: initial noise [B, D, T] (standard normal, unscaled), as in diffusers;
                T sets the window (default the model's).
            init_audio: audio-to-audio: [C, S] or [B, C, S] at the model's sample rate, encoded
                and noised to ``init_noise_level`` (a VE sigma for v models, default 1.0; an RF
                time in (0, 1] for rectified-flow models, default 0.5) before sampling.
            init_latents: audio-to-audio from latents instead of audio: [B, D, T] in this
                model's latent space (T sets the window, as for ``latents``), noised to
                ``init_noise_level`` and sampled from there. E.g. the ``latents`` of a
                distilled model's output that shares this model's VAE, refined by this
                model's sampler in a few steps from a low level (a draft and its
                refinement, as SDXL's base and refiner).
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
            guidance_interval: (lo, hi) noise levels (VE sigmas for v models, RF times
                for flows) outside which guidance is off, one network pass instead of
                two (Kynkäänniemi et al. 2024); default everywhere.
            unguided_final_steps: run the last this many evaluations without guidance.
            adapters: LoRA adapters for this call only, as (folder or loaded adapter,
                scale) pairs; default the pipeline's (:meth:`load_lora_weights`). They are
                applied for the call and removed after it.
            noise_fn: replaces the stochastic samplers' per-step noise (tests).
            progress: ``progress(stage, done, total)``.
            output_type: "audio" (default) decodes the latents; "latent" stops before the
                VAE and returns ``audio=None`` with the latents, as diffusers'
                ``output_type="latent"``: for a draft that another model refines
                (``init_latents``) or for a latent dataset.
        """
        if output_type not in OUTPUT_TYPES:
            raise SettingsError("output_type", f"output_type must be one of "
                                               f"{', '.join(map(repr, OUTPUT_TYPES))}, got "
                                               f"{output_type!r}")
        # 1. Check the inputs and resolve the settings (defaults, seeds).
        tensors = {"latents": latents, "init_audio": init_audio, "inpaint_audio": inpaint_audio,
                   "init_latents": init_latents,
                   "prompt_embeds": prompt_embeds,
                   "prompt_attention_mask": prompt_attention_mask,
                   "negative_prompt_embeds": negative_prompt_embeds,
                   "negative_attention_mask": negative_attention_mask}
        if isinstance(prompt, GenerationSettings):
            given = {"negative_prompt": negative_prompt, "duration_s": duration_s,
                     "seconds_total": seconds_total,
                     "num_inference_steps": num_inference_steps,
                     "guidance_scale": guidance_scale, "sampler": sampler,
                     "sigma_min": sigma_min, "sigma_max": sigma_max,
                     "generator": generator, "seed": seed, "init_noise_level": init_noise_level,
                     "window": window, "inpaint_regions": inpaint_regions,
                     "context_s": context_s, "sections": sections,
                     "guidance_interval": guidance_interval}
            extra = [k for k, v in given.items() if v is not None] + [
                k for k, v, default in (("seconds_start", seconds_start, 0.0),
                                        ("num_outputs", num_outputs, 1),
                                        ("inpaint_edge_s", inpaint_edge_s, DEFAULT_EDGE_S),
                                        ("splice", splice, True),
                                        ("resample_steps", resample_steps, 1),
                                        ("jump_length", jump_length, DEFAULT_JUMP_LENGTH),
                                        ("loop", loop, False),
                                        ("unguided_final_steps", unguided_final_steps, 0))
                if v != default]
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
                init_noise_level=init_noise_level, window=window,
                inpaint_regions=inpaint_regions, inpaint_edge_s=inpaint_edge_s, splice=splice,
                resample_steps=resample_steps, jump_length=jump_length, context_s=context_s,
                sections=sections, loop=loop, guidance_interval=guidance_interval,
                unguided_final_steps=unguided_final_steps, **tensors)
        applied = self._call_adapters(adapters)
        with (adapters_applied(self.model.dit, [(a, w) for _, a, w in applied]),
              torch.inference_mode()):
            out = self._generate(settings, latents, init_audio, inpaint_audio, prompt_embeds,
                                 prompt_attention_mask, negative_prompt_embeds,
                                 negative_attention_mask, noise_fn, progress, init_latents,
                                 decode=output_type == "audio")
        if not applied:
            return out
        record = tuple({"name": name, "path": str(a.path), "scale": w, "rank": a.rank}
                       for name, a, w in applied)
        return dataclasses.replace(out, adapters=record)

    def _generate(self, s: GenerationSettings, latents: torch.Tensor | None,
                  init_audio: torch.Tensor | None, inpaint_audio: torch.Tensor | None,
                  prompt_embeds: torch.Tensor | None, prompt_mask: torch.Tensor | None,
                  negative_embeds: torch.Tensor | None, negative_mask: torch.Tensor | None,
                  noise_fn: NoiseFn | None, progress: ProgressFn | None,
                  given_init: torch.Tensor | None = None,
                  decode: bool = True) -> TextToMusicOutput:
        batch, hop = s.batch_size, self.config.vae.hop_length
        rate = self.sample_rate / hop
        spec = self.objective.sampler(s.sampler)
        generators = [torch.Generator().manual_seed(seed) for seed in s.seeds]

        def draw(shape: tuple[int, ...]) -> torch.Tensor:
            """Standard normal noise [B, *shape], item i from its own seeded generator."""
            noise = torch.cat([torch.randn((1, *shape), generator=g) for g in generators])
            return noise.to(self.device, self.vae_dtype)

        if noise_fn is None and (spec.stochastic or s.resample_steps > 1):
            def noise_fn(i: int, x: torch.Tensor) -> torch.Tensor:
                return draw(tuple(x.shape[1:])).to(x.dtype)

        # 2. Plan the windows over the piece: what each keeps and what it generates.
        total_frames = max(1, math.ceil(s.duration_s * rate - 1e-9))
        generate = (generate_frames(total_frames, s.inpaint_regions, rate)
                    if s.has_inpaint_audio else torch.ones(total_frames, dtype=torch.bool))
        windows = plan_windows(
            generate, s.window_frames, round(s.context_s * rate),
            quantum_frames=(generation_settings.WINDOW_QUANTUM_FRAMES
                            if s.window == "fit" and s.num_windows > 1 else None),
            boundaries=section_boundaries(s.sections, rate))
        extent = max([total_frames, *(w.end for w in windows)])
        piece = torch.zeros((batch, self.config.vae.latent_dim, extent), device=self.device,
                            dtype=self.vae_dtype)
        keep = torch.zeros(extent, device=self.device)  # how much of the known audio stays
        if inpaint_audio is not None:
            known = self._encode_known(inpaint_audio, batch)
            frames = min(known.shape[-1], extent)
            piece[..., :frames] = known[..., :frames]
            keep[:frames] = 1.0

        # 3. The text features of each prompt, once.
        features = _FeatureCache(self, s, prompt_embeds, prompt_mask)
        negative = self._negative_features(s, negative_embeds, negative_mask)
        evaluations = s.num_inference_steps * s.resample_steps
        total_evaluations = evaluations * len(windows)

        # 4. Sample each window, keeping what it knows and generating the rest.
        for number, window in enumerate(windows):
            # Timing as the paper defines it: where the window starts in the piece, and
            # the whole piece's length.
            window_start_s = s.seconds_start + window.start / rate
            text = features.of_window(window.first_generated, rate)
            known = piece[..., window.start:window.end]
            extra = self._inpainting_input(window, known)
            cond = self.prepare_conditioning(text, batch, window_start_s,
                                             s.seconds_total).with_input(extra)
            uncond = (None if negative is None else self.prepare_conditioning(
                negative, batch, window_start_s, s.seconds_total).with_input(extra))
            noise = (draw((self.config.vae.latent_dim, window.num_frames)) if latents is None
                     else latents.float().to(self.device, self.vae_dtype))
            # Soft edges toward the frames generated inside the piece; past its end
            # (trimmed) the frames are free without making the piece's end an edge.
            inside = min(window.end, total_frames) - window.start
            toward = window.generate.clone()
            toward[inside:] = False
            weights = soft_keep_mask(~toward, round(s.inpaint_edge_s * rate), circular=s.loop)
            weights[inside:] = 0
            weights = weights.to(self.device)
            mask = weights.view(1, 1, -1).expand(batch, 1, -1).to(self.vae_dtype)
            kept = bool((weights > 0).any())
            if init_audio is not None:
                init_latents = self._encode_init(init_audio, batch, window.num_frames)
            elif given_init is not None:
                init_latents = given_init.to(self.device, self.vae_dtype)
            else:
                init_latents = known if s.init_noise_level is not None else None
            start = self.objective.start(spec, noise, s.num_inference_steps,
                                         sigma_min=_or(s.sigma_min, DEFAULT_SIGMA_MIN),
                                         sigma_max=_or(s.sigma_max, DEFAULT_SIGMA_MAX),
                                         init_latents=init_latents,
                                         init_noise_level=s.init_noise_level)
            interval = guidance_times(s, self.objective, spec, start.grid)
            model_fn = self._model_fn(cond, s, uncond, interval)
            if s.loop:
                model_fn = CircularModel(model_fn, window.num_frames)
            if kept:
                model_fn = InpaintingModel(model_fn, known, mask, self.objective.from_denoised)
            x = start.x
            if kept and init_latents is None:
                x = inpainting_start(spec, noise, start.grid.to(noise.dtype), known, mask)

            def on_step(step, done=number * evaluations) -> None:
                if progress is not None:
                    progress("sampling", done + step.i + 1, total_evaluations)

            sampled = sample_with_resampling(
                spec, self.objective.denoiser(model_fn), x, start.grid,
                jump_length=s.jump_length, resample_steps=s.resample_steps, noise_fn=noise_fn,
                callback=on_step)
            if not torch.isfinite(sampled).all():
                raise GenerationError("sampling produced NaN or infinite latents; the model "
                                      "weights or the settings (e.g. a huge guidance scale) are "
                                      "unusable")
            if kept:  # the kept frames exactly, the soft edges blended
                sampled = torch.where(mask >= 1, known, sampled + mask * (known - sampled))
            piece[..., window.start:window.end] = sampled
            keep[window.start:window.end] *= weights

        if not decode:
            return TextToMusicOutput(None, piece.float().cpu(), self.sample_rate, s,
                                     _joins(s, windows, rate))
        # 5. Decode and trim (a loop through its seam), then splice the known audio back.
        num_samples = round(s.duration_s * self.sample_rate)
        if s.loop:
            audio = self._decode_loop(piece, num_samples, progress)
        else:
            audio = self._decode(piece, num_samples, progress)
        if inpaint_audio is not None and s.splice:
            audio = _splice(audio, inpaint_audio, keep[:total_frames], hop)
        # 6. Refuse unusable output.
        self._check_output(audio)
        return TextToMusicOutput(audio.float().cpu(), piece.float().cpu(), self.sample_rate, s,
                                 _joins(s, windows, rate))

    # -- editing ------------------------------------------------------------------------

    def extend(self, audio: torch.Tensor, seconds: float,
               prompt: str | Sequence[str] | None = None, negative_prompt: str | None = None,
               **kwargs) -> TextToMusicOutput:
        """Continue ``audio`` [C, S] (or [B, C, S]) at the model's sample rate by
        ``seconds``: the recording is kept and the music goes on from its end, window by
        window beyond the model's window. The other arguments are those of
        :meth:`__call__` (``context_s``, ``sections``, ``inpaint_edge_s``...)."""
        if not isinstance(audio, torch.Tensor) or audio.dim() not in (2, 3):
            raise SettingsError("inpaint_audio", "audio must be a tensor [C, S] or [B, C, S]")
        seconds = _positive_seconds("seconds", seconds)
        duration = audio.shape[-1] / self.sample_rate + seconds
        return self(prompt, negative_prompt, duration_s=duration, inpaint_audio=audio,
                    **kwargs)

    def inpaint(self, audio: torch.Tensor, start_s: float, end_s: float,
                prompt: str | Sequence[str] | None = None, negative_prompt: str | None = None,
                **kwargs) -> TextToMusicOutput:
        """Regenerate [start_s, end_s) of ``audio`` [C, S] (or [B, C, S]) at the model's
        sample rate, keeping the rest; the new part follows what surrounds it. The other
        arguments are those of :meth:`__call__` (``init_noise_level`` to change it only in
        part, ``resample_steps``...)."""
        if not isinstance(audio, torch.Tensor) or audio.dim() not in (2, 3):
            raise SettingsError("inpaint_audio", "audio must be a tensor [C, S] or [B, C, S]")
        return self(prompt, negative_prompt, duration_s=audio.shape[-1] / self.sample_rate,
                    inpaint_audio=audio, inpaint_regions=[(start_s, end_s)], **kwargs)

    # -- pieces of the call -------------------------------------------------------------

    def _check_resolved(self, settings: GenerationSettings,
                        tensors: dict[str, torch.Tensor | None]) -> GenerationSettings:
        """``settings`` checked against the model and the given tensors: it must resolve
        to itself (a record made for another model, or edited by hand, is refused)."""
        if not settings.seeds:
            raise SettingsError("seed", "these settings have no seeds; use resolve_settings "
                                        "to make them")
        if settings.draft is not None:
            raise SettingsError("draft", f"these settings are a draft of {settings.draft.model} "
                                         "refined: run them with the DraftedPipeline that made "
                                         "them (longplay.pipelines.drafts)")
        again = self.resolve_settings(**settings.call_arguments(), **tensors)
        mine = [f.name for f in dataclasses.fields(settings) if f.name != "precision"
                and getattr(again, f.name) != getattr(settings, f.name)]
        if mine:
            raise SettingsError(mine[0], f"the settings do not fit this model and these inputs "
                                         f"({', '.join(mine)} differ from what they resolve to)")
        return again

    def _inpainting_input(self, window: Window, known: torch.Tensor) -> torch.Tensor | None:
        """An inpainting model's extra input channels for ``window``: its keep mask
        [B, 1, T] (1 = known) and the known latents times it [B, D, T], in the model's
        order (zeros where nothing is known: plain generation). None for other models."""
        ids = self.config.conditioning.input_concat_ids
        if not ids:
            return None
        mask = (~window.generate).to(known.device, known.dtype).view(1, 1, -1)
        mask = mask.expand(known.shape[0], 1, -1)
        parts = {INPAINT_MASK_ID: mask, INPAINT_INPUT_ID: known * mask}
        return torch.cat([parts[name] for name in ids], dim=1)

    def _negative_features(self, s: GenerationSettings, embeds: torch.Tensor | None,
                           mask: torch.Tensor | None) -> ConditioningTokens | None:
        """The unconditional branch's text features [B, L, E] (None: an all-zero
        context, or no guidance)."""
        if s.guidance_scale == 1 or (s.negative_prompt is None and embeds is None):
            return None
        batch = s.batch_size
        if embeds is None:
            return self.encode_prompt([s.negative_prompt] * batch)
        features = _given_features(embeds, mask, self.device)
        repeat = batch // features.tokens.shape[0]  # one row, or one per prompt
        return ConditioningTokens(features.tokens.repeat_interleave(repeat, 0),
                                  features.mask.repeat_interleave(repeat, 0))

    def _model_fn(self, cond: Conditioning, s: GenerationSettings,
                  uncond: Conditioning | None,
                  interval: tuple[float, float] | None = None):
        """The network function the sampler calls, with the conditioning projected once.
        Guidance's unconditional branch is ``uncond`` (the negative prompt's), else
        ``cond`` with an all-zero context; ``interval`` (network times, see
        :func:`guidance_times`) limits guidance."""
        dit, dtype = self.model.dit, self.dit_dtype
        cond_context = dit.prepare_context(cond.to(self.device, dtype))

        # The sampler works in the latents' dtype; the network in the pipeline's.
        def model_cond(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return dit(x.to(dtype), t, cond_context).to(x.dtype)

        if s.guidance_scale == 1:
            return model_cond
        uncond = cond.without_context() if uncond is None else uncond
        both: DiTContext = dit.prepare_context(cond.cat(uncond).to(self.device, dtype))

        def model_both(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return dit(x.to(dtype), t, both).to(x.dtype)

        return guided(model_cond, model_both, s.guidance_scale, interval)

    def _encode_known(self, audio: torch.Tensor, batch: int) -> torch.Tensor:
        """Known audio [C, S] or [B, C, S] -> its latents [B, D, ceil(S / hop)] (the
        posterior mean, encoded in chunks)."""
        audio = audio if audio.dim() == 3 else audio[None].expand(batch, -1, -1)
        return self.model.vae.encode(audio.to(self.device, self.vae_dtype)).mode()

    def _decode(self, latents: torch.Tensor, num_samples: int,
                progress: ProgressFn | None) -> torch.Tensor:
        """latents [B, D, T] -> audio [B, C, num_samples]. Chunks as large as the memory
        allows (none when the batch fits); a batch too large for efficient chunks is
        decoded a few items at a time."""
        vae = self.model.vae
        plan = vae.auto_decode_plan(latents.shape[-1], batch=latents.shape[0],
                                    dtype=latents.dtype)
        return vae.decode(
            latents, num_samples=num_samples, chunk_frames=plan.chunk_frames,
            batch_size=plan.batch_size,
            progress=None if progress is None else lambda i, n: progress("decoding", i, n))

    def _decode_loop(self, latents: torch.Tensor, num_samples: int,
                     progress: ProgressFn | None) -> torch.Tensor:
        """A loop's latents [B, D, T] -> its audio [B, C, num_samples], seamless: decoded
        with the other end as context on each side (the decoder sees the circle), then
        resampled from T * hop samples to the loop's exact length through the spectrum
        (exact for a periodic signal; the pitch moves by at most hop / 2 samples per
        loop, under 4 cents for 8 s)."""
        frames = latents.shape[-1]
        context = min(LOOP_DECODE_CONTEXT_FRAMES, frames)
        circle = torch.cat([latents[..., frames - context:], latents, latents[..., :context]],
                           dim=-1)
        hop = self.config.vae.hop_length
        audio = self._decode(circle, circle.shape[-1] * hop, progress)
        audio = audio[..., context * hop:(context + frames) * hop]
        if audio.shape[-1] == num_samples:
            return audio
        spectrum = torch.fft.rfft(audio.float(), dim=-1)
        bins = num_samples // 2 + 1
        spectrum = spectrum[..., :bins] if spectrum.shape[-1] >= bins else (
            torch.nn.functional.pad(spectrum, (0, bins - spectrum.shape[-1])))
        return torch.fft.irfft(spectrum, n=num_samples, dim=-1) * (num_samples / audio.shape[-1])

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


class _FeatureCache:
    """The text features of a generation's prompts, each encoded once: per item [B, L, E]
    for the whole piece, or per section."""

    def __init__(self, pipe: TextToMusicPipeline, s: GenerationSettings,
                 embeds: torch.Tensor | None, mask: torch.Tensor | None) -> None:
        self.pipe, self.s = pipe, s
        self.given = None if embeds is None else _given_features(embeds, mask, pipe.device)
        self.cache: dict[tuple[str, ...], ConditioningTokens | None] = {}

    def of_window(self, frame: int, latent_rate: float) -> ConditioningTokens | None:
        """The features of the prompts that hold at latent frame ``frame`` of the piece."""
        s = self.s
        if self.given is not None:
            features = self.given
        else:
            prompts = ((section_prompt(s.sections, frame, latent_rate),) if s.sections
                       else s.prompts)
            if prompts not in self.cache:
                self.cache[prompts] = self.pipe.encode_prompt(prompts)
            features = self.cache[prompts]
        if features is None or s.num_outputs == 1:
            return features
        return ConditioningTokens(features.tokens.repeat_interleave(s.num_outputs, 0),
                                  features.mask.repeat_interleave(s.num_outputs, 0))


def _splice(decoded: torch.Tensor, known: torch.Tensor, keep: torch.Tensor,
            hop: int) -> torch.Tensor:
    """The known audio's own samples where its frames were kept, the decoded ones where
    they were generated, crossfaded over the soft edges.

    decoded: [B, C, S]; known: [C, S'] or [B, C, S'] (S' <= S: nothing is kept past it);
    keep: [T] per-frame weights (1 kept, 0 generated) -> [B, C, S]."""
    num_samples = decoded.shape[-1]
    known = known if known.dim() == 3 else known[None].expand(decoded.shape[0], -1, -1)
    known = known[..., :num_samples].to(decoded.device, decoded.dtype)
    weights = torch.nn.functional.interpolate(keep.float().view(1, 1, -1),
                                              size=keep.shape[-1] * hop, mode="linear",
                                              align_corners=False).view(-1)[:num_samples]
    weights = torch.nn.functional.pad(weights, (0, num_samples - weights.shape[-1]))
    weights[known.shape[-1]:] = 0
    weights = weights.to(decoded.device, decoded.dtype)
    padded = torch.nn.functional.pad(known, (0, num_samples - known.shape[-1]))
    blended = padded * weights + decoded * (1 - weights)
    return torch.where(weights >= 1 - 1e-6, padded, blended)


def _joins(s: GenerationSettings, windows: list, rate: float) -> tuple[float, ...]:
    """Where generated audio meets kept audio, in seconds, sorted."""
    if s.loop:
        return (s.duration_s,)
    joins = {round(edge, 6) for region in s.inpaint_regions for edge in region
             if 0 < edge < s.duration_s - 1e-6}
    joins |= {round(w.first_generated / rate, 6) for w in windows[1:]
              if w.first_generated / rate < s.duration_s}
    return tuple(sorted(joins))


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _positive_seconds(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        raise SettingsError(field, f"{field} must be a positive number of seconds, got "
                                   f"{value!r}")
    return float(value)


def _given_features(embeds: torch.Tensor, mask: torch.Tensor | None,
                    device: torch.device) -> ConditioningTokens:
    """Caller-given text features [N, L, E] and mask [N, L] (default: every token), with
    the padding zeroed as the text encoders return it."""
    mask = (torch.ones(embeds.shape[:2], dtype=torch.bool) if mask is None
            else mask.to(torch.bool))
    mask = mask.to(device)
    tokens = embeds.to(device, torch.float32) * mask[..., None]
    return ConditioningTokens(tokens, mask)

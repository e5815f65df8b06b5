"""A few-step model's draft, refined by a full model (SDXL's base and refiner, for audio).

A distilled model that shares a full model's VAE drafts the piece in a few network
evaluations (``output_type="latent"``: the draft is not decoded); the full model then
noises the draft's latents to a middle noise level and samples from there with its own
sampler and guidance (``init_latents``), guided only above a low level. What this buys on
the demo model is measured in docs/speed.md ("A distilled draft, refined").

:class:`DraftedPipeline` is the pair as one pipeline (``longplay generate --draft``,
``longplay serve --draft``, ``longplay ui --draft``). Which calls it drafts is one rule,
:func:`draft_blocker`: plain text-to-music in one window. The others (edits, loops,
sections, pieces longer than the window, given latents or embeddings) run the model's
own sampler with its own defaults, and their records say so (``draft`` None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from longplay.builders import DiffusionModel
from longplay.checkpoints import load_diffusion_model, read_diffusion_config
from longplay.config import DiffusionModelConfig
from longplay.diffusion import get_objective
from longplay.errors import SettingsError
from longplay.pipelines.settings import (
    MAX_SEED,
    DraftRecord,
    GenerationSettings,
    resolve_settings,
)
from longplay.pipelines.text_to_music import (
    ProgressFn,
    TextToMusicOutput,
    TextToMusicPipeline,
    resolve_device,
    resolve_precision,
)


@dataclass(frozen=True)
class DraftRefinement:
    """How a draft is made and a v model refines it unless told otherwise: the draft
    model's steps, the noise level (a VE sigma) the draft is noised to, the sampler steps
    from there and the guidance interval (guided only above ``guidance_interval[0]``; one
    network pass per step below)."""

    draft_steps: int = 2
    init_noise_level: float = 8.0
    num_inference_steps: int = 12
    guidance_interval: tuple[float, float] = (1.0, math.inf)

    def as_kwargs(self) -> dict:
        return {"init_noise_level": self.init_noise_level,
                "num_inference_steps": self.num_inference_steps,
                "guidance_interval": self.guidance_interval}


DRAFT_REFINEMENT = DraftRefinement()
"""The defaults of ``longplay generate --draft``, chosen on the few-step benchmark's
validation prompts for the demo model and its distilled demo-fast (docs/speed.md, "A
distilled draft, refined"): 2 + 12 + 5 network evaluations instead of 100."""

REFINE_SEED_OFFSET = 1000
"""The refinement's seeds are the draft's plus this, so that its noise is not the
draft's starting noise again (item i of a batch: draft seed + i, refinement seed +
REFINE_SEED_OFFSET + i)."""


def check_draft_config(config: DiffusionModelConfig, draft: DiffusionModelConfig) -> None:
    """Refuse a draft model whose latents the refining model cannot take: another sample
    rate, channel count or VAE (from the configs alone, before any weights load; the
    weights are compared by :func:`check_same_vae`)."""
    for name in ("sample_rate", "audio_channels"):
        if getattr(config, name) != getattr(draft, name):
            raise SettingsError("draft", f"the draft model's {name} is {getattr(draft, name)}, "
                                         f"the model's {getattr(config, name)}: a draft model "
                                         "must share the model's VAE")
    if config.vae != draft.vae:
        raise SettingsError("draft", "the draft model's VAE differs from the model's (its "
                                     "config): a draft model must share the model's VAE, as a "
                                     "model distilled from it does (longplay train distill)")


def refinement_settings(config: DiffusionModelConfig, init_noise_level: float | None,
                        num_inference_steps: int | None,
                        guidance_interval: tuple[float, float] | None) -> dict:
    """The refinement's level, steps and guidance interval: those given, the others from
    :data:`DRAFT_REFINEMENT` for a v model. Other objectives have no measured default:
    they must be given the level and the steps (and keep their own interval)."""
    given = {"init_noise_level": init_noise_level, "num_inference_steps": num_inference_steps,
             "guidance_interval": guidance_interval}
    if get_objective(config.objective).level_kind != "ve":
        if init_noise_level is None or num_inference_steps is None:
            raise SettingsError("init_noise_level", f"a {config.objective} model has no "
                                                    "default draft refinement: give the level "
                                                    "to refine from and the steps (a time in "
                                                    "(0, 1])")
        return given
    defaults = DRAFT_REFINEMENT.as_kwargs()
    return {name: defaults[name] if value is None else value for name, value in given.items()}


def check_same_vae(model: torch.nn.Module, draft: torch.nn.Module) -> None:
    """Refuse a loaded draft model whose VAE weights are not the refining model's (two
    VAEs of one config can still differ), before any generation."""
    mine, theirs = model.state_dict(), draft.state_dict()
    if mine.keys() != theirs.keys() or any(not _same_tensor(mine[k], theirs[k]) for k in mine):
        raise SettingsError("draft", "the draft model's VAE weights differ from the model's: "
                                     "its latents would not mean the same; use a draft model "
                                     "that shares the model's VAE (model_config.json "
                                     "\"vae_weights_from\", as the bundled demo-fast does)")


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors hold the same values: at once where they are views of the same
    memory (a VAE the draft model shares), else element by element."""
    if (a.data_ptr() == b.data_ptr() and a.device == b.device and a.dtype == b.dtype
            and a.shape == b.shape and a.stride() == b.stride()):
        return True
    return torch.equal(a.float().cpu(), b.float().cpu())


def draft_model_name(path: str | Path) -> str:
    """The name a drafted record gives its draft model: its folder's name."""
    return Path(path).resolve().name


NOT_DRAFTED = {
    "init_audio": "audio-to-audio (init audio)", "inpaint_audio": "an edit (known audio)",
    "init_latents": "given init latents", "latents": "given initial noise",
    "generator": "a given generator", "prompt_embeds": "given prompt embeddings",
    "negative_prompt_embeds": "given negative prompt embeddings",
    "sections": "sections", "loop": "a loop", "inpaint_regions": "inpaint regions",
}
"""The call arguments that a draft cannot take, each with what it is called."""


TENSOR_ARGUMENTS = ("latents", "init_audio", "init_latents", "prompt_embeds",
                    "prompt_attention_mask", "negative_prompt_embeds",
                    "negative_attention_mask", "inpaint_audio", "adapters", "noise_fn")
"""Call arguments that a settings record does not hold (given beside it)."""


FROM_THE_CALL = ("prompt", "duration_s", "seconds_start", "seconds_total", "seed",
                 "num_outputs", "window")
"""What the draft takes of a call (its other settings are the draft model's)."""


def draft_blocker(arguments: dict[str, Any]) -> str | None:
    """What keeps a call with these keyword arguments from being drafted (the first
    given argument of :data:`NOT_DRAFTED`, in words), or None: it can be (if it also fits
    one window, which :func:`resolve_drafted` checks)."""
    for name, words in NOT_DRAFTED.items():
        value = arguments.get(name)
        if value is not None and value is not False:
            return words
    return None


def resolve_drafted(config: DiffusionModelConfig, draft_config: DiffusionModelConfig,
                    draft_name: str, prompt: Any = None, negative_prompt: str | None = None,
                    *, draft_steps: int = DRAFT_REFINEMENT.draft_steps, precision: str = "fp32",
                    **kwargs: Any) -> GenerationSettings | None:
    """The settings record of a drafted call (the keyword arguments of a pipeline call),
    from the two models' configs alone: the refinement's, every default filled in
    (:func:`refinement_settings`) and the seed drawn, with ``seeds`` the draft's and
    ``draft`` saying how it is made (:class:`DraftRecord`). None where the call cannot be
    drafted: :func:`draft_blocker`, or a piece longer than one window.

    Raises:
        SettingsError: a setting either model refuses (a draft model's refusal is named
            ``draft``).
    """
    if draft_blocker(kwargs) is not None:
        return None
    check_draft_config(config, draft_config)
    try:
        draft = resolve_settings(
            draft_config, prompt, None, duration_s=kwargs.get("duration_s"),
            num_inference_steps=draft_steps, seconds_start=kwargs.get("seconds_start", 0.0),
            seconds_total=kwargs.get("seconds_total"), seed=kwargs.get("seed"),
            num_outputs=kwargs.get("num_outputs", 1),
            window=kwargs.get("window") or config.window, precision=precision)
    except SettingsError as err:
        if err.field in FROM_THE_CALL:  # the call's own mistake, named as such
            raise
        raise SettingsError("draft", f"the draft model {draft_name}: {err}") from None
    if draft.num_windows > 1:
        return None
    if draft.seeds[-1] + REFINE_SEED_OFFSET > MAX_SEED:
        raise SettingsError("seed", f"a drafted generation refines with seed + "
                                    f"{REFINE_SEED_OFFSET}: give a seed of at most "
                                    f"{MAX_SEED - REFINE_SEED_OFFSET - draft.batch_size + 1}")
    refine = refinement_settings(config, kwargs.pop("init_noise_level", None),
                                 kwargs.pop("num_inference_steps", None),
                                 kwargs.pop("guidance_interval", None))
    kwargs.update(refine, seed=draft.seeds[0] + REFINE_SEED_OFFSET,
                  init_latents=torch.zeros(draft.batch_size, draft_config.vae.latent_dim,
                                           draft.window_frames))
    settings = resolve_settings(config, prompt, negative_prompt, precision=precision, **kwargs)
    return replace(settings, seeds=draft.seeds, draft=DraftRecord(
        draft_name, draft.num_inference_steps, draft.sampler, REFINE_SEED_OFFSET))


class DraftedPipeline:
    """A model (``refiner``) that refines the drafts of a few-step model (``drafter``) that
    shares its VAE: a pipeline with :class:`TextToMusicPipeline`'s ``resolve_settings``
    and call, that drafts the calls that can be (:func:`draft_blocker`) and runs the
    model's own sampler on the others.

    >>> pipe = DraftedPipeline.from_pretrained("models/demo", "models/demo-fast")
    >>> out = pipe("bossa nova, nylon guitar and flute", duration_s=30, seed=0)
    >>> out.settings.draft  # DraftRecord(model='demo-fast', num_inference_steps=2, ...)

    A drafted record's ``seeds`` are the draft's (what ``seed`` reproduces) and its other
    settings the refinement's: by default :data:`DRAFT_REFINEMENT`'s level, steps and
    guidance interval, the model's sampler and guidance scale; give any of them to
    change it. Adapters apply to the refinement only.
    """

    def __init__(self, refiner: TextToMusicPipeline, drafter: TextToMusicPipeline,
                 draft_steps: int = DRAFT_REFINEMENT.draft_steps) -> None:
        check_draft_config(refiner.config, drafter.config)
        check_same_vae(refiner.model.vae, drafter.model.vae)
        self.refiner, self.drafter = refiner, drafter
        self.draft_name = draft_model_name(str(drafter.model.source))
        self.draft_steps = int(draft_steps)
        # What the server and the studio read of a pipeline: the model's.
        self.config = refiner.config
        self.objective = refiner.objective
        self.precision = refiner.precision

    @classmethod
    def from_pretrained(cls, path: str | Path, draft: str | Path, *,
                        text_encoder_path: str | Path | None = None,
                        device: torch.device | str = "cpu", precision: str = "fp32",
                        compile: bool | str | Sequence[str] = False,
                        draft_steps: int = DRAFT_REFINEMENT.draft_steps) -> DraftedPipeline:
        """Load the model at ``path`` and the draft model at ``draft`` (refused from the
        configs before any weights load if it cannot share the model's VAE). The draft
        model uses the model's VAE and, where its text conditioning is the model's, its
        text encoder: one copy of each in memory."""
        config, draft_config = read_diffusion_config(path), read_diffusion_config(draft)
        check_draft_config(config, draft_config)
        refiner = TextToMusicPipeline.from_pretrained(
            path, text_encoder_path=text_encoder_path, device=device, precision=precision,
            compile=compile)
        target = resolve_precision(precision, resolve_device(device))
        same_text = draft_config.conditioning.text == config.conditioning.text
        loaded = load_diffusion_model(
            draft, text_encoder_path=text_encoder_path, device=refiner.device,
            dit_dtype=torch.bfloat16 if target == "bf16" else None,
            load_text_encoder=not same_text)
        check_same_vae(refiner.model.vae, loaded.vae)
        shared = DiffusionModel(loaded.config, refiner.model.vae, loaded.conditioner, loaded.dit,
                                refiner.model.text_encoder if same_text else loaded.text_encoder,
                                loaded.source)
        return cls(refiner, TextToMusicPipeline(shared, precision=target), draft_steps)

    @property
    def defaults(self):
        """The model's sampling defaults (a drafted call's refinement has its own:
        :data:`DRAFT_REFINEMENT`)."""
        return self.refiner.defaults

    @property
    def drafted_steps(self) -> int | None:
        """The refinement's default steps (None where the objective has none: a drafted
        call must give them)."""
        if get_objective(self.config.objective).level_kind != "ve":
            return None
        return DRAFT_REFINEMENT.num_inference_steps

    @property
    def sample_rate(self) -> int:
        return self.refiner.sample_rate

    @property
    def max_duration_s(self) -> float:
        return self.refiner.max_duration_s

    @property
    def compiled(self) -> tuple[str, ...]:
        return self.refiner.compiled

    def base_identity(self):
        return self.refiner.base_identity()

    def resolve_settings(self, prompt: Any = None, negative_prompt: str | None = None,
                         **kwargs: Any) -> GenerationSettings:
        """The complete settings of a call: drafted where it can be (:func:`resolve_drafted`),
        else the model's own (``draft`` None)."""
        drafted = resolve_drafted(self.config, self.drafter.config, self.draft_name, prompt,
                                  negative_prompt, draft_steps=self.draft_steps,
                                  precision=self.precision, **kwargs)
        if drafted is None:
            return self.refiner.resolve_settings(prompt, negative_prompt, **kwargs)
        return drafted

    def draft_settings(self, settings: GenerationSettings) -> GenerationSettings:
        """The draft model's own record of a drafted record's draft."""
        if settings.draft is None:
            raise SettingsError("draft", "these settings are not drafted")
        return self.drafter.resolve_settings(
            list(settings.prompts), None, duration_s=settings.duration_s,
            seconds_start=settings.seconds_start, seconds_total=settings.seconds_total,
            num_inference_steps=settings.draft.num_inference_steps, seed=settings.seeds[0],
            num_outputs=settings.num_outputs, window=settings.window)

    def __call__(self, prompt: Any = None, negative_prompt: str | None = None, *,
                 progress: ProgressFn | None = None, output_type: str = "audio",
                 **kwargs: Any) -> TextToMusicOutput:
        """Generate as :class:`TextToMusicPipeline` does (the same arguments, or a record
        of :meth:`resolve_settings` with the input tensors), drafting where the call can
        be: the draft model samples the window (latents only; its progress is reported as
        stage "draft sampling"), then the model refines it. A drafted output's settings
        are the drafted record."""
        if isinstance(prompt, GenerationSettings):
            settings = prompt
            if negative_prompt is not None:
                raise SettingsError("negative_prompt", "give the settings record alone: it "
                                                       "holds the negative prompt")
        elif "noise_fn" in kwargs:  # a test's noise: the model's own sampler, as given
            return self.refiner(prompt, negative_prompt, progress=progress,
                                output_type=output_type, **kwargs)
        else:
            settings = self.resolve_settings(prompt, negative_prompt, **{
                k: v for k, v in kwargs.items() if k != "adapters"})
            kwargs = {k: v for k, v in kwargs.items() if k in TENSOR_ARGUMENTS}
        if settings.draft is None:
            return self.refiner(settings, progress=progress, output_type=output_type, **kwargs)
        if settings.draft.model != self.draft_name:
            raise SettingsError("draft", f"these settings were drafted by "
                                         f"{settings.draft.model}; this pipeline drafts with "
                                         f"{self.draft_name}")
        blocker = draft_blocker({k: v for k, v in kwargs.items() if k != "adapters"})
        if blocker is not None or "noise_fn" in kwargs:
            raise SettingsError("draft", f"a drafted record takes no "
                                         f"{blocker or 'noise function'}: resolve the call's "
                                         "settings with it instead")

        def draft_progress(stage: str, done: int, total: int) -> None:
            if progress is not None:
                progress(f"draft {stage}", done, total)

        draft = self.drafter(self.draft_settings(settings), progress=draft_progress,
                             output_type="latent")
        refine = replace(settings, draft=None, seeds=tuple(
            seed + settings.draft.seed_offset for seed in settings.seeds))
        out = self.refiner(refine, progress=progress, output_type=output_type,
                           init_latents=draft.latents, **kwargs)
        return replace(out, settings=settings)

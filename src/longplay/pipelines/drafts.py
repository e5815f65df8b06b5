"""A few-step model's draft, refined by a full model (SDXL's base and refiner, for audio).

A distilled model that shares a full model's VAE drafts the piece in a few network
evaluations (``output_type="latent"``: the draft is not decoded); the full model then
noises the draft's latents to a middle noise level and samples from there with its own
sampler and guidance (``init_latents``), guided only above a low level. What this buys on
the demo model is measured in docs/speed.md ("A distilled draft, refined").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from longplay.config import DiffusionModelConfig
from longplay.diffusion import get_objective
from longplay.errors import SettingsError


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
    if mine.keys() != theirs.keys() or any(
            not torch.equal(mine[k].float().cpu(), theirs[k].float().cpu()) for k in mine):
        raise SettingsError("draft", "the draft model's VAE weights differ from the model's: "
                                     "its latents would not mean the same; use a draft model "
                                     "that shares the model's VAE (model_config.json "
                                     "\"vae_weights_from\", as the bundled demo-fast does)")

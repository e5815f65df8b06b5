"""The diffusion objectives a model can be trained with, and everything that follows from
one: the denoiser that wraps its network, its training-time corruption, the samplers that
fit it, how a run starts (from noise or from known latents at a noise level) and its
default settings. The pipeline, the server, the studio, the trainers and the command line
ask this registry; none of them tests an objective's name.

Shape legend: B batch, D latent channels, T latent frames.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from .denoisers import Denoiser, ModelFn, RFDenoiser, VDenoiser
from .objectives import (
    DiffusionTrainingSample,
    rf_from_denoised,
    rf_objective_sample,
    rf_to_denoised,
    v_from_denoised,
    v_objective_sample,
    v_to_denoised,
)
from .samplers import SAMPLERS, SamplerKind, SamplerSpec

__all__ = [
    "OBJECTIVES",
    "Objective",
    "SamplingDefaults",
    "SamplingStart",
    "get_objective",
]


@dataclass(frozen=True)
class SamplingDefaults:
    """The settings a generation takes when the caller gives none."""

    sampler: str
    num_inference_steps: int
    guidance_scale: float
    guidance_interval: tuple[float, float] | None = None
    """Noise levels (lo, hi] outside which guidance is off; None: everywhere."""
    sigma_min: float | None = None
    sigma_max: float | None = None
    """The ends of the VE samplers' noise-level grid, highest first; None for an objective
    whose levels are not VE sigmas (rectified flow's times run from 1 to 0)."""


@dataclass(frozen=True)
class SamplingStart:
    """Where a sampling run begins.

    Attributes:
        x: [B, D, T] the starting state, at ``grid[0]``.
        grid: [N + 1] (or [N] for v-DDIM) the noise levels of the run, highest first.
        init_noise_level: the level known latents were noised to, None from pure noise.
    """

    x: torch.Tensor
    grid: torch.Tensor
    init_noise_level: float | None


@dataclass(frozen=True)
class Objective:
    """One diffusion objective and what follows from it.

    Attributes:
        name: the canonical name, as stable-audio-tools writes it in ``model_config.json``
            (``diffusion_objective``).
        aliases: other names of the same objective in model configs.
        denoiser: wraps a network function ``model(x, t) -> v`` into the denoiser the
            samplers call.
        training_sample: the corruption and target for training, ``(x0, t, noise) ->``
            :class:`~.objectives.DiffusionTrainingSample`.
        to_denoised: the x0 estimate of a network output, ``(x_t, out, t) -> x0``, in the
            network's own state.
        from_denoised: its inverse, ``(x_t, x0, t) -> out`` (t > 0): what the network would
            output for an x0 estimate (inpainting, :mod:`.inpainting`).
        sampler_kinds: the sampler states that fit this objective's network.
        defaults: sampler, steps and guidance when the caller gives none.
        default_init_noise_level: the level audio-to-audio starts from by default.
        init_noise_level_meaning: what an init noise level is, for messages and help.
        sampler_aliases: other names of fitting samplers (stable-audio-tools'
            ``sampler_type`` names) -> the canonical name.
        level_kind: the units of the noise levels a caller gives (see
            :meth:`network_time`).
    """

    name: str
    aliases: tuple[str, ...]
    denoiser: Callable[[ModelFn], Denoiser]
    training_sample: Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                              DiffusionTrainingSample]
    to_denoised: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    from_denoised: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    sampler_kinds: frozenset[SamplerKind]
    defaults: SamplingDefaults
    default_init_noise_level: float
    init_noise_level_meaning: str
    sampler_aliases: Mapping[str, str] = field(default_factory=dict)
    level_kind: SamplerKind = "ve"
    """How a noise level given by the caller is read (guidance intervals): a VE sigma
    ("ve") or an RF time ("rf")."""

    def network_time(self, level: float) -> float:
        """The network time of a noise level given in this objective's units (a VE sigma
        for v models, an RF time for flows); +inf stays +inf."""
        if level == float("inf"):
            return float("inf")
        return SAMPLERS_BY_KIND[self.level_kind].network_time(level)

    @property
    def sampler_names(self) -> tuple[str, ...]:
        """The canonical names of the samplers that fit, sorted."""
        return tuple(sorted(n for n, s in SAMPLERS.items() if s.kind in self.sampler_kinds))

    @property
    def accepted_sampler_names(self) -> tuple[str, ...]:
        """Every name :meth:`sampler` accepts: the fitting samplers and their aliases."""
        return tuple(sorted({*self.sampler_names, *self.sampler_aliases}))

    def sampler(self, name: str, *, model: str | None = None) -> SamplerSpec:
        """The sampler called ``name`` (or one of its aliases) if it fits this objective.

        Raises ValueError naming the fitting samplers for an unknown name or a sampler
        of another objective; ``model`` describes the model in that message (default
        "this <objective> model").
        """
        canonical = self.sampler_aliases.get(name, name)
        spec = SAMPLERS.get(canonical)
        fitting = ", ".join(self.sampler_names)
        if spec is None:
            raise ValueError(f"unknown sampler {name!r}; choose one of {fitting}")
        if spec.kind not in self.sampler_kinds:
            what = model or f"this {self.name} model"
            raise ValueError(f"sampler {name!r} does not fit {what}; use one of {fitting}")
        return spec

    def init_noise_level_bounds(self, sigma_min: float | None,
                                sigma_max: float | None) -> tuple[float, float]:
        """(low, high): an init noise level must lie in (low, high]. The sigmas are the
        run's grid ends (a model's ``SamplingDefaults`` hold them); an objective whose
        levels are times in [0, 1] takes None."""
        if "ve" in self.sampler_kinds:
            return sigma_min, sigma_max
        return 0.0, 1.0

    def check_init_noise_level(self, level: float, sigma_min: float | None,
                               sigma_max: float | None) -> None:
        """ValueError unless ``level`` is a usable start for audio-to-audio."""
        low, high = self.init_noise_level_bounds(sigma_min, sigma_max)
        if not low < level <= high:
            raise ValueError(f"init_noise_level must be in ({low:g}, {high:g}] "
                             f"({self.init_noise_level_meaning}), got {level:g}")

    def start(self, spec: SamplerSpec, noise: torch.Tensor, steps: int, *,
              sigma_min: float, sigma_max: float, init_latents: torch.Tensor | None = None,
              init_noise_level: float | None = None) -> SamplingStart:
        """The starting state and grid of a run of ``spec`` for ``steps`` evaluations.

        noise: [B, D, T] standard normal; init_latents: [B, D, T] known latents to start
        from (audio-to-audio) at ``init_noise_level`` (default
        ``default_init_noise_level``), or None to start from pure noise.
        """
        device, dtype = noise.device, noise.dtype
        if init_latents is None:
            grid = spec.grid(steps, sigma_min=sigma_min, sigma_max=sigma_max, device=device)
            return SamplingStart(spec.start(noise, grid.to(dtype)), grid, None)
        if not spec.supports_init:
            raise ValueError(f"audio-to-audio is not available with the {spec.name!r} "
                             "sampler; use a DPM-Solver++ sampler")
        level = self.default_init_noise_level if init_noise_level is None else init_noise_level
        self.check_init_noise_level(level, sigma_min, sigma_max)
        grid = spec.grid(steps, sigma_min=sigma_min, sigma_max=sigma_max, top=level,
                         device=device)
        return SamplingStart(spec.start(noise, grid.to(dtype), init_latents), grid,
                             float(level))


V_OBJECTIVE = Objective(
    # Stable Audio Open 1.0 and Stable Audio 2.0: the paper's DPM-Solver++, 100 steps,
    # guidance 7, with the stochastic 3M variant of the reference UI.
    name="v",
    aliases=(),
    denoiser=VDenoiser,
    training_sample=v_objective_sample,
    to_denoised=v_to_denoised,
    from_denoised=v_from_denoised,
    sampler_kinds=frozenset({"ve", "v-ddim"}),
    # Noise levels log-linear from 500 down to 0.03 (the paper's and the reference UI's).
    defaults=SamplingDefaults("dpmpp-3m-sde", 100, 7.0, sigma_min=0.03, sigma_max=500.0),
    default_init_noise_level=1.0,
    init_noise_level_meaning="a VE noise sigma between sigma_min and sigma_max",
)

RECTIFIED_FLOW = Objective(
    # Stable Audio Open Small: 8 ping-pong steps without guidance. stable-audio-tools
    # calls the flow samplers "euler" and "dpmpp" (its sampler_type).
    name="rectified_flow",
    aliases=("rf_denoiser",),
    denoiser=RFDenoiser,
    training_sample=rf_objective_sample,
    to_denoised=rf_to_denoised,
    from_denoised=rf_from_denoised,
    sampler_kinds=frozenset({"rf"}),
    defaults=SamplingDefaults("pingpong", 8, 1.0),
    default_init_noise_level=0.5,
    init_noise_level_meaning="a rectified-flow time",
    sampler_aliases={"euler": "rf-euler", "dpmpp": "rf-dpmpp"},
    level_kind="rf",
)

SAMPLERS_BY_KIND: dict[str, SamplerSpec] = {spec.kind: spec for spec in SAMPLERS.values()}

OBJECTIVES: dict[str, Objective] = {
    name: objective
    for objective in (V_OBJECTIVE, RECTIFIED_FLOW)
    for name in (objective.name, *objective.aliases)
}
"""Every objective name a model config may give -> its :class:`Objective`."""


def get_objective(name: str) -> Objective:
    """The objective called ``name``; ValueError listing the known names otherwise."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        known = ", ".join(sorted(OBJECTIVES))
        raise ValueError(f"unknown diffusion objective {name!r}; known objectives: "
                         f"{known}") from None

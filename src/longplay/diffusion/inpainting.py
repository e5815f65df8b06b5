"""Inpainting with any model, without training: keep known latents where a mask says so
and generate the rest to match them.

Shape legend: B batch, D latent channels, T latent frames.

The replacement method (Song et al. 2021, "Score-Based Generative Modeling through
Stochastic Differential Equations", appendix I.2; Lugmayr et al. 2022, "RePaint", eq. 8):
at every step the kept region of the state is the known latents brought to the current
noise level, while the network sees the whole state and fills in the rest consistently.
:class:`InpaintingModel` applies it to the network's x0 estimate, which every sampler
here updates affinely: with the estimate equal to the known latents x0 in the kept
region, a state x0 + s eps there becomes x0 + s' eps' at the next level, eps' being the
run's own seeded noise (the deterministic solvers carry the starting noise along, the
SDE solvers and ping-pong mix in their fresh draws). So the kept region follows exactly
the noising of the known latents, for every sampler and both objectives, with no change
to the samplers. A soft mask (:func:`soft_keep_mask`) ramps the kept region out over a
few frames at its edges, so that the join is generated too; the caller composites the
known latents back where the mask is 1 after sampling, making them exact.

Resampling (RePaint's "jumps", Lugmayr et al. 2022, Algorithm 1 and sec. 4.3): after a
segment of ``jump_length`` steps the state is noised back up to the segment's start and
the segment is sampled again, ``resample_steps`` times in all, so that the generated
region can harmonise with the kept one (:func:`sample_with_resampling`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .denoisers import Denoiser, ModelFn
from .samplers import NoiseFn, SamplerSpec, SamplerStep, StepCallback

__all__ = ["InpaintingModel", "inpainting_start", "sample_with_resampling", "soft_keep_mask"]

FromDenoised = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``from_denoised(x [B, D, T], x0 [B, D, T], t [B]) -> network output`` of an objective."""


def soft_keep_mask(keep: torch.Tensor, edge_frames: int, *, circular: bool = False
                   ) -> torch.Tensor:
    """Keep weights with soft edges.

    keep: [..., T] bool (True = keep the known latents, False = generate) -> [..., T]
    float32 in [0, 1]: generated frames 0, a kept frame d frames away from the nearest
    generated one (d = 1 right next to it) min(1, d / (edge_frames + 1)). The ramp lies
    inside the kept region, so the generated region stays wholly free and only the kept
    frames within ``edge_frames`` of it are blended. ``circular``: distances wrap around
    the ends (a loop's seam). Without generated frames the mask is all ones.
    """
    if edge_frames < 0:
        raise ValueError(f"edge_frames must be >= 0, got {edge_frames}")
    keep = keep.to(torch.bool)
    weights = keep.to(torch.float32)
    if edge_frames == 0 or bool(keep.all()) or not bool(keep.any()):
        return weights
    shape = keep.shape
    generate = (~keep).to(torch.float32).reshape(-1, 1, shape[-1])  # [N, 1, T]
    for distance in range(1, edge_frames + 1):
        if circular:
            padded = F.pad(generate, (distance, distance), mode="circular")
        else:
            padded = F.pad(generate, (distance, distance))
        near = F.max_pool1d(padded, 2 * distance + 1, stride=1).reshape(shape) > 0
        weights = torch.where(keep & near, torch.minimum(
            weights, torch.full_like(weights, distance / (edge_frames + 1))), weights)
    return weights


class InpaintingModel:
    """A network function whose x0 estimate is the known latents where the mask keeps
    them (the replacement method, see the module docstring).

    out' = out + m * (from_denoised(x, known, t) - out), i.e. the x0 estimate becomes
    m * known + (1 - m) * x0(out): exactly ``out`` where m = 0.

    Attributes:
        model: the network function ``model(x [B, D, T], t [B]) -> [B, D, T]`` (guided or
            not), in the objective's own state (cosine or rectified-flow).
        known: [B, D, T] the known latents.
        mask: [B, 1, T] or [B, D, T] keep weights in [0, 1] (:func:`soft_keep_mask`).
        from_denoised: the objective's inverse of its x0 estimate
            (``Objective.from_denoised``).
    """

    def __init__(self, model: ModelFn, known: torch.Tensor, mask: torch.Tensor,
                 from_denoised: FromDenoised) -> None:
        if known.dim() != 3 or mask.dim() != 3 or mask.shape[0] != known.shape[0] or (
                mask.shape[-1] != known.shape[-1]):
            raise ValueError(f"known latents [B, D, T] and a mask [B, 1, T] are needed, got "
                             f"{tuple(known.shape)} and {tuple(mask.shape)}")
        self.model = model
        self.known = known
        self.mask = mask
        self.from_denoised = from_denoised

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: [B, D, T]; t: [B] -> [B, D, T]."""
        out = self.model(x, t)
        mask = self.mask.to(out.dtype)
        return out + mask * (self.from_denoised(x, self.known.to(x.dtype), t).to(out.dtype)
                             - out)


def inpainting_start(spec: SamplerSpec, noise: torch.Tensor, grid: torch.Tensor,
                     known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The starting state of an inpainting run at ``grid[0]``: the masked known latents
    noised to the top level with the run's noise (the replacement method from the first
    step; at the top of a rectified-flow or cosine grid this is the noise itself).
    noise, known: [B, D, T]; mask: [B, 1, T] -> [B, D, T]."""
    return spec.noised(known * mask.to(known.dtype), noise, grid[0])


def sample_with_resampling(spec: SamplerSpec, denoiser: Denoiser, x: torch.Tensor,
                           sigmas: torch.Tensor, *, jump_length: int, resample_steps: int,
                           noise_fn: NoiseFn, callback: StepCallback | None = None
                           ) -> torch.Tensor:
    """Run ``spec`` over ``sigmas`` in segments of ``jump_length`` steps, each sampled
    ``resample_steps`` times with a jump back to its start in between (RePaint, Lugmayr et
    al. 2022, Algorithm 1 with jump length j and r resamplings).

    x: [B, D, T] at sigmas[0]; sigmas: [N + 1] the sampler's grid (see ``spec.grid``);
    noise_fn(i, x) -> [B, D, T] standard normal noise: the jumps' noise and that of the
    stochastic samplers. ``callback`` sees every evaluation, numbered in order.
    -> [B, D, T]. ``resample_steps=1`` is the plain run.
    """
    if jump_length < 1 or resample_steps < 1:
        raise ValueError(f"jump_length and resample_steps must be >= 1, got {jump_length} and "
                         f"{resample_steps}")
    if resample_steps > 1 and not spec.supports_init:
        raise ValueError(f"the {spec.name!r} sampler cannot be resampled: it always runs "
                         "from pure noise to the end")
    if resample_steps == 1:  # one pass: the plain run (multistep history unbroken)
        return spec.fn(denoiser, x, sigmas, noise_fn=noise_fn, callback=callback)
    levels = sigmas.tolist()
    count = 0

    def numbered(step: SamplerStep) -> None:
        nonlocal count
        if callback is not None:
            callback(SamplerStep(count, step.x, step.sigma, step.denoised))
        count += 1

    draws = 0

    def drawn(i: int, state: torch.Tensor) -> torch.Tensor:
        nonlocal draws
        draws += 1
        return noise_fn(draws - 1, state)

    steps = len(levels) - 1
    for first in range(0, steps, jump_length):
        last = min(first + jump_length, steps)
        segment = sigmas[first:last + 1]
        start = x
        for repeat in range(resample_steps):
            x = spec.fn(denoiser, start, segment, noise_fn=drawn, callback=numbered)
            if repeat < resample_steps - 1:
                start = spec.renoise(x, levels[last], levels[first], drawn(0, x))
    return x

"""Classifier-free guidance as a wrapper around a network function.

Ho & Salimans 2022 ("Classifier-Free Diffusion Guidance"), eq. 6, applied to the raw network
output: out = uncond + scale * (cond - uncond).

Shape legend: B batch, D latent channels, T latent frames.

The caller builds ``batched_model(x [2B, D, T], t [2B]) -> out [2B, D, T]``, a network function
that has the conditioning stacked as [conditional; unconditional] along the batch (items 0..B-1
conditional, B..2B-1 unconditional), so that both branches cost one forward pass. The guided
function is then wrapped by a denoiser as usual, e.g. ``VDenoiser(guided(cond, batched, 7.0))``.
Because the denoisers of :mod:`.denoisers` are affine in the network output with coefficients
that do not depend on the conditioning, guiding the outputs equals guiding the denoised
estimates (what stable-audio-tools does, up to rounding).

Guidance scale 1 is the conditional model itself: :func:`guided` then returns ``model_cond``
and no unconditional pass is made; :func:`cfg_model` refuses scale 1 for the same reason.
"""

from __future__ import annotations

import math

import torch

from .denoisers import ModelFn

__all__ = ["CFGModel", "GuidanceInterval", "cfg_model", "guided"]


class CFGModel:
    """``model(x [B, D, T], t [B]) -> uncond + scale * (cond - uncond)`` [B, D, T], from ONE call
    of ``batched_model(cat([x, x]), cat([t, t]))`` whose output halves are (cond, uncond).

    Attributes:
        batched_model: network function on the doubled batch [cond; uncond].
        scale: the guidance scale.
    """

    def __init__(self, batched_model: ModelFn, scale: float) -> None:
        if not math.isfinite(scale):
            raise ValueError(f"guidance scale must be finite, got {scale}")
        if scale == 1:
            raise ValueError(
                "guidance scale 1 is the conditional model alone: call it directly (or use "
                "guided(model_cond, batched_model, scale)) instead of paying for an "
                "unconditional pass"
            )
        self.batched_model = batched_model
        self.scale = float(scale)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: [B, D, T]; t: [B] (or 0-dim) -> guided output [B, D, T]."""
        batch = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(batch)
        out = self.batched_model(torch.cat([x, x]), torch.cat([t, t]))
        if out.shape[0] != 2 * batch:
            raise ValueError(
                f"batched_model returned {out.shape[0]} items for a doubled batch of {2 * batch}"
            )
        cond, uncond = out[:batch], out[batch:]
        return uncond + self.scale * (cond - uncond)

    def __repr__(self) -> str:
        return f"CFGModel(batched_model={self.batched_model!r}, scale={self.scale})"


def cfg_model(batched_model: ModelFn, scale: float) -> ModelFn:
    """Classifier-free guidance on a [cond; uncond] batched network (see :class:`CFGModel`).

    Raises ValueError for scale == 1 (use :func:`guided`, which then skips the extra pass).
    """
    return CFGModel(batched_model, scale)


class GuidanceInterval:
    """Guidance in a limited interval of noise levels (Kynkäänniemi et al. 2024, "Applying
    Guidance in a Limited Interval Improves Sample and Distribution Quality in Diffusion
    Models"): ``model(x, t)`` is the guided function for network times ``t_lo < t <=
    t_hi`` and the conditional model alone (one pass) elsewhere.

    The times are the network's own (cosine t for v models, the RF time for flows): the
    samplers give every item of a batch the same level, so item 0 decides. The choice
    reads that level on the host once per call: on a GPU one synchronisation per network
    evaluation, small next to the pass it decides on.
    """

    def __init__(self, model_cond: ModelFn, model_guided: ModelFn, t_lo: float,
                 t_hi: float) -> None:
        if not t_lo < t_hi:
            raise ValueError(f"need t_lo < t_hi, got {t_lo} and {t_hi}")
        self.model_cond, self.model_guided = model_cond, model_guided
        self.t_lo, self.t_hi = float(t_lo), float(t_hi)

    def inside(self, t: float) -> bool:
        return self.t_lo < t <= self.t_hi

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        level = float(torch.as_tensor(t).reshape(-1)[0])
        return (self.model_guided if self.inside(level) else self.model_cond)(x, t)

    def __repr__(self) -> str:
        return f"GuidanceInterval(t_lo={self.t_lo}, t_hi={self.t_hi})"


def guided(model_cond: ModelFn, batched_model: ModelFn, scale: float,
           interval: tuple[float, float] | None = None) -> ModelFn:
    """The network function to sample with at guidance ``scale``.

    model_cond: ``model(x [B, D, T], t [B])`` with the conditional inputs only;
    batched_model: the same network on the doubled batch [cond; uncond];
    interval: (t_lo, t_hi) network times outside which guidance is off
    (:class:`GuidanceInterval`), or None for guidance at every level.
    Returns ``model_cond`` itself when scale == 1 (no unconditional pass), else
    :func:`cfg_model` (batched_model, scale), limited to ``interval`` when given.
    """
    if scale == 1:
        return model_cond
    if interval is None:
        return cfg_model(batched_model, scale)
    return GuidanceInterval(model_cond, cfg_model(batched_model, scale), *interval)

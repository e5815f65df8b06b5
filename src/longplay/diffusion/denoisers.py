"""Preconditioning: network functions -> k-diffusion style denoisers (EDM's ``networks.py`` part).

A *model* (network function) maps ``model(x [B, D, T], t [B]) -> out [B, D, T]``.
A *denoiser* maps ``denoiser(x [B, D, T], sigma [B]) -> denoised x0 estimate [B, D, T]``;
the samplers in :mod:`longplay.diffusion.samplers` only ever call denoisers.

Nothing here knows what the network is: any callable with that signature works (conditioning,
guidance and so on are closed over by the caller).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._util import append_dims, per_item
from .schedules import sigma_to_t

__all__ = ["Denoiser", "ModelFn", "RFDenoiser", "VDenoiser"]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A network function: ``model(x [B, D, T], t [B]) -> output [B, D, T]``."""

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A denoiser: ``denoiser(x [B, D, T], sigma [B]) -> denoised [B, D, T]``."""


class VDenoiser:
    """A v-objective (cosine schedule) network seen as a VE denoiser.

    Karras et al. 2022 ("EDM"), eq. 7 with the v-diffusion preconditioning of k-diffusion's
    ``external.VDenoiser`` (sigma_data = 1):

        c_skip = 1 / (s^2 + 1),  c_out = -s / sqrt(s^2 + 1),  c_in = 1 / sqrt(s^2 + 1),
        D(x; s) = c_skip x + c_out model(c_in x, t(s)),  t(s) = atan(s) * 2 / pi.

    ``x`` is the VE state x0 + s eps; c_in x = alpha x0 + sigma eps is the cosine-schedule state
    the network was trained on, and the result is alpha x_t - sigma v (the x0 estimate).
    The expressions are evaluated in k-diffusion's operation order.

    Attributes:
        model: the network function ``model(x [B, D, T], t [B]) -> v [B, D, T]``
            (:func:`~longplay.diffusion.samplers.sample_v_ddim` calls it directly).
    """

    sigma_data = 1.0

    def __init__(self, model: ModelFn) -> None:
        self.model = model

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """sigma: [B] -> (c_skip, c_out, c_in), each [B]."""
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = -sigma * sd / (sigma**2 + sd**2) ** 0.5
        c_in = 1 / (sigma**2 + sd**2) ** 0.5
        return c_skip, c_out, c_in

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x: [B, D, T] VE state; sigma: [B] (or 0-dim) VE noise levels -> denoised [B, D, T]."""
        sigma = per_item(sigma, x)
        c_skip, c_out, c_in = (append_dims(c, x.ndim) for c in self.scalings(sigma))
        return self.model(x * c_in, sigma_to_t(sigma)) * c_out + x * c_skip


class RFDenoiser:
    """A rectified-flow velocity network seen as a denoiser (Stable Audio Open Small,
    ``rf_denoiser``): the noise level is the RF time t in [0, 1] and

        D(x; t) = x - t * model(x, t)    (x_t = (1 - t) x0 + t eps, v = eps - x0).

    Attributes:
        model: the network function ``model(x [B, D, T], t [B]) -> v [B, D, T]``.
    """

    def __init__(self, model: ModelFn) -> None:
        self.model = model

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x: [B, D, T] state at time t; sigma: [B] (or 0-dim) RF times t -> denoised [B, D, T]."""
        t = per_item(sigma, x)
        return x - append_dims(t, x.ndim) * self.model(x, t)

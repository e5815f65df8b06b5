"""Noise schedules and sampling grids.

Two parameterisations of the same Gaussian corruption are used by Stable Audio:

* the cosine ("v-diffusion") variance-preserving schedule, Salimans & Ho 2022 ("Progressive
  Distillation", sec. 2 and appendix D): x_t = alpha(t) x0 + sigma(t) eps with
  alpha = cos(pi t / 2), sigma = sin(pi t / 2), t in [0, 1];
* its variance-exploding view (Karras et al. 2022, "EDM", eq. 1 / table 1):
  x_ve = x_t / alpha = x0 + s eps with s = sigma / alpha = tan(pi t / 2).

Rectified flow (Liu et al. 2022; Stable Audio Open Small) uses x_t = (1 - t) x0 + t eps.

Grids are 1-D tensors ordered from high noise to low noise. They are computed in float32
by default because that is what the reference (stable-audio-tools 0.0.20 with its vendored
k-diffusion) does: the defaults reproduce its grids bit for bit.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "alpha_sigma",
    "log_linear_sigmas",
    "logsnr_shift_t_grid",
    "rf_t_grid",
    "sigma_to_t",
    "t_to_sigma",
]


def alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine schedule (Salimans & Ho 2022, eq. 5 with the cosine choice of appendix D).

    t: any shape, in [0, 1] -> (alpha, sigma), each of t's shape:
    alpha = cos(pi t / 2), sigma = sin(pi t / 2), so alpha^2 + sigma^2 = 1.
    """
    angle = t * math.pi / 2
    return torch.cos(angle), torch.sin(angle)


def t_to_sigma(t: torch.Tensor) -> torch.Tensor:
    """Cosine time to the VE noise level of the same process: s = sigma/alpha = tan(pi t / 2).

    t: any shape, in [0, 1) -> same shape, in [0, inf).
    """
    return torch.tan(t * math.pi / 2)


def sigma_to_t(sigma: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`t_to_sigma`: t = atan(s) * 2 / pi (k-diffusion ``VDenoiser.sigma_to_t``).

    sigma: any shape, >= 0 -> same shape, in [0, 1]. Evaluated as ``atan(s) / pi * 2``, the
    operation order of k-diffusion, so that the time fed to the network matches it bit for bit.
    """
    return torch.atan(sigma) / math.pi * 2


def _check_steps(steps: int) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")


def log_linear_sigmas(
    steps: int,
    sigma_min: float,
    sigma_max: float,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """VE noise levels evenly spaced in log sigma, followed by a final 0.

    Returns [steps + 1]: exp(linspace(log sigma_max, log sigma_min, steps)) then 0, evaluated as
    k-diffusion's ``get_sigmas_polyexponential(steps, sigma_min, sigma_max, rho=1)``
    (ramp = linspace(1, 0, steps); exp(ramp * (log s_max - log s_min) + log s_min)), which is
    what stable-audio-tools passes to its k-diffusion samplers. ``steps`` is the number of
    denoiser evaluations of a one-evaluation-per-step sampler.
    """
    _check_steps(steps)
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(1, 0, steps, dtype=dtype, device=device)
    log_min = math.log(sigma_min)
    sigmas = torch.exp(ramp * (math.log(sigma_max) - log_min) + log_min)
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def logsnr_shift_t_grid(
    steps: int,
    *,
    include_endpoint: bool,
    anchor_logsnr: float = -6.2,
    logsnr_end: float = 2.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The t grid of stable-audio-tools 0.0.20 (``build_schedule`` with its default
    ``LogSNRShift(rate=0, anchor_logsnr=-6.2, logsnr_end=2.0)``), uniform in log-SNR.

    u = linspace(1, 0, steps + 1) (with ``include_endpoint=False`` the final 0 is dropped),
    logsnr(u) = logsnr_end - u * (logsnr_end - anchor_logsnr), t = sigmoid(-logsnr), with
    u = 0 -> t = 0 and u = 1 -> t = 1 exactly.

    With rate 0 the grid does not depend on the sequence length.

    Returns [steps + 1] (include_endpoint, the rectified-flow samplers: 1 -> ... -> 0) or
    [steps] (not include_endpoint, the v-DDIM path of a v-objective model: 1 -> ... > 0).
    """
    _check_steps(steps)
    u = torch.linspace(1, 0, steps + 1, dtype=dtype, device=device)
    if not include_endpoint:
        u = u[:-1]
    logsnr = logsnr_end - u * (logsnr_end - anchor_logsnr)
    t = torch.sigmoid(-logsnr)
    t = torch.where(u <= 0, torch.zeros_like(t), t)
    return torch.where(u >= 1, torch.ones_like(t), t)


def rf_t_grid(
    steps: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Plain rectified-flow grid: linspace(1, 0, steps + 1) -> [steps + 1]."""
    _check_steps(steps)
    return torch.linspace(1, 0, steps + 1, dtype=dtype, device=device)

"""Samplers: one function per method, all with one signature (k-diffusion's ``sampling.py`` style).

Shape legend: B batch, D latent channels, T latent frames.

Every sampler is::

    sample_NAME(denoiser, x, sigmas, *, generator=None, callback=None, noise_fn=None) -> Tensor

* ``denoiser(x [B, D, T], sigma [B]) -> denoised [B, D, T]`` (see :mod:`.denoisers`);
  ``sample_v_ddim`` needs a :class:`~.denoisers.VDenoiser` and calls its ``.model`` (the v
  network) directly. Each :class:`SamplerSpec` makes its own grid and starting state, so
  every sampler is called the same way.
* ``x`` [B, D, T]: the starting point, already at the first noise level ``sigmas[0]``:
  ``noise * sigmas[0]`` for the VE samplers (kind ``"ve"``), plain noise at t = 1 for the
  rectified-flow samplers (kind ``"rf"``) and for ``sample_v_ddim`` (kind ``"v-ddim"``).
* ``sigmas`` [N + 1]: 1-D, strictly decreasing noise levels, one denoiser call per step
  (N steps). A whole run ends at 0; a grid that ends above 0 runs part of the way and returns
  the state at its last level (RePaint's segments, :mod:`.inpainting`). For kind ``"ve"``
  these are VE sigmas (e.g. :func:`.log_linear_sigmas`), for ``"rf"`` RF times (e.g.
  ``logsnr_shift_t_grid(..., include_endpoint=True)``). For ``sample_v_ddim`` it is the
  cosine-schedule t grid *without* the final 0 (``logsnr_shift_t_grid(...,
  include_endpoint=False)``), one model call per grid point.
* ``generator``: the only source of randomness of the stochastic samplers (the two SDE solvers
  and ping-pong); they raise ``ValueError`` when neither it nor ``noise_fn`` is given, so that a
  seed always reproduces a run. The deterministic samplers accept and ignore it.
* ``callback``: called once per step, right after the denoiser evaluation, with a
  :class:`SamplerStep` (the state *before* the step is taken).
* ``noise_fn(i, x) -> noise [B, D, T]``: replaces the draws from ``generator`` (tests feed
  recorded noises through it). ``i`` is the step index; it is called only at the steps that use
  noise (see each sampler), in step order.

The samplers run under ``torch.no_grad()`` and return [B, D, T].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from .denoisers import Denoiser, VDenoiser
from .schedules import alpha_sigma, log_linear_sigmas, logsnr_shift_t_grid, sigma_to_t

__all__ = [
    "SAMPLERS",
    "NoiseFn",
    "SamplerFn",
    "SamplerKind",
    "SamplerSpec",
    "SamplerStep",
    "StepCallback",
    "get_sampler",
    "sample_consistency",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_3m_sde",
    "sample_euler",
    "sample_pingpong",
    "sample_rf_dpmpp",
    "sample_rf_euler",
    "sample_v_ddim",
]


@dataclass(frozen=True)
class SamplerStep:
    """What a sampler reports after each denoiser evaluation.

    Attributes:
        i: the step index, 0-based.
        x: [B, D, T] the state the denoiser was evaluated at (before this step's update).
        sigma: 0-dim, the grid value of this step (VE sigma, RF time or cosine t, by kind).
        denoised: [B, D, T] the x0 estimate at this step.
    """

    i: int
    x: torch.Tensor
    sigma: torch.Tensor
    denoised: torch.Tensor


StepCallback = Callable[[SamplerStep], None]
NoiseFn = Callable[[int, torch.Tensor], torch.Tensor]
"""``noise_fn(i, x [B, D, T]) -> standard normal noise [B, D, T]`` for step ``i``."""


class SamplerFn(Protocol):
    """The shared signature of every ``sample_*`` function."""

    def __call__(
        self,
        denoiser: Denoiser,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        noise_fn: NoiseFn | None = None,
    ) -> torch.Tensor: ...


# --------------------------------------------------------------------------------------------
# helpers


def _check_grid(sigmas: torch.Tensor) -> None:
    if sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ValueError(f"sigmas must be 1-D with at least 2 entries, got {tuple(sigmas.shape)}")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError("sigmas must be strictly decreasing (high noise first)")
    if bool((sigmas < 0).any()):
        raise ValueError("sigmas must be >= 0")


def _noise_source(
    name: str, generator: torch.Generator | None, noise_fn: NoiseFn | None
) -> NoiseFn:
    """The noise of a stochastic sampler: ``noise_fn`` if given, else draws from ``generator``."""
    if noise_fn is not None:
        source = noise_fn
    elif generator is not None:

        def source(i: int, x: torch.Tensor) -> torch.Tensor:
            return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    else:
        raise ValueError(
            f"{name} is stochastic: pass generator=torch.Generator(device).manual_seed(seed) "
            "(or noise_fn) so that the run is reproducible; the global RNG is never used"
        )

    def checked(i: int, x: torch.Tensor) -> torch.Tensor:
        noise = source(i, x)
        if noise.shape != x.shape:
            raise ValueError(
                f"noise_fn returned shape {tuple(noise.shape)} for x of shape {tuple(x.shape)}"
            )
        return noise

    return checked


def _report(
    callback: StepCallback | None,
    i: int,
    x: torch.Tensor,
    sigma: torch.Tensor,
    denoised: torch.Tensor,
) -> None:
    if callback is not None:
        callback(SamplerStep(i=i, x=x, sigma=sigma, denoised=denoised))


# --------------------------------------------------------------------------------------------
# VE samplers (k-diffusion v0.1 semantics)


@torch.no_grad()
def sample_euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    noise_fn: NoiseFn | None = None,
) -> torch.Tensor:
    """Euler on the probability-flow ODE dx/ds = (x - D(x; s)) / s.

    Karras et al. 2022 ("EDM"), Algorithm 2 without churn (k-diffusion ``sample_euler`` with
    s_churn = 0): d = (x - D(x; s_i)) / s_i, x <- x + d (s_{i+1} - s_i).
    x: [B, D, T] at sigmas[0]; sigmas: [N + 1] VE levels ending at 0 -> [B, D, T].
    Deterministic: ``generator`` and ``noise_fn`` are ignored.
    """
    _check_grid(sigmas)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        denoised = denoiser(x, sigma * s_in)
        _report(callback, i, x, sigma, denoised)
        d = (x - denoised) / sigma
        x = x + d * (sigmas[i + 1] - sigma)
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    noise_fn: NoiseFn | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M), Lu et al. 2022 ("DPM-Solver++"), Algorithm 2 (k-diffusion
    ``sample_dpmpp_2m``).

    With lambda = -log s and h = lambda_{i+1} - lambda_i:
    x <- (s_{i+1} / s_i) x - expm1(-h) D', where D' = D_i on the first step and on the final
    step to s = 0 (first order, DDIM), and otherwise
    D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1} with r = h_{i-1} / h_i (second-order multistep).
    x: [B, D, T] at sigmas[0]; sigmas: [N + 1] VE levels ending at 0 -> [B, D, T].
    Deterministic: ``generator`` and ``noise_fn`` are ignored.
    """
    _check_grid(sigmas)
    s_in = x.new_ones([x.shape[0]])

    def sigma_fn(t: torch.Tensor) -> torch.Tensor:
        return t.neg().exp()

    def t_fn(sigma: torch.Tensor) -> torch.Tensor:
        return sigma.log().neg()

    old_denoised = None
    levels = sigmas.tolist()  # host copy: no device sync per step
    for i in range(len(sigmas) - 1):
        denoised = denoiser(x, sigmas[i] * s_in)
        _report(callback, i, x, sigmas[i], denoised)
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or levels[i + 1] == 0:
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            h_last = t - t_fn(sigmas[i - 1])
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    noise_fn: NoiseFn | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE, Lu et al. 2022 ("DPM-Solver++"), sec. 5 / appendix of the SDE
    variant, as k-diffusion ``sample_dpmpp_2m_sde`` with eta = 1, s_noise = 1 and the
    'midpoint' second-order correction.

    With lambda = -log s, h = lambda_{i+1} - lambda_i (eta h = h):
    x <- (s_{i+1}/s_i) e^{-h} x + (1 - e^{-2h}) D_i
         [+ 0.5 (1 - e^{-2h}) (D_i - D_{i-1}) / r,  r = h_{i-1}/h, from the second step]
         + s_{i+1} sqrt(1 - e^{-2h}) z_i,
    and the final step to s = 0 returns D (no noise drawn).

    Noise: k-diffusion draws z_i as normalised increments of a Brownian tree (torchsde). Here
    z_i ~ N(0, I) is drawn from ``generator`` (or ``noise_fn(i, x)``) at each step i whose
    s_{i+1} > 0: for a fixed grid the increments of a Brownian motion over disjoint intervals
    are independent standard normals after normalisation, so the samples have the same
    distribution; they are not the same numbers as a torchsde run with the same seed.
    x: [B, D, T] at sigmas[0]; sigmas: [N + 1] VE levels ending at 0 -> [B, D, T].
    """
    _check_grid(sigmas)
    noise = _noise_source("sample_dpmpp_2m_sde", generator, noise_fn)
    eta = 1.0
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    h_last = None
    levels = sigmas.tolist()  # host copy: no device sync per step
    for i in range(len(sigmas) - 1):
        denoised = denoiser(x, sigmas[i] * s_in)
        _report(callback, i, x, sigmas[i], denoised)
        if levels[i + 1] == 0:
            x = denoised  # denoising step
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = eta * h
            x = (
                sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x
                + (-h - eta_h).expm1().neg() * denoised
            )
            if old_denoised is not None:
                r = h_last / h
                x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old_denoised)
            x = x + noise(i, x) * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt()
            h_last = h
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    noise_fn: NoiseFn | None = None,
) -> torch.Tensor:
    """DPM-Solver++(3M) SDE, as k-diffusion ``sample_dpmpp_3m_sde`` with eta = 1, s_noise = 1
    (third-order multistep extension of Lu et al. 2022, "DPM-Solver++", on the SDE of sec. 5).

    With lambda = -log s, h = lambda_{i+1} - lambda_i, h_eta = 2h:
    x <- e^{-h_eta} x + (1 - e^{-h_eta}) D_i + phi_2 d1 - phi_3 d2 + s_{i+1} sqrt(1 - e^{-2h}) z_i,
    phi_2 = (e^{-h_eta} - 1)/h_eta + 1, phi_3 = phi_2/h_eta - 1/2, where d1, d2 are the first and
    second divided differences of the last three denoised values in lambda (first order at the
    first step, second order at the second); the final step to s = 0 returns D (no noise).

    Noise: see :func:`sample_dpmpp_2m_sde` (independent N(0, I) draws from ``generator`` or
    ``noise_fn(i, x)`` at each step with s_{i+1} > 0 instead of a torchsde Brownian tree).
    x: [B, D, T] at sigmas[0]; sigmas: [N + 1] VE levels ending at 0 -> [B, D, T].
    """
    _check_grid(sigmas)
    noise = _noise_source("sample_dpmpp_3m_sde", generator, noise_fn)
    eta = 1.0
    s_in = x.new_ones([x.shape[0]])
    denoised_1 = denoised_2 = None
    h = h_1 = h_2 = None
    levels = sigmas.tolist()  # host copy: no device sync per step
    for i in range(len(sigmas) - 1):
        denoised = denoiser(x, sigmas[i] * s_in)
        _report(callback, i, x, sigmas[i], denoised)
        if levels[i + 1] == 0:
            x = denoised  # denoising step
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0 = h_1 / h
                r1 = h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                r = h_1 / h
                d = (denoised - denoised_1) / r
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * d
            x = x + noise(i, x) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt()
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


# --------------------------------------------------------------------------------------------
# rectified-flow samplers (stable-audio-tools 0.0.20 semantics)


@torch.no_grad()
def sample_rf_euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    noise_fn: NoiseFn | None = None,
) -> torch.Tensor:
    """Euler on the rectified-flow ODE dx/dt = v (Liu et al. 2022, eq. 1; stable-audio-tools
    ``sample_discrete_euler``): with v = (x - D(x; t_i)) / t_i, x <- x + (t_{i+1} - t_i) v.

    With an :class:`~.denoisers.RFDenoiser` v is the network's velocity (up to rounding).
    x: [B, D, T] noise at sigmas[0] (normally t = 1); sigmas: [N + 1] RF times ending at 0
    -> [B, D, T]. Deterministic: ``generator`` and ``noise_fn`` are ignored.
    """
    _check_grid(sigmas)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        t = sigmas[i]
        denoised = denoiser(x, t * s_in)
        _report(callback, i, x, t, denoised)
        v = (x - denoised) / t
        x = x + (sigmas[i + 1] - t) * v
    return x


RF_DPMPP_MIN_ALPHA = 1e-10
"""Lower bound of 1 - t inside the log-SNR of ``sample_rf_dpmpp`` (the reference's value)."""


@torch.no_grad()
def sample_rf_dpmpp(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    noise_fn: NoiseFn | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) on the rectified-flow time grid (stable-audio-tools
    ``sample_flow_dpmpp``; Lu et al. 2022, Algorithm 2, with alpha_t = 1 - t, sigma_t = t).

    With lambda(t) = log((1 - t) / t) and h = lambda(t_{i+1}) - lambda(t_i):
    x <- (t_{i+1} / t_i) x - (1 - t_{i+1}) expm1(-h) D', D' = D_i on the first step, else
    D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1} with r = h_{i-1} / h_i; the final step to t = 0
    returns D_i exactly (the limit of the update, evaluated without the infinite lambda(0)).
    As stable-audio-tools 0.0.20 does, 1 - t is bounded below by 1e-10 inside lambda, so a
    grid starting at t = 1 has lambda(t_0) = log(1e-10) (not -inf) and the second step is a
    true second-order step.
    x: [B, D, T] noise at sigmas[0]; sigmas: [N + 1] RF times ending at 0 -> [B, D, T].
    Deterministic: ``generator`` and ``noise_fn`` are ignored.
    """
    _check_grid(sigmas)
    s_in = x.new_ones([x.shape[0]])

    def log_snr(t: torch.Tensor) -> torch.Tensor:
        return (1 - t).clamp(min=RF_DPMPP_MIN_ALPHA).log() - t.log()

    old_denoised = None
    levels = sigmas.tolist()  # host copy: no device sync per step
    for i in range(len(sigmas) - 1):
        t_curr, t_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, t_curr * s_in)
        _report(callback, i, x, t_curr, denoised)
        if levels[i + 1] == 0:
            x = denoised
        else:
            alpha_next = 1 - t_next
            h = log_snr(t_next) - log_snr(t_curr)
            if old_denoised is None:
                x = (t_next / t_curr) * x - alpha_next * (-h).expm1() * denoised
            else:
                h_last = log_snr(t_curr) - log_snr(sigmas[i - 1])
                r = h_last / h
                denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
                x = (t_next / t_curr) * x - alpha_next * (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_pingpong(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    noise_fn: NoiseFn | None = None,
) -> torch.Tensor:
    """Ping-pong sampling for few-step distilled rectified-flow models (Stable Audio Open Small,
    Novack et al. 2025 "Fast Text-to-Audio Generation with Adversarial Post-Training", sec. 3.3;
    stable-audio-tools ``sample_flow_pingpong``): denoise fully, then re-noise to the next time,

        x <- (1 - t_{i+1}) D(x; t_i) + t_{i+1} z_i,   z_i ~ N(0, I).

    z_i is drawn at *every* step, the last one included (where t_{i+1} = 0 multiplies it away),
    so a run consumes N draws like the reference; ``noise_fn(i, x)`` is called for i = 0..N-1.
    x: [B, D, T] noise at sigmas[0]; sigmas: [N + 1] RF times ending at 0 -> [B, D, T].
    """
    _check_grid(sigmas)
    noise = _noise_source("sample_pingpong", generator, noise_fn)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = denoiser(x, sigmas[i] * s_in)
        _report(callback, i, x, sigmas[i], denoised)
        t_next = sigmas[i + 1]
        x = (1 - t_next) * denoised + t_next * noise(i, x)
    return x


@torch.no_grad()
def sample_consistency(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    noise_fn: NoiseFn | None = None,
) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, "Consistency Models", Algorithm 1)
    in the VE parameterisation, for a model distilled to map any noisy state straight to
    its x0 (:mod:`longplay.training.distill`): denoise fully, then noise the estimate to
    the next level,

        x <- D(x; s_i) + s_{i+1} z_i,   z_i ~ N(0, I),

    and the final step to s = 0 returns D (no noise drawn; ``noise_fn(i, x)`` is called for
    the N - 1 intermediate steps). With a few steps of a log-linear grid this is the
    distilled model's sampler: one network evaluation per step, no guidance.
    x: [B, D, T] at sigmas[0] (noise * sigma_max); sigmas: [N + 1] VE levels ending at 0
    -> [B, D, T].
    """
    _check_grid(sigmas)
    noise = _noise_source("sample_consistency", generator, noise_fn)
    s_in = x.new_ones([x.shape[0]])
    levels = sigmas.tolist()  # host copy: no device sync per step
    for i in range(len(sigmas) - 1):
        denoised = denoiser(x, sigmas[i] * s_in)
        _report(callback, i, x, sigmas[i], denoised)
        x = denoised if levels[i + 1] == 0 else denoised + noise(i, x) * sigmas[i + 1]
    return x


# --------------------------------------------------------------------------------------------
# v-DDIM (the 'euler' of stable-audio-tools for v-objective models)


@torch.no_grad()
def sample_v_ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    noise_fn: NoiseFn | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) in the v-parameterisation on a cosine-schedule t grid.

    Song et al. 2021 ("DDIM"), eq. 12 with sigma_t = 0, written with v as in Salimans & Ho 2022
    (sec. 4); stable-audio-tools ``sample`` (its 'euler' for v-objective models). With
    (alpha_i, sigma_i) = (cos, sin)(pi t_i / 2) and v = model(x, t_i):

        x0_i = alpha_i x - sigma_i v,   eps_i = sigma_i x + alpha_i v,
        x <- alpha_{i+1} x0_i + sigma_{i+1} eps_i   (i < n - 1),

    returning x0 at the last grid point. It is Euler on the VE ODE in exact arithmetic, but is
    kept in the cosine state so that t = 1 (infinite VE sigma) is representable.

    Differences from the other samplers (kind ``"v-ddim"``):

    * ``denoiser`` must be a :class:`~.denoisers.VDenoiser`; its ``.model`` (the v network) is
      called on the cosine state x and t, the preconditioning is not used;
    * ``sigmas`` [n] is the t grid t_0 > ... > t_{n-1} (no final 0 needed), e.g.
      ``logsnr_shift_t_grid(n, include_endpoint=False)``; n model calls;
    * ``x`` [B, D, T] is the unscaled noise (the cosine state at t_0 = 1).

    ``SamplerStep.sigma`` is t_i. Deterministic: ``generator`` and ``noise_fn`` are ignored.
    -> [B, D, T].
    """
    if not isinstance(denoiser, VDenoiser):
        raise TypeError(
            "sample_v_ddim needs a VDenoiser (it calls the v network denoiser.model directly), "
            f"got {type(denoiser).__name__}"
        )
    if sigmas.ndim != 1 or sigmas.shape[0] < 1:
        raise ValueError(f"the t grid must be 1-D and non-empty, got {tuple(sigmas.shape)}")
    if not bool((sigmas[1:] < sigmas[:-1]).all()) or bool((sigmas < 0).any()) or sigmas[0] > 1:
        raise ValueError("the t grid must be strictly decreasing within [0, 1]")
    model = denoiser.model
    ts = x.new_ones([x.shape[0]])
    alphas, sigmas_vp = alpha_sigma(sigmas)
    n = len(sigmas)
    pred = x
    for i in range(n):
        v = model(x, ts * sigmas[i])
        pred = x * alphas[i] - v * sigmas_vp[i]
        eps = x * sigmas_vp[i] + v * alphas[i]
        _report(callback, i, x, sigmas[i], pred)
        if i < n - 1:
            x = pred * alphas[i + 1] + eps * sigmas_vp[i + 1]
    return pred


# --------------------------------------------------------------------------------------------
# registry: each sampler with the grid it runs on and the state it starts from

SamplerKind = Literal["ve", "rf", "v-ddim"]
"""The state a sampler works in: ``"ve"`` x0 + s eps at VE noise levels s (the k-diffusion
samplers); ``"rf"`` (1 - t) x0 + t eps at rectified-flow times t; ``"v-ddim"`` the cosine
state alpha(t) x0 + sigma(t) eps at cosine times t."""


def _noised_ve(x0: torch.Tensor, noise: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    return x0 + noise * level


def _noised_rf(x0: torch.Tensor, noise: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    return (1 - level) * x0 + level * noise


def _noised_cosine(x0: torch.Tensor, noise: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    alpha, sigma = alpha_sigma(level)
    return alpha * x0 + sigma * noise


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler, with the grid it runs on and the state it starts from, so that
    every sampler is called the same way::

        grid = spec.grid(steps, sigma_min=..., sigma_max=...)       # or top=<init level>
        x = spec.start(noise, grid)                                  # or init_latents=...
        latents = spec.fn(denoiser, x, grid, generator=..., callback=...)

    Attributes:
        name: the public name.
        fn: the sampler function (shared signature).
        kind: the state it works in (see :data:`SamplerKind`): ``"ve"`` VE sigmas ending
            at 0, any denoiser (normally a VDenoiser); ``"rf"`` RF times 1 -> 0, an
            RFDenoiser; ``"v-ddim"`` the cosine t grid without the final 0, a VDenoiser
            whose network it calls directly.
        stochastic: whether it needs ``generator`` (or ``noise_fn``).
    """

    name: str
    fn: SamplerFn
    kind: SamplerKind
    stochastic: bool
    evaluates_sigma_min: bool = True
    """False for a "ve" sampler whose model maps the lowest level to itself (a
    consistency model): its grid leaves ``sigma_min`` out instead of spending an
    evaluation there."""

    @property
    def supports_init(self) -> bool:
        """Whether it can start part-way, from known latents at a noise level below the
        top (audio-to-audio, inpainting). v-DDIM always starts at t = 1."""
        return self.kind != "v-ddim"

    def grid(self, steps: int, *, sigma_min: float = 0.03, sigma_max: float = 500.0,
             top: float | None = None, dtype: torch.dtype = torch.float32,
             device: torch.device | str | None = None) -> torch.Tensor:
        """The noise levels of a run of ``steps`` network evaluations, highest first.

        ``"ve"``: :func:`.log_linear_sigmas` from ``top`` (default ``sigma_max``) down to
        ``sigma_min``, then 0 -> [steps + 1]; without ``evaluates_sigma_min``, the same
        grid of steps + 1 levels with sigma_min dropped -> [steps + 1]. ``"rf"``: the
        reference's log-SNR grid
        1 -> 0 scaled by ``top`` (default 1) -> [steps + 1]; the sigmas are unused.
        ``"v-ddim"``: the cosine t grid 1 -> t_{n-1} > 0 without the final 0 -> [steps];
        it cannot start lower (``top`` must be None).
        """
        if self.kind == "ve":
            upper = sigma_max if top is None else top
            if not self.evaluates_sigma_min:  # steps + 1 levels, sigma_min left out
                grid = log_linear_sigmas(steps + 1, sigma_min, upper, dtype=dtype,
                                         device=device)
                return torch.cat([grid[:-2], grid[-1:]])
            return log_linear_sigmas(steps, sigma_min, upper, dtype=dtype, device=device)
        if self.kind == "rf":
            grid = logsnr_shift_t_grid(steps, include_endpoint=True, dtype=dtype, device=device)
            return grid if top is None else grid * top
        if top is not None:
            raise ValueError(f"the {self.name!r} sampler always starts from pure noise; it "
                             "cannot start from known latents at a lower noise level")
        return logsnr_shift_t_grid(steps, include_endpoint=False, dtype=dtype, device=device)

    def network_time(self, level: float) -> float:
        """The network time of grid level ``level``: what the network is given at that
        level (cosine t of a VE sigma for "ve"; the level itself for "rf" and
        "v-ddim")."""
        if self.kind == "ve":
            return float(sigma_to_t(torch.tensor(float(level), dtype=torch.float64)))
        return float(level)

    def noised(self, x0: torch.Tensor, noise: torch.Tensor,
               level: torch.Tensor | float) -> torch.Tensor:
        """Known latents brought to grid level ``level`` with ``noise``, in this sampler's
        state: x0 + s eps ("ve"), (1 - t) x0 + t eps ("rf"), alpha(t) x0 + sigma(t) eps
        ("v-ddim"). x0, noise: [B, D, T]; level: 0-dim or [B] -> [B, D, T]."""
        level = torch.as_tensor(level, dtype=x0.dtype, device=x0.device)
        if level.ndim == 1:
            level = level.view(-1, *([1] * (x0.ndim - 1)))
        if self.kind == "ve":
            return _noised_ve(x0, noise, level)
        if self.kind == "rf":
            return _noised_rf(x0, noise, level)
        return _noised_cosine(x0, noise, level)

    def renoise(self, x: torch.Tensor, level: float, higher: float,
                noise: torch.Tensor) -> torch.Tensor:
        """The forward process from grid level ``level`` up to ``higher``, q(x_higher | x):
        x + sqrt(s_a^2 - s_b^2) eps ("ve"); ((1 - a) / (1 - b)) x + sqrt(a^2 - ((1 - a) b /
        (1 - b))^2) eps ("rf"), with b = level < a = higher <= 1. RePaint's jump back
        (Lugmayr et al. 2022, Algorithm 1). x, noise: [B, D, T] -> [B, D, T]."""
        if not self.supports_init:
            raise ValueError(f"the {self.name!r} sampler cannot run part of the way; it has "
                             "no jump back")
        if not 0 <= level < higher:
            raise ValueError(f"need 0 <= level < higher, got {level} and {higher}")
        if self.kind == "ve":
            return x + noise * (higher**2 - level**2) ** 0.5
        scale = (1 - higher) / (1 - level)  # 0 at t = 1: pure noise again
        return scale * x + noise * max(higher**2 - (scale * level) ** 2, 0.0) ** 0.5

    def start(self, noise: torch.Tensor, grid: torch.Tensor,
              init_latents: torch.Tensor | None = None) -> torch.Tensor:
        """The state the run starts from, at ``grid[0]``: pure noise in this sampler's
        scaling (noise * sigma_max for "ve", the noise itself for "rf" and "v-ddim"), or
        ``init_latents`` noised to ``grid[0]`` (audio-to-audio). noise, init_latents:
        [B, D, T] -> [B, D, T]."""
        if init_latents is None:
            return noise * grid[0] if self.kind == "ve" else noise
        if not self.supports_init:
            raise ValueError(f"the {self.name!r} sampler cannot start from init latents; use "
                             "a DPM-Solver++ sampler")
        return self.noised(init_latents, noise, grid[0])


SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in (
        SamplerSpec("euler", sample_euler, "ve", stochastic=False),
        SamplerSpec("dpmpp-2m", sample_dpmpp_2m, "ve", stochastic=False),
        SamplerSpec("dpmpp-2m-sde", sample_dpmpp_2m_sde, "ve", stochastic=True),
        SamplerSpec("dpmpp-3m-sde", sample_dpmpp_3m_sde, "ve", stochastic=True),
        SamplerSpec("consistency", sample_consistency, "ve", stochastic=True,
                    evaluates_sigma_min=False),
        # A phased consistency model (longplay.training.distill, phased: true) maps each
        # level to the lower end of its phase, the next level of this grid: deterministic
        # Euler steps between the phase ends, sigma_min left out as for "consistency".
        SamplerSpec("phased", sample_euler, "ve", stochastic=False, evaluates_sigma_min=False),
        SamplerSpec("rf-euler", sample_rf_euler, "rf", stochastic=False),
        SamplerSpec("rf-dpmpp", sample_rf_dpmpp, "rf", stochastic=False),
        SamplerSpec("pingpong", sample_pingpong, "rf", stochastic=True),
        SamplerSpec("v-ddim", sample_v_ddim, "v-ddim", stochastic=False),
    )
}
"""Public sampler names -> :class:`SamplerSpec`. Which of them fit a model is the
objective's to say (:mod:`.registry`)."""


def get_sampler(name: str) -> SamplerSpec:
    """The registered sampler called ``name``; ValueError listing the known names otherwise."""
    try:
        return SAMPLERS[name]
    except KeyError:
        known = ", ".join(sorted(SAMPLERS))
        raise ValueError(f"unknown sampler {name!r}; known samplers: {known}") from None

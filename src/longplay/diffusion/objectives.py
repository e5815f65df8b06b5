"""Training-time corruption, targets and loss (the ``loss.py`` part of EDM's split).

Shape legend: B batch, D latent channels, T latent frames. Per-item times ``t`` are [B]
(a 0-dim tensor is accepted too and applies to the whole batch).

Two objectives are provided, both predicting a velocity ``v`` from (x_t, t):

* v-objective, cosine schedule (Salimans & Ho 2022, "Progressive Distillation", sec. 4 and
  appendix D; Stable Audio Open 1.0): x_t = alpha x0 + sigma eps, v = alpha eps - sigma x0,
  alpha = cos(pi t / 2), sigma = sin(pi t / 2).
* rectified flow (Liu et al. 2022, "Flow Straight and Fast", eq. 1; Stable Audio Open Small,
  ``rf_denoiser``): x_t = (1 - t) x0 + t eps, v = eps - x0.

The loss is the plain mean squared error between the network output and ``v``, or, with
frame weights (:func:`padding_frame_weights`), its weighted mean over latent frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._util import append_dims
from .schedules import alpha_sigma

__all__ = [
    "DiffusionTrainingSample",
    "diffusion_loss",
    "padding_frame_weights",
    "rf_from_denoised",
    "rf_objective_sample",
    "rf_to_denoised",
    "rf_to_noise",
    "sample_training_noise",
    "sample_training_t",
    "v_from_denoised",
    "v_objective_sample",
    "v_to_denoised",
    "v_to_noise",
]


@dataclass(frozen=True)
class DiffusionTrainingSample:
    """One corrupted training batch.

    Attributes:
        x_t: [B, D, T] the noisy input the network sees.
        target: [B, D, T] what the network should output (the velocity v).
        t: [B] the times the batch was corrupted at.
    """

    x_t: torch.Tensor
    target: torch.Tensor
    t: torch.Tensor


def _check_same_shape(x0: torch.Tensor, noise: torch.Tensor) -> None:
    if x0.shape != noise.shape:
        raise ValueError(f"x0 has shape {tuple(x0.shape)} but noise {tuple(noise.shape)}")


def sample_training_t(
    batch: int,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training times, uniform in [0, 1): [batch], drawn from ``generator`` only."""
    return torch.rand(batch, generator=generator, dtype=dtype, device=device)


def sample_training_noise(x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise like ``x0`` [B, D, T], drawn from ``generator`` only."""
    return torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)


def v_objective_sample(
    x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
) -> DiffusionTrainingSample:
    """v-objective corruption (Salimans & Ho 2022, eq. 5 and sec. 4 "v-parameterisation").

    x0, noise: [B, D, T]; t: [B] -> x_t = alpha x0 + sigma eps, target v = alpha eps - sigma x0.
    """
    _check_same_shape(x0, noise)
    alpha, sigma = alpha_sigma(append_dims(t, x0.ndim))
    return DiffusionTrainingSample(
        x_t=alpha * x0 + sigma * noise, target=alpha * noise - sigma * x0, t=t
    )


def v_to_denoised(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 estimate from a v prediction: x0 = alpha x_t - sigma v.

    x_t, v: [B, D, T]; t: [B] -> [B, D, T].
    """
    alpha, sigma = alpha_sigma(append_dims(t, x_t.ndim))
    return alpha * x_t - sigma * v


def v_from_denoised(x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The v prediction whose x0 estimate is ``x0``: v = (alpha x_t - x0) / sigma (the
    inverse of :func:`v_to_denoised`; t > 0).

    x_t, x0: [B, D, T]; t: [B] -> [B, D, T].
    """
    alpha, sigma = alpha_sigma(append_dims(t, x_t.ndim))
    return (alpha * x_t - x0) / sigma


def v_to_noise(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Noise estimate from a v prediction: eps = sigma x_t + alpha v.

    x_t, v: [B, D, T]; t: [B] -> [B, D, T].
    """
    alpha, sigma = alpha_sigma(append_dims(t, x_t.ndim))
    return sigma * x_t + alpha * v


def rf_objective_sample(
    x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
) -> DiffusionTrainingSample:
    """Rectified-flow corruption (Liu et al. 2022, eq. 1 with the linear interpolation path).

    x0, noise: [B, D, T]; t: [B] -> x_t = (1 - t) x0 + t eps, target v = eps - x0.
    """
    _check_same_shape(x0, noise)
    tb = append_dims(t, x0.ndim)
    return DiffusionTrainingSample(x_t=(1 - tb) * x0 + tb * noise, target=noise - x0, t=t)


def rf_to_denoised(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 estimate from a rectified-flow velocity: x0 = x_t - t v.

    x_t, v: [B, D, T]; t: [B] -> [B, D, T].
    """
    return x_t - append_dims(t, x_t.ndim) * v


def rf_from_denoised(x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The rectified-flow velocity whose x0 estimate is ``x0``: v = (x_t - x0) / t (the
    inverse of :func:`rf_to_denoised`; t > 0).

    x_t, x0: [B, D, T]; t: [B] -> [B, D, T].
    """
    return (x_t - x0) / append_dims(t, x_t.ndim)


def rf_to_noise(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Noise estimate from a rectified-flow velocity: eps = x_t + (1 - t) v.

    x_t, v: [B, D, T]; t: [B] -> [B, D, T].
    """
    return x_t + (1 - append_dims(t, x_t.ndim)) * v


def diffusion_loss(prediction: torch.Tensor, sample: DiffusionTrainingSample,
                   frame_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Plain MSE between the network output and the target, averaged over every element;
    with ``frame_weights`` [B, T], each frame's MSE over the channels weighted by them.

    prediction: [B, D, T] (the network's v) -> scalar.
    """
    if prediction.shape != sample.target.shape:
        raise ValueError(
            f"prediction has shape {tuple(prediction.shape)}, "
            f"the target {tuple(sample.target.shape)}"
        )
    if frame_weights is None:
        return torch.mean((prediction - sample.target) ** 2)
    b, _, t = prediction.shape
    if frame_weights.shape != (b, t):
        raise ValueError(f"frame_weights has shape {tuple(frame_weights.shape)}, expected "
                         f"{(b, t)} (batch, frames)")
    per_frame = torch.mean((prediction - sample.target) ** 2, dim=1)  # [B, T]
    return (per_frame * frame_weights).sum() / frame_weights.sum()


def padding_frame_weights(num_valid_frames: torch.Tensor, frames: int,
                          padding_share: float) -> torch.Tensor:
    """Loss weights [B, T] that give each window's padding (its frames from
    ``num_valid_frames[b]`` on: the silence after a piece shorter than the window) the
    share ``padding_share`` of the window's loss, and its piece the rest, each spread
    evenly over its frames. A window without padding weighs every frame alike. Each row
    sums to T, so :func:`diffusion_loss` of unpadded windows is the plain MSE."""
    if not 0.0 <= padding_share < 1.0:
        raise ValueError(f"padding_share must be in [0, 1), got {padding_share!r}")
    valid = num_valid_frames.to(torch.long).clamp(1, frames)[:, None]  # [B, 1]
    position = torch.arange(frames, device=valid.device)[None, :]  # [1, T]
    padded = position >= valid  # [B, T]
    pad = (frames - valid).to(torch.float32)
    piece = torch.full_like(pad, 1.0 - padding_share) * frames / valid
    silence = padding_share * frames / pad.clamp(min=1)
    weights = torch.where(padded, silence, piece)
    return torch.where(pad > 0, weights, torch.ones_like(weights))

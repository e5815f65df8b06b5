"""Small shape helpers shared by the diffusion modules.

Shape legend: B batch, D latent channels, T latent frames.
"""

from __future__ import annotations

import torch


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a per-item value broadcasts against a batch.

    v: [] or [B] (any shape of at most ``ndim`` dims) -> [B, 1, ..., 1] with ``ndim`` dims
    (a 0-dim tensor stays 0-dim: it broadcasts as it is).
    """
    if v.ndim > ndim:
        raise ValueError(f"cannot broadcast a {v.ndim}-dim tensor against {ndim} dims")
    if v.ndim == 0:
        return v
    return v.reshape(*v.shape, *([1] * (ndim - v.ndim)))


def per_item(value: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """A noise level / time for each batch item of ``x`` [B, ...]: [] or [1] or [B] -> [B]."""
    if isinstance(value, torch.Tensor):
        value = value.to(device=x.device)
    else:
        value = torch.tensor(value, dtype=x.dtype, device=x.device)
    if value.ndim > 1:
        raise ValueError(f"expected a 0-dim or [B] noise level, got shape {tuple(value.shape)}")
    return value.expand(x.shape[0])

"""Learning-rate schedules."""

from __future__ import annotations


def inverse_lr_factor(step: int, inv_gamma: float, power: float, warmup: float) -> float:
    """k-diffusion's InverseLR: (1 - warmup^(step + 1)) * (1 + step / inv_gamma)^-power,
    the factor applied to the base learning rate at optimiser step ``step``."""
    return (1.0 - warmup ** (step + 1)) * (1.0 + step / inv_gamma) ** -power

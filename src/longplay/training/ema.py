"""Exponential moving average of model weights with a warm-up (k-diffusion's EMAWarmup)."""

from __future__ import annotations

import copy

import lightning as L
import torch
from torch import nn


def ema_decay(step: int, max_decay: float = 0.9999, power: float = 0.75,
              inv_gamma: float = 1.0) -> float:
    """decay = min(max_decay, 1 - (1 + step / inv_gamma)^-power), 0 before the first step:
    the average follows the model closely early on and slows down as training goes."""
    if step <= 0:
        return 0.0
    return min(max_decay, 1.0 - (1.0 + step / inv_gamma) ** -power)


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to hold the average."""
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    return ema.eval()


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for parameters and float buffers."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        if b.is_floating_point():
            e.lerp_(b, 1.0 - decay)
        else:
            e.copy_(b)


class EMACallback(L.Callback):
    """Updates ``module.ema`` once per optimiser step (``module.update_average``).

    Lightning runs checkpoint callbacks after the others, so a checkpoint written at a
    step already holds that step's average and a resumed run continues it exactly.
    """

    def __init__(self, max_decay: float, power: float, inv_gamma: float) -> None:
        self.max_decay, self.power, self.inv_gamma = max_decay, power, inv_gamma
        self._last_step = -1

    def on_train_start(self, trainer, module) -> None:
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if module.ema is None or trainer.global_step == self._last_step:
            return  # no ema, or a micro-batch of gradient accumulation
        self._last_step = trainer.global_step
        module.update_average(ema_decay(trainer.global_step, self.max_decay, self.power,
                                        self.inv_gamma))

"""Weight-normalised 1-D convolutions (Salimans & Kingma 2016).

The weight is ``g * v / ||v||`` with the norm taken over every dimension but the
first (PyTorch's ``weight_norm(dim=0)``). Parameters are named ``weight_g``,
``weight_v`` and ``bias`` as in the public checkpoints, so that training and
inference share one module. When gradients are on, the weight is recomputed on each
call. Without gradients (``torch.inference_mode`` / ``torch.no_grad``) the folded
weight is computed once and cached, as a plain convolution weight, until a parameter
changes (an optimiser step or ``load_state_dict`` bumps its version counter).

``compute_dtype`` (default None: the input's dtype) runs the convolution itself in
another precision without gradients, e.g. bfloat16 through oneDNN on CPUs with
AVX512-BF16: the input is cast, the weight and bias are cached in that dtype, and the
output is cast back, so the activations between convolutions keep their dtype.

Shape legend: B batch, D channels, N positions along time.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from longplay.layers.sharing import TransientState


def _weight_norm(weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
    """g * v / ||v||, the norm over all dims but 0 (g: [O, 1, 1], v: [O, I, K])."""
    norm = weight_v.flatten(1).norm(dim=1).view(-1, *([1] * (weight_v.dim() - 1)))
    return weight_v * (weight_g / norm)


class WeightNormedConv(nn.Module):
    """Holds ``weight_v`` [A, B, K], ``weight_g`` [A, 1, 1] and an optional ``bias``,
    initialised like PyTorch's convolutions with ||v|| = g."""

    # The folded weights belong to one user of the module (see layers.sharing).
    TRANSIENT_STATE: ClassVar[TransientState] = {"_folded": lambda: None,
                                                 "_pinned": lambda: None}

    def __init__(self, shape: tuple[int, int, int], bias_size: int, fan_in: int,
                 bias: bool) -> None:
        super().__init__()
        v = torch.empty(shape)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.flatten(1).norm(dim=1).view(-1, 1, 1).clone())
        if bias:
            bound = 1.0 / math.sqrt(fan_in)
            self.bias = nn.Parameter(torch.empty(bias_size).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)
        self.compute_dtype: torch.dtype | None = None
        self._folded: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None
        # Set by ``pin_folded`` for compiled inference: used as they are, no cache check.
        self._pinned: tuple[torch.Tensor, torch.Tensor | None] | None = None

    @property
    def weight(self) -> torch.Tensor:
        """The effective convolution weight, shaped like ``weight_v``."""
        return _weight_norm(self.weight_g, self.weight_v)

    def _folded_params(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The folded weight and the bias in ``dtype``, cached while no parameter changes."""
        params = [self.weight_g, self.weight_v] + ([] if self.bias is None else [self.bias])
        # Inference tensors (parameters made under inference_mode) have no version
        # counter; they cannot change outside inference_mode, so their identity is the key.
        key = (dtype, self.weight_v.device, *(-1 if p.is_inference() else p._version
                                              for p in params), *(id(p) for p in params))
        if self._folded is None or self._folded[0] != key:
            with torch.no_grad():
                weight = self.weight.to(dtype)
                bias = None if self.bias is None else self.bias.to(dtype)
            self._folded = (key, weight, bias)
        return self._folded[1], self._folded[2]

    def pin_folded(self, dtype: torch.dtype) -> None:
        """Fix the folded weight and bias in ``dtype`` for the next inference calls,
        without the cache check (whose version counters ``torch.compile`` cannot trace).
        The caller pins again after the parameters change; ``unpin_folded`` undoes it."""
        self._pinned = self._folded_params(self.compute_dtype or dtype)

    def unpin_folded(self) -> None:
        self._pinned = None

    def _apply_conv(self, x: torch.Tensor, conv) -> torch.Tensor:
        """``conv(x, weight, bias)``: through the weight norm with gradients, else with the
        cached (or pinned) folded weight in ``compute_dtype``."""
        if torch.is_grad_enabled():
            return conv(x, self.weight, self.bias)
        if self._pinned is not None:
            weight, bias = self._pinned
        else:
            weight, bias = self._folded_params(self.compute_dtype or x.dtype)
        return conv(x.to(weight.dtype), weight, bias).to(x.dtype)

    def _apply(self, fn, recurse: bool = True):
        # .to(), .half(), ...: fold again from the moved parameters
        self._folded = self._pinned = None
        return super()._apply(fn, recurse)


class WNConv1d(WeightNormedConv):
    """Conv1d with weight normalisation; same arguments as ``nn.Conv1d``.
    weight_v: [O, I, K], weight_g: [O, 1, 1]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, bias: bool = True) -> None:
        super().__init__((out_channels, in_channels, kernel_size), out_channels,
                         in_channels * kernel_size, bias)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, I, N] -> [B, O, N']."""
        return self._apply_conv(x, lambda x, w, b: F.conv1d(x, w, b, self.stride, self.padding,
                                                            self.dilation))


class WNConvTranspose1d(WeightNormedConv):
    """ConvTranspose1d with weight normalisation over dim 0 of its weight.
    weight_v: [I, O, K], weight_g: [I, 1, 1]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True) -> None:
        super().__init__((in_channels, out_channels, kernel_size), out_channels,
                         out_channels * kernel_size, bias)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, I, N] -> [B, O, N * stride] (for kernel 2*stride, padding ceil(stride/2))."""
        return self._apply_conv(x, lambda x, w, b: F.conv_transpose1d(x, w, b, self.stride,
                                                                      self.padding))

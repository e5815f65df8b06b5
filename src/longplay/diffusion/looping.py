"""Seamless loops: a network function that never sees the loop's seam in the same place.

Shape legend: B batch, D latent channels, T latent frames.

A loop's end must flow into its start, so the latent sequence is treated as a circle. At
each evaluation :class:`CircularModel` rotates the state by an offset that moves on by
the golden ratio of the length (so successive seams spread evenly over the circle),
evaluates the network and rotates its output back. The network therefore sees every
position, the seam included, as an interior one most of the time, and the sample comes
out periodic (rotations of the state between denoising steps as in rolled denoising for
tileable images; with a circular decode, the audio loops without a click).
"""

from __future__ import annotations

import math

import torch

from .denoisers import ModelFn

__all__ = ["CircularModel"]

GOLDEN = (math.sqrt(5) - 1) / 2


class CircularModel:
    """``model(x [B, D, T], t [B])`` evaluated on x rotated along T by a moving offset,
    its output rotated back.

    Attributes:
        model: the network function.
        num_frames: T, the loop's length in latent frames.
        calls: evaluations so far (the next offset is round(calls * 0.618 * T) mod T).
    """

    def __init__(self, model: ModelFn, num_frames: int) -> None:
        if num_frames < 1:
            raise ValueError(f"a loop needs at least one frame, got {num_frames}")
        self.model = model
        self.num_frames = num_frames
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: [B, D, T]; t: [B] -> [B, D, T]."""
        if x.shape[-1] != self.num_frames:
            raise ValueError(f"the loop has {self.num_frames} frames, the state {x.shape[-1]}")
        shift = round(self.calls * GOLDEN * self.num_frames) % self.num_frames
        self.calls += 1
        out = self.model(torch.roll(x, -shift, dims=-1), t)
        return torch.roll(out, shift, dims=-1)

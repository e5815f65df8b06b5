"""Random inpainting masks for training a model that inpaints (stable-audio-tools'
``random_inpaint_mask`` distribution).

Shape legend: B batch, T latent frames. A mask is 1 where the latents are given to the
model (kept) and 0 where it must generate them.

Per item, with the probabilities of ``DiTTrainConfig.inpaint_mask_probabilities``:

* random segments: 1 to ``max_segments`` segments of the real (unpadded) frames are
  masked, each of 1 to real_frames / segments frames at a random place;
* everything generated (all zeros): the model still learns to generate from scratch;
* a kept prefix: frames [0, p) kept and [p, real_frames) generated, p uniform in
  [0, real_frames] (continuation).

Frames past the real audio (padding, the silence after a shorter crop) stay kept except
in the all-zeros case, as in stable-audio-tools. Every draw comes from ``generator``.
"""

from __future__ import annotations

import torch

__all__ = ["random_inpaint_masks"]


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def random_inpaint_masks(batch: int, num_frames: int, valid_frames: torch.Tensor | None,
                         generator: torch.Generator, *,
                         probabilities: tuple[float, float, float] = (0.1, 0.8, 0.1),
                         max_segments: int = 10) -> torch.Tensor:
    """[B, 1, T] float masks (see the module docstring); ``valid_frames`` [B] are the real
    frames of each item (None: all ``num_frames``)."""
    kinds = torch.multinomial(torch.tensor(probabilities, dtype=torch.float64), batch,
                              replacement=True, generator=generator)
    masks = torch.ones(batch, 1, num_frames)
    for i in range(batch):
        real = num_frames if valid_frames is None else min(int(valid_frames[i]), num_frames)
        kind = int(kinds[i])
        if kind == 1:
            masks[i] = 0
        elif real == 0:
            continue
        elif kind == 0:
            segments = _randint(1, max_segments, generator)
            longest = max(1, real // segments)
            for _ in range(segments):
                length = _randint(1, longest, generator)
                start = _randint(0, real - length, generator)
                masks[i, :, start:start + length] = 0
        else:
            kept = _randint(0, real, generator)
            masks[i, :, kept:real] = 0
    return masks

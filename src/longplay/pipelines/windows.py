"""Where the windows of a generation lie, and which latent frames each keeps or makes.

A generation longer than the model's window, an extension of a recording, or the
regeneration of a region is sampled window by window: each window sees up to
``context`` frames that are already known (the user's audio, or what the previous window
made) and keeps them, and generates the frames that are still to be made (inpainting,
:mod:`longplay.diffusion.inpainting`). These functions only plan: frames, regions and
prompts, no tensors of the model.

Units: latent frames (``frames``) and seconds (``_s``); a frame f covers the audio samples
[f * hop, (f + 1) * hop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "Window",
    "generate_frames",
    "loop_duration_s",
    "plan_windows",
    "section_boundaries",
    "section_prompt",
]


@dataclass(frozen=True)
class Window:
    """One window of a generation.

    Attributes:
        start, end: its latent frames [start, end) in the piece.
        generate: [end - start] bool, True for the frames it generates, False for the
            frames it keeps (known audio, or frames an earlier window made).
    """

    start: int
    end: int
    generate: torch.Tensor

    @property
    def num_frames(self) -> int:
        return self.end - self.start

    @property
    def first_generated(self) -> int:
        """The piece frame of its first generated frame."""
        return self.start + int(torch.nonzero(self.generate)[0, 0])


def generate_frames(num_frames: int, regions_s: Sequence[tuple[float, float]],
                    latent_rate: float) -> torch.Tensor:
    """[num_frames] bool: the frames that overlap a region (start_s, end_s) to generate."""
    generate = torch.zeros(num_frames, dtype=torch.bool)
    for start_s, end_s in regions_s:
        first = max(0, math.floor(start_s * latent_rate))
        last = min(num_frames, math.ceil(end_s * latent_rate))
        generate[first:last] = True
    return generate


def plan_windows(generate: torch.Tensor, window_frames: int, context_frames: int,
                 *, quantum_frames: int | None = None,
                 boundaries: Sequence[int] = ()) -> list[Window]:
    """Cover every frame to generate with windows of at most ``window_frames``.

    generate: [N] bool over the whole piece. Greedily, each window starts
    ``context_frames`` before the first frame still to generate, or earlier where the
    piece ends within a window (so that the last window sees as much as it can), but not
    before 0, and spans ``window_frames``; it generates the frames to generate it holds
    and keeps the others, which the next window finds made. A window makes the frames up
    to the next of ``boundaries`` (section starts, in frames) only: it still generates
    the frames after it, freely, and the next window, with the next section's prompt,
    makes them for good. With ``quantum_frames`` a window whose work ends before its
    length is the shortest multiple of it that holds its work (models trained on shorter
    windows); without, it keeps the full length and reaches past the piece's end: those
    frames are generated too (a full-window model fills them with the silence after
    ``seconds_total``) and trimmed by the caller.

    Returns the windows in order; none when there is nothing to generate.
    """
    if not 0 <= context_frames < window_frames:
        raise ValueError(f"the context ({context_frames} frames) must be shorter than the "
                         f"window ({window_frames} frames)")
    total = generate.shape[0]
    todo = generate.clone()
    windows = []
    while bool(todo.any()):
        first = int(torch.nonzero(todo)[0, 0])
        stop = min([total, *(b for b in boundaries if b > first)])  # this window's work ends
        start = max(0, min(first - context_frames, stop - window_frames))
        end = start + window_frames
        if end > stop and quantum_frames is not None:
            needed = stop - start
            end = start + min(window_frames, quantum_frames * math.ceil(needed / quantum_frames))
        span = torch.ones(end - start, dtype=torch.bool)  # past the piece: free
        inside = min(end, total)
        span[: inside - start] = todo[start:inside]
        windows.append(Window(start, end, span))
        todo[start:min(inside, stop)] = False
    return windows


def section_boundaries(sections: Sequence[tuple[float, str]], latent_rate: float) -> list[int]:
    """The latent frames where the sections after the first begin."""
    return [math.floor(start_s * latent_rate) for start_s, _ in sections[1:]]


def section_prompt(sections: Sequence[tuple[float, str]], frame: int,
                   latent_rate: float) -> str:
    """The prompt of the section that holds latent frame ``frame`` (sections as
    (start_s, prompt), sorted, the first starting at 0; a section begins at the frame
    :func:`section_boundaries` gives)."""
    index = sum(boundary <= frame for boundary in section_boundaries(sections, latent_rate))
    return sections[index][1]


def loop_duration_s(bpm: float, bars: int, beats_per_bar: int = 4) -> float:
    """The length of ``bars`` bars of ``beats_per_bar`` beats at ``bpm`` beats a minute."""
    if not (math.isfinite(bpm) and bpm > 0):
        raise ValueError(f"bpm must be a positive number, got {bpm!r}")
    if isinstance(bars, bool) or not isinstance(bars, int) or bars < 1:
        raise ValueError(f"bars must be a positive integer, got {bars!r}")
    if isinstance(beats_per_bar, bool) or not isinstance(beats_per_bar, int) or (
            beats_per_bar < 1):
        raise ValueError(f"beats_per_bar must be a positive integer, got {beats_per_bar!r}")
    return bars * beats_per_bar * 60.0 / bpm

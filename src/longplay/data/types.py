"""Typed training examples and batches, and the collate functions that build batches.

Shape legend: B batch, C audio channels, N samples of a training window, D latent
channels, T latent frames of a training window.

Timing conditioning follows Stable Audio (SYSTEM.md section 3): ``seconds_start`` is
the floor of the window's offset in its source file in seconds, ``seconds_total`` the
ceil of the source file's duration in seconds. Both are whole numbers stored as floats
because the timing conditioner takes float inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "AudioBatch",
    "AudioExample",
    "LatentBatch",
    "LatentExample",
    "collate_audio",
    "collate_latents",
]


@dataclass(frozen=True)
class AudioExample:
    """One training window of audio.

    Attributes:
        audio: [C, N] float32; samples past the end of the source are zeros.
        seconds_start: floor of the window offset in the source, in seconds.
        seconds_total: ceil of the source duration, in seconds.
        prompt: the text prompt ("" for an unconditional example).
        path: where the audio came from (a file path, or ``shard#key`` for tar shards).
        num_valid_samples: samples of real audio at the start of ``audio``.
    """

    audio: torch.Tensor
    seconds_start: float
    seconds_total: float
    prompt: str
    path: str
    num_valid_samples: int


@dataclass(frozen=True)
class LatentExample:
    """One training window of pre-encoded latents.

    Attributes:
        latents: [D, T] float32; frames past the end of the source are zeros.
        seconds_start: floor of the window offset in the source, in seconds.
        seconds_total: ceil of the source duration, in seconds.
        prompt: the text prompt ("" for an unconditional example).
        path: the source audio file, relative to the encoded folder.
        num_valid_frames: frames of real latents at the start of ``latents``.
    """

    latents: torch.Tensor
    seconds_start: float
    seconds_total: float
    prompt: str
    path: str
    num_valid_frames: int


@dataclass(frozen=True)
class AudioBatch:
    """A batch of audio windows.

    Attributes:
        audio: [B, C, N] float32.
        seconds_start: [B] float32.
        seconds_total: [B] float32.
        prompts: B prompts.
        paths: B source paths.
        num_valid_samples: [B] int64 real samples per window (the rest is padding), or
            None when the batch was built by hand without them.
    """

    audio: torch.Tensor
    seconds_start: torch.Tensor
    seconds_total: torch.Tensor
    prompts: list[str]
    paths: list[str]
    num_valid_samples: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> AudioBatch:
        """The same batch with its tensors on ``device``."""
        return AudioBatch(
            audio=self.audio.to(device),
            seconds_start=self.seconds_start.to(device),
            seconds_total=self.seconds_total.to(device),
            prompts=list(self.prompts),
            paths=list(self.paths),
            num_valid_samples=None if self.num_valid_samples is None
            else self.num_valid_samples.to(device),
        )


@dataclass(frozen=True)
class LatentBatch:
    """A batch of latent windows.

    Attributes:
        latents: [B, D, T] float32.
        seconds_start: [B] float32.
        seconds_total: [B] float32.
        prompts: B prompts.
        paths: B source paths.
        num_valid_frames: [B] int64 real frames per window (the rest is padding), or
            None when the batch was built by hand without them.
    """

    latents: torch.Tensor
    seconds_start: torch.Tensor
    seconds_total: torch.Tensor
    prompts: list[str]
    paths: list[str]
    num_valid_frames: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> LatentBatch:
        """The same batch with its tensors on ``device``."""
        return LatentBatch(
            latents=self.latents.to(device),
            seconds_start=self.seconds_start.to(device),
            seconds_total=self.seconds_total.to(device),
            prompts=list(self.prompts),
            paths=list(self.paths),
            num_valid_frames=None if self.num_valid_frames is None
            else self.num_valid_frames.to(device),
        )


def _stack(tensors: Sequence[torch.Tensor], what: str) -> torch.Tensor:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(
            f"cannot batch {what} of different shapes {sorted(shapes)}; every example of a "
            "batch must come from a dataset with one window length and channel count."
        )
    return torch.stack(list(tensors))


def _check_nonempty(examples: Sequence[object], what: str) -> None:
    if len(examples) == 0:
        raise ValueError(f"cannot collate an empty list of {what}.")


def collate_audio(examples: Sequence[AudioExample]) -> AudioBatch:
    """Stack audio examples into a batch (use as a DataLoader ``collate_fn``).

    Args:
        examples: B examples whose ``audio`` all have the same shape [C, N].

    Returns:
        AudioBatch with ``audio`` [B, C, N].
    """
    _check_nonempty(examples, "audio examples")
    return AudioBatch(
        audio=_stack([e.audio for e in examples], "audio windows"),
        seconds_start=torch.tensor([e.seconds_start for e in examples], dtype=torch.float32),
        seconds_total=torch.tensor([e.seconds_total for e in examples], dtype=torch.float32),
        prompts=[e.prompt for e in examples],
        paths=[e.path for e in examples],
        num_valid_samples=torch.tensor([e.num_valid_samples for e in examples],
                                       dtype=torch.int64),
    )


def collate_latents(examples: Sequence[LatentExample]) -> LatentBatch:
    """Stack latent examples into a batch (use as a DataLoader ``collate_fn``).

    Args:
        examples: B examples whose ``latents`` all have the same shape [D, T].

    Returns:
        LatentBatch with ``latents`` [B, D, T].
    """
    _check_nonempty(examples, "latent examples")
    return LatentBatch(
        latents=_stack([e.latents for e in examples], "latent windows"),
        seconds_start=torch.tensor([e.seconds_start for e in examples], dtype=torch.float32),
        seconds_total=torch.tensor([e.seconds_total for e in examples], dtype=torch.float32),
        prompts=[e.prompt for e in examples],
        paths=[e.path for e in examples],
        num_valid_frames=torch.tensor([e.num_valid_frames for e in examples],
                                      dtype=torch.int64),
    )

"""Cropping and padding of training windows, with Stable Audio's timing conditioning.

Stable Audio conditions the model on two integers per training window:
``seconds_start``, the crop offset in seconds rounded down, and ``seconds_total``,
the length of the whole source file in seconds rounded up. :class:`Segment` carries
the sample-exact offset and lengths and derives both with integer arithmetic, so
no float rounding can move a boundary value.

Shape legend: C audio channels, S samples of the source, N samples of the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Segment", "crop", "pad_or_trim", "random_crop"]


@dataclass(frozen=True)
class Segment:
    """A fixed-length window cut from a longer signal.

    Attributes:
        audio: [C, N] window; samples past the end of the source are zeros.
        offset_samples: position of the window's first sample in the source.
        num_valid_samples: samples of real audio at the start of the window (the rest
            is zero padding).
        sample_rate: samples per second.
        total_samples: length S of the source signal.
    """

    audio: torch.Tensor
    offset_samples: int
    num_valid_samples: int
    sample_rate: int
    total_samples: int

    @property
    def num_samples(self) -> int:
        """N, the window length in samples (valid audio plus padding)."""
        return int(self.audio.shape[-1])

    @property
    def offset_s(self) -> float:
        """Offset of the window in the source, in seconds."""
        return self.offset_samples / self.sample_rate

    @property
    def seconds_start(self) -> int:
        """Timing conditioning: floor of the offset in seconds."""
        return self.offset_samples // self.sample_rate

    @property
    def seconds_total(self) -> int:
        """Timing conditioning: ceil of the source duration in seconds."""
        return -(-self.total_samples // self.sample_rate)

    @property
    def padding_mask(self) -> torch.Tensor:
        """[N] bool, True where the window holds real audio, False on padding."""
        mask = torch.zeros(self.num_samples, dtype=torch.bool, device=self.audio.device)
        mask[: self.num_valid_samples] = True
        return mask


def _check_audio(audio: torch.Tensor) -> None:
    if audio.dim() != 2:
        raise ValueError(f"expected audio of shape [C, S], got {tuple(audio.shape)}.")
    if audio.shape[-1] == 0:
        raise ValueError(
            "cannot crop a window from empty audio (0 samples); filter out empty files "
            "before cropping."
        )


def _check_window(num_samples: int, sample_rate: int) -> None:
    if num_samples <= 0:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples}.")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}.")


def crop(
    audio: torch.Tensor,
    num_samples: int,
    sample_rate: int,
    offset_samples: int = 0,
) -> Segment:
    """Cut the window [offset, offset + num_samples) from ``audio``, zero-padding past its end.

    Args:
        audio: [C, S] source signal, S > 0.
        num_samples: window length N.
        sample_rate: samples per second of ``audio``.
        offset_samples: first sample of the window, in [0, S).

    Returns:
        Segment whose ``audio`` is a new [C, N] tensor (never a view of the source).
    """
    _check_audio(audio)
    _check_window(num_samples, sample_rate)
    total = int(audio.shape[-1])
    if not 0 <= offset_samples < total:
        raise ValueError(
            f"offset_samples must lie in [0, {total}) for audio of {total} samples, got "
            f"{offset_samples}."
        )
    window = audio[:, offset_samples : offset_samples + num_samples]
    valid = int(window.shape[-1])
    window = F.pad(window, (0, num_samples - valid)) if valid < num_samples else window.clone()
    return Segment(
        audio=window,
        offset_samples=int(offset_samples),
        num_valid_samples=valid,
        sample_rate=int(sample_rate),
        total_samples=total,
    )


def random_crop(
    audio: torch.Tensor,
    num_samples: int,
    sample_rate: int,
    generator: torch.Generator | None = None,
) -> Segment:
    """Cut a window at an offset drawn uniformly from [0, max(0, S - num_samples)].

    The offset comes from ``torch.randint`` with ``generator``, so a seeded generator
    reproduces it. Audio shorter than the window is taken from offset 0 and padded.

    Args:
        audio: [C, S] source signal, S > 0.
        num_samples: window length N.
        sample_rate: samples per second of ``audio``.
        generator: random source (the global torch generator when None).

    Returns:
        Segment whose ``audio`` is [C, N].
    """
    _check_audio(audio)
    _check_window(num_samples, sample_rate)
    max_offset = max(0, int(audio.shape[-1]) - num_samples)
    offset = int(torch.randint(0, max_offset + 1, (1,), generator=generator).item())
    return crop(audio, num_samples, sample_rate, offset_samples=offset)


def pad_or_trim(audio: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Zero-pad at the end or trim the last dimension to exactly ``num_samples``.

    Args:
        audio: [..., S].
        num_samples: wanted length (>= 0).

    Returns:
        [..., num_samples]; the input itself when S already equals ``num_samples``.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be non-negative, got {num_samples}.")
    if audio.dim() == 0:
        raise ValueError("pad_or_trim needs a tensor with a time dimension [..., S].")
    length = int(audio.shape[-1])
    if length == num_samples:
        return audio
    if length > num_samples:
        return audio[..., :num_samples]
    return F.pad(audio, (0, num_samples - length))

"""Reading one training window from an audio file or from audio bytes.

Shared by the folder dataset and the tar-shard dataset: the crop offset, the timing
conditioning, the phase flip and the prompt are decided here, in one place.

Only the frames a window needs are decoded. When the file's sample rate differs from
the target rate, a margin of :data:`RESAMPLE_MARGIN_S` is read on each side and the
read starts on a frame whose time is a whole number of target samples, so the window
equals the same window of the whole file resampled (up to the resampler's far tails;
tests check 1e-4).

Shape legend: C audio channels, N samples of the window.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from longplay.audio import AudioFileError, convert_channels, crop, resample
from longplay.data.folder import REASON_DECODE_ERROR, REASON_SILENT, DatasetSummary
from longplay.data.prompts import PromptBuilder
from longplay.data.types import AudioExample

logger = logging.getLogger(__name__)

__all__ = [
    "RESAMPLE_MARGIN_S",
    "SILENCE_PEAK",
    "AudioSource",
    "BrokenAudioFileError",
    "SilentAudioError",
    "SkippingAudioDataset",
    "WindowReader",
    "decode_peak",
    "example_generator",
    "mix_seed",
    "open_sound",
]

SILENCE_PEAK = 1e-5
"""A file whose absolute peak is below this is silent and useless for training."""

RESAMPLE_MARGIN_S = 0.025
"""Audio read on each side of a window that must be resampled (soxr's filter support
is far shorter at the usual rates)."""

_POSITION_MULTIPLIER = 1_000_003
_BLOCK_FRAMES = 1 << 16

AudioSource = Path | bytes
"""A file path, or the encoded bytes of a file (a tar member)."""


class BrokenAudioFileError(AudioFileError):
    """The file as a whole is unusable (it cannot be opened, or it is silent), as opposed
    to one window of it failing to decode."""


class SilentAudioError(BrokenAudioFileError):
    """Every sample of the file is below :data:`SILENCE_PEAK` in magnitude."""


def mix_seed(*values: int) -> int:
    """A 64-bit seed from several integers (SplitMix64 steps), for independent streams."""
    state = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for value in values:
        state = (state ^ (value & mask)) * 0xBF58476D1CE4E5B9 & mask
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & mask
        state ^= state >> 29
    return state


def example_generator(seed: int, position: int) -> torch.Generator:
    """The CPU generator of the example at global sample ``position`` of a run seeded
    ``seed``: seeded with (seed * 1_000_003 + position) modulo 2**64."""
    return torch.Generator().manual_seed((seed * _POSITION_MULTIPLIER + position) % (1 << 64))


def open_sound(source: AudioSource, name: str) -> sf.SoundFile:
    """Open ``source`` for reading with libsndfile.

    Raises:
        BrokenAudioFileError: libsndfile cannot parse it or it holds no frames.
    """
    handle = io.BytesIO(source) if isinstance(source, bytes) else os.fsencode(source)
    try:
        sound = sf.SoundFile(handle)
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        raise BrokenAudioFileError(f"{name}: not a readable audio file ({err})") from None
    if sound.frames <= 0:
        sound.close()
        raise BrokenAudioFileError(f"{name}: the file holds no audio (0 samples)")
    return sound


def _check_finite(data: np.ndarray, name: str) -> None:
    if not np.isfinite(data).all():
        raise AudioFileError(f"{name}: contains NaN or infinite samples (a corrupt float file)")


def decode_peak(source: AudioSource, name: str) -> float:
    """The absolute peak of the whole file, decoded block by block.

    Raises:
        AudioFileError: some part of it cannot be decoded or is not finite.
    """
    peak = 0.0
    with open_sound(source, name) as sound:
        try:
            for block in sound.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
                _check_finite(block, name)
                if block.size:
                    peak = max(peak, float(np.abs(block).max()))
        except (sf.SoundFileError, RuntimeError) as err:
            raise AudioFileError(f"{name}: decoding failed ({err})") from None
    return peak


@dataclass(frozen=True)
class WindowReader:
    """Cuts random training windows from audio files and builds their examples.

    Attributes:
        sample_rate: rate of the output windows; files at other rates are resampled.
        channels: channels of the output windows (mono is duplicated, more than two
            channels are mixed down, as :func:`longplay.audio.convert_channels` does).
        num_samples: window length N.
        random_crop: draw the offset uniformly in [0, max(0, S - N)] (S the file length
            at ``sample_rate``); when False every window starts at 0.
        phase_flip: multiply the window by -1 with probability 0.5.
        prompt_builder: builds the prompt from the metadata; None gives "" always.
    """

    sample_rate: int
    channels: int
    num_samples: int
    random_crop: bool = True
    phase_flip: bool = False
    prompt_builder: PromptBuilder | None = None

    def __post_init__(self) -> None:
        for name in ("sample_rate", "channels", "num_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")

    def read(
        self,
        source: AudioSource,
        *,
        name: str,
        metadata: Mapping[str, Any],
        generator: torch.Generator,
        file_is_silent: Callable[[], bool],
    ) -> AudioExample:
        """The example of one window of ``source``.

        Random draws, in order, all from ``generator``: the crop offset (when
        ``random_crop``), the phase-flip coin (when ``phase_flip``), the prompt.

        Args:
            source: the file, or its bytes.
            name: how messages and ``AudioExample.path`` name it.
            metadata: the file's metadata, for the prompt.
            generator: the example's random source.
            file_is_silent: called when the window is silent; True when the whole file
                is (the caller may cache the answer, a property of the file).

        Raises:
            BrokenAudioFileError: the file cannot be opened (or SilentAudioError: the
                window and the whole file are silent).
            AudioFileError: this window cannot be decoded.
        """
        with open_sound(source, name) as sound:
            file_frames, file_rate = int(sound.frames), int(sound.samplerate)
            audio, offset, num_valid = self._read_window(sound, name, generator)
        if float(audio[:, :num_valid].abs().max()) < SILENCE_PEAK and file_is_silent():
            raise SilentAudioError(f"{name}: the file is silent (peak below {SILENCE_PEAK})")
        if self.phase_flip and bool(torch.rand((), generator=generator).item() < 0.5):
            audio = -audio
        prompt = "" if self.prompt_builder is None else self.prompt_builder.build(metadata,
                                                                                   generator)
        return AudioExample(
            audio=audio.contiguous(),
            seconds_start=float(offset // self.sample_rate),
            seconds_total=float(-(-file_frames // file_rate)),
            prompt=prompt,
            path=name,
            num_valid_samples=num_valid,
        )

    def _read_window(self, sound: sf.SoundFile, name: str,
                     generator: torch.Generator) -> tuple[torch.Tensor, int, int]:
        """(window [C, N], offset in target samples, valid samples) of an open file."""
        frames, rate, target = int(sound.frames), int(sound.samplerate), self.sample_rate
        total = frames if rate == target else (frames * target + rate // 2) // rate
        if total <= 0:
            raise BrokenAudioFileError(f"{name}: {frames} frame(s) at {rate} Hz is less than "
                                       f"one sample at {target} Hz")
        max_offset = max(0, total - self.num_samples)
        offset = 0
        if self.random_crop:
            offset = int(torch.randint(0, max_offset + 1, (1,), generator=generator).item())
        if rate == target:
            start, first, last = offset, offset, min(frames, offset + self.num_samples)
        else:
            # A file frame that is a multiple of `step_in` falls on target sample
            # (frame / step_in) * step_out exactly, so the resampled read stays aligned.
            gcd = math.gcd(rate, target)
            step_in, step_out = rate // gcd, target // gcd
            margin = math.ceil(RESAMPLE_MARGIN_S * target)
            start = max(0, offset - margin) // step_out * step_out
            end = -(-(offset + self.num_samples + margin) // step_out) * step_out
            first = start // step_out * step_in
            last = min(frames, end // step_out * step_in)
        try:
            sound.seek(first)
            data = sound.read(last - first, dtype="float32", always_2d=True)  # [n, C_file]
        except (sf.SoundFileError, RuntimeError) as err:
            raise AudioFileError(f"{name}: decoding samples {first}..{last} failed "
                                 f"({err})") from None
        _check_finite(data, name)
        audio = convert_channels(torch.from_numpy(np.ascontiguousarray(data.T)), self.channels)
        if rate != target and audio.shape[-1] > 0:
            audio = resample(audio, rate, target)
        if offset - start >= audio.shape[-1]:
            raise AudioFileError(f"{name}: holds fewer samples than its header says "
                                 f"(a truncated file?)")
        segment = crop(audio, self.num_samples, target, offset_samples=offset - start)
        num_valid = min(segment.num_valid_samples, total - offset)
        window = segment.audio
        if num_valid < segment.num_valid_samples:
            window[:, num_valid:] = 0.0
        return window, offset, num_valid


class SkippingAudioDataset(Dataset[AudioExample]):
    """A map-style dataset of audio items (files, shard samples) that skips an item it
    cannot read: another one is used in its place, with one warning per item, counted in
    ``summary``. Subclasses set ``summary`` and ``_items`` and implement ``_read``."""

    _kind = "item"  # what an item is called in messages

    def __init__(self, summary: DatasetSummary) -> None:
        self.summary = summary
        self._broken: set[int] = set()  # items that cannot be opened or are silent
        self._reported: set[int] = set()  # items already warned about and counted
        self._silent: dict[int, bool] = {}  # whole-item silence, once computed

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> AudioExample:
        return self.example(index, index)

    def example(self, index: int, position: int) -> AudioExample:
        """The example of item ``index`` drawn at global sample ``position``.

        Raises:
            IndexError: ``index`` is outside [0, len).
            RuntimeError: no item of the dataset can be read any more.
        """
        count = len(self._items)
        if not 0 <= index < count:
            raise IndexError(f"index {index} is outside [0, {count})")
        for step in range(count):
            i = (index + step) % count
            if i in self._broken:
                continue
            try:
                return self._read(i, position)
            except AudioFileError as err:
                self._report(i, err)
        raise RuntimeError(f"none of the {count} {self._kind}s can be read any more "
                           f"({self.summary}); check the data.")

    def _read(self, i: int, position: int) -> AudioExample:
        raise NotImplementedError

    def _name(self, i: int) -> str:
        raise NotImplementedError

    def _reason(self, err: AudioFileError) -> str:
        return REASON_SILENT if isinstance(err, SilentAudioError) else REASON_DECODE_ERROR

    def _report(self, i: int, err: AudioFileError) -> None:
        if isinstance(err, BrokenAudioFileError):
            self._broken.add(i)
        if i in self._reported:
            return
        self._reported.add(i)
        reason = self._reason(err)
        logger.warning("skipping %s (%s): %s; another %s is used in its place",
                       self._name(i), reason, err, self._kind)
        self.summary.skip(reason)

"""A map-style dataset of random training windows cut from a folder of audio files.

Shape legend: C audio channels, N samples of a training window.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from longplay.data.folder import (
    DEFAULT_EXTENSIONS,
    AudioFile,
    scan_audio_folder,
)
from longplay.data.prompts import DEFAULT_PROMPT_BUILDER, PromptBuilder
from longplay.data.types import AudioExample
from longplay.data.windows import (
    SILENCE_PEAK,
    SkippingAudioDataset,
    WindowReader,
    decode_peak,
    example_generator,
)

logger = logging.getLogger(__name__)

__all__ = ["AudioFolderDataset"]



class AudioFolderDataset(SkippingAudioDataset):
    """Random windows of the audio files under a folder, with timing and prompts.

    Files are found recursively in sorted order (see
    :func:`longplay.data.folder.scan_audio_folder`, which also documents the metadata
    sources and their precedence). Only headers are read at construction; files that
    are empty, unreadable, hold no samples, have a sample rate or channel count outside
    ``longplay.audio``'s limits, or are shorter than ``min_duration_s`` are skipped
    there with one warning each and counted in :attr:`summary`.

    Each item is one window of ``num_samples`` samples at ``sample_rate``, decoded from
    just the frames it needs (:class:`~longplay.data.windows.WindowReader`):
    ``seconds_start`` = floor(offset in seconds), ``seconds_total`` = ceil(file
    duration in seconds), zero padding past the end of the file, ``num_valid_samples``
    the real samples.

    Reproducibility. ``example(index, position)`` is a pure function of (``seed``,
    ``index``, ``position``): the crop offset, phase flip and prompt come from a
    generator seeded with seed * 1_000_003 + position. A sampler that passes the global
    sample position makes the stream repeatable after a resume; ``dataset[i]`` is
    ``example(i, i)``. A file that cannot be read when its window is drawn is skipped
    (:class:`~longplay.data.windows.SkippingAudioDataset`).

    Bad data found while reading. A window that fails to decode, or a file that turns
    out to be silent (peak below 1e-5; checked only when a window is silent), never
    stops training: the file is reported with one warning and counted in
    :attr:`summary`, and the example of the next index (cyclically) is returned
    instead, with the same ``position``. Files that cannot be opened or are silent are
    remembered and passed over; a window that fails to decode is retried the next time
    that file is drawn (another window of it may be fine). Both are properties of the
    file and the window, not of the order of reads, so the stream stays a pure
    function of (seed, index, position). Each DataLoader worker has its own copy of the
    dataset: it warns once per file itself and updates its own summary.

    Args:
        root: the folder.
        sample_rate: rate of the windows (files at other rates are resampled with soxr).
        channels: channels of the windows (mono is duplicated, more than two channels
            are mixed down).
        num_samples: window length N.
        random_crop: random offsets; when False every window starts at 0.
        phase_flip: multiply each window by -1 with probability 0.5.
        prompt_builder: turns metadata into prompts; None makes every prompt "".
        seed: seed of the random choices.
        min_duration_s: files shorter than this are skipped.
        extensions: audio file extensions to take (case-insensitive).

    Raises:
        ValueError: ``root`` is not a folder, its metadata table is invalid, an argument
            is out of range, or no usable audio file was found.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        sample_rate: int,
        channels: int = 2,
        num_samples: int,
        random_crop: bool = True,
        phase_flip: bool = False,
        prompt_builder: PromptBuilder | None = DEFAULT_PROMPT_BUILDER,
        seed: int = 0,
        min_duration_s: float = 0.0,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    ) -> None:
        self.reader = WindowReader(sample_rate=sample_rate, channels=channels,
                                   num_samples=num_samples, random_crop=random_crop,
                                   phase_flip=phase_flip, prompt_builder=prompt_builder)
        self.seed = int(seed)
        files, summary = scan_audio_folder(root, extensions=extensions,
                                           min_duration_s=min_duration_s)
        if not files:
            raise ValueError(f"no usable audio file in {root} ({summary}); it must hold "
                             f"{', '.join(extensions)} files (searched recursively).")
        self.files: tuple[AudioFile, ...] = tuple(files)
        super().__init__(summary)

    _kind = "file"

    @property
    def _items(self) -> tuple[AudioFile, ...]:
        return self.files

    def _name(self, i: int) -> str:
        return str(self.files[i].path)

    def _read(self, i: int, position: int) -> AudioExample:
        file = self.files[i]
        return self.reader.read(file.path, name=str(file.path), metadata=file.metadata,
                                generator=example_generator(self.seed, position),
                                file_is_silent=lambda: self._file_is_silent(i))

    def _file_is_silent(self, i: int) -> bool:
        if i not in self._silent:
            path = self.files[i].path
            self._silent[i] = decode_peak(path, str(path)) < SILENCE_PEAK
        return self._silent[i]

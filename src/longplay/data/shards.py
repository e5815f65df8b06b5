"""WebDataset-style tar shards: packing an audio folder, streaming random windows, and
training from them.

Shard format (the WebDataset convention, readable by the ``webdataset`` library too):
an uncompressed tar whose members are grouped by key, the member name up to the
first "." of its file name. A sample is ``<key>.flac|wav|ogg|mp3`` (the audio, the
original file's bytes) plus optionally ``<key>.json`` (a JSON object of metadata) or
``<key>.txt`` (a caption; the JSON wins when both exist, as in audio folders). The
members of a sample are consecutive. :func:`write_tar_shards` writes
``shard-00000.tar``, ``shard-00001.tar``... this way.

Two readers: :class:`TarShardDataset` streams the shards once per epoch (an iterable
dataset, split over ranks and workers by shard); :class:`ShardAudioDataset`, the one the
trainers use (``data: {kind: shards}``), indexes the shards' members at the start and
reads each example's audio member by byte range, so it has the map-style
``example(index, position)`` of :class:`~longplay.data.AudioFolderDataset`: the same
examples for the same files, and exact resumption.

Shape legend: C audio channels, N samples of a training window.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import fsspec
import torch
import torch.distributed as dist
from fsspec.implementations.local import LocalFileSystem
from torch.utils.data import IterableDataset, get_worker_info

from longplay.atomic import atomic_output_path
from longplay.audio import AudioFileError
from longplay.data.folder import (
    DEFAULT_EXTENSIONS,
    REASON_BAD_METADATA,
    REASON_DECODE_ERROR,
    REASON_NO_AUDIO,
    REASON_TOO_SHORT,
    DatasetSummary,
    normalize_extensions,
    scan_audio_folder,
)
from longplay.data.prompts import DEFAULT_PROMPT_BUILDER, PromptBuilder
from longplay.data.types import AudioExample
from longplay.data.windows import (
    SILENCE_PEAK,
    BrokenAudioFileError,
    SkippingAudioDataset,
    WindowReader,
    decode_peak,
    example_generator,
    mix_seed,
    open_sound,
)

logger = logging.getLogger(__name__)

__all__ = ["SHARD_PATTERN", "ShardAudioDataset", "ShardSample", "TarShardDataset",
           "find_shards", "index_tar_shards", "split_shards", "write_tar_shards"]

T = TypeVar("T")

SHARD_PATTERN = "shard-{:05d}.tar"
DEFAULT_SHARD_SIZE = 128


def _split_key(name: str) -> tuple[str, str] | None:
    """("dir/song", "flac") for "dir/song.flac"; None when the file name has no ".". """
    directory, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    if not dot or not stem:
        return None
    return (f"{directory}/{stem}" if directory else stem), extension.lower()


def _sample_key(relative_path: str, used: set[str]) -> str:
    """A unique tar key for a file: its relative path without the extension, with the
    other dots of the file name replaced by "_" (keys end at the first ".")."""
    path = Path(relative_path)
    stem = path.stem.replace(".", "_") or "_"
    parent = path.parent.as_posix()
    key = stem if parent == "." else f"{parent}/{stem}"
    unique, n = key, 2
    while unique in used:
        unique, n = f"{key}_{n}", n + 1
    used.add(unique)
    return unique


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # reproducible shards
    tar.addfile(info, io.BytesIO(data))


def write_tar_shards(
    dataset_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    shard_size: int = DEFAULT_SHARD_SIZE,
    *,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    min_duration_s: float = 0.0,
) -> list[Path]:
    """Pack the usable audio files of a folder into tar shards of ``shard_size`` samples.

    The files and their metadata are those an :class:`~longplay.data.AudioFolderDataset`
    of the folder sees (same scan, same skips and warnings, same metadata precedence).
    Each sample holds the audio file's bytes unchanged and, when its metadata is not
    empty, a ``<key>.json`` with it. Shards are written atomically, in sorted file
    order, with fixed member times, so packing the same folder twice gives identical
    shards. Use enough shards for every DataLoader worker of every rank (a multiple of
    ranks x workers keeps them balanced).

    Returns:
        The shard paths, ``out_dir/shard-00000.tar``...

    Raises:
        ValueError: ``shard_size`` < 1, the folder holds no usable audio, or ``out_dir``
            already holds shards (pack into an empty folder so no stale shard mixes in).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}.")
    out = Path(out_dir)
    files, summary = scan_audio_folder(dataset_root, extensions=extensions,
                                       min_duration_s=min_duration_s)
    if not files:
        raise ValueError(f"no usable audio file in {dataset_root} ({summary}).")
    if out.is_dir() and any(out.glob("shard-*.tar")):
        raise ValueError(f"{out} already holds shards; pack into an empty folder.")
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    shards = []
    for number, first in enumerate(range(0, len(files), shard_size)):
        path = out / SHARD_PATTERN.format(number)
        with atomic_output_path(path) as tmp, tarfile.open(tmp, "w") as tar:
            for file in files[first:first + shard_size]:
                key = _sample_key(file.relative_path, used)
                _add_member(tar, f"{key}{file.path.suffix.lower()}", file.path.read_bytes())
                if file.metadata:
                    text = json.dumps(file.metadata, ensure_ascii=False, sort_keys=True)
                    _add_member(tar, f"{key}.json", text.encode("utf-8"))
        shards.append(path)
    logger.info("packed %d files into %d shard(s) in %s (%s)", len(files), len(shards), out,
                summary)
    return shards


def split_shards(num_shards: int, *, rank: int, world_size: int, worker_id: int,
                 num_workers: int) -> list[int]:
    """The shard positions one DataLoader worker of one rank reads.

    Worker ``worker_id`` of rank ``rank`` is global reader g = rank * num_workers +
    worker_id of world_size * num_workers readers and takes positions g, g + readers,
    g + 2 * readers... so every shard is read by exactly one reader.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}.")
    if not 0 <= worker_id < num_workers:
        raise ValueError(f"worker_id must lie in [0, num_workers={num_workers}), got "
                         f"{worker_id}.")
    readers = world_size * num_workers
    return list(range(rank * num_workers + worker_id, num_shards, readers))


class TarShardDataset(IterableDataset[AudioExample]):
    """Random windows streamed from tar shards (local paths or any fsspec URL).

    Every sample of every shard gives one example, cut and prompted exactly as
    :class:`~longplay.data.AudioFolderDataset` does (the shared
    :class:`~longplay.data.windows.WindowReader`), with a generator seeded from (seed,
    epoch, the shard's position in ``urls``, the sample's position in the shard): an
    example does not depend on how shards are split over ranks and workers.

    Splitting. Each epoch the shard order is shuffled with (seed, epoch) when
    ``shuffle_shards`` (the same order on every rank), then shards are dealt to the
    readers (:func:`split_shards`): the ranks of ``torch.distributed`` when it is
    initialised (or ``rank``/``world_size`` when given) times the DataLoader workers.
    With fewer shards than readers some readers get nothing (a warning says so); in
    distributed training, ranks with unequal numbers of samples can stall the
    collective ops, so use a multiple of ranks x workers of equal-sized shards. Call
    :meth:`set_epoch` before each epoch.

    Bad data. A sample without audio, with unreadable audio or metadata, shorter than
    ``min_duration_s``, silent, or whose window fails to decode is skipped with one
    warning (per reader). A shard that is not a valid tar ends with a warning; a shard
    that does not exist raises FileNotFoundError.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        sample_rate: int,
        channels: int = 2,
        num_samples: int,
        random_crop: bool = True,
        phase_flip: bool = False,
        prompt_builder: PromptBuilder | None = DEFAULT_PROMPT_BUILDER,
        seed: int = 0,
        min_duration_s: float = 0.0,
        shuffle_shards: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    ) -> None:
        super().__init__()
        if isinstance(urls, (str, os.PathLike)):
            raise ValueError("urls must be a sequence of shard paths or URLs, not one string; "
                             "wrap it in a list.")
        self.urls: tuple[str, ...] = tuple(os.fspath(u) for u in urls)
        if not self.urls:
            raise ValueError("urls is empty; pass at least one shard.")
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither.")
        if world_size is not None and rank is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}.")
        if min_duration_s < 0:
            raise ValueError(f"min_duration_s must be >= 0, got {min_duration_s}.")
        self.reader = WindowReader(sample_rate=sample_rate, channels=channels,
                                   num_samples=num_samples, random_crop=random_crop,
                                   phase_flip=phase_flip, prompt_builder=prompt_builder)
        self.seed = int(seed)
        self.min_duration_s = float(min_duration_s)
        self.shuffle_shards = shuffle_shards
        self.rank = rank
        self.world_size = world_size
        self.audio_extensions = tuple(e.lstrip(".") for e in normalize_extensions(extensions))
        self.epoch = 0
        self._warned: set[str] = set()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: it changes the shard order and every example's randomness."""
        self.epoch = int(epoch)

    def _distributed(self) -> tuple[int, int]:
        if self.rank is not None and self.world_size is not None:
            return self.rank, self.world_size
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def shard_order(self, epoch: int) -> list[int]:
        """Positions in ``urls`` in the order epoch ``epoch`` reads them (before splitting)."""
        if not self.shuffle_shards:
            return list(range(len(self.urls)))
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0x5AAD))
        return torch.randperm(len(self.urls), generator=generator).tolist()

    def shards_for(self, *, rank: int, world_size: int, worker_id: int = 0,
                   num_workers: int = 1, epoch: int | None = None) -> list[int]:
        """Positions in ``urls`` of the shards one reader gets in an epoch (default: the
        current one)."""
        order = self.shard_order(self.epoch if epoch is None else epoch)
        picks = split_shards(len(order), rank=rank, world_size=world_size,
                             worker_id=worker_id, num_workers=num_workers)
        return [order[p] for p in picks]

    def __iter__(self) -> Iterator[AudioExample]:
        rank, world_size = self._distributed()
        worker = get_worker_info()
        worker_id, num_workers = (0, 1) if worker is None else (worker.id, worker.num_workers)
        shards = self.shards_for(rank=rank, world_size=world_size, worker_id=worker_id,
                                 num_workers=num_workers)
        if not shards:
            logger.warning("rank %d worker %d gets no shard: %d shard(s) for %d readers; "
                           "write at least ranks x workers shards", rank, worker_id,
                           len(self.urls), world_size * num_workers)
        epoch = self.epoch
        for shard in shards:
            yield from self._iter_shard(shard, epoch)

    def _warn(self, name: str, message: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            logger.warning("skipping %s: %s", name, message)

    def _iter_shard(self, shard: int, epoch: int) -> Iterator[AudioExample]:
        url = self.urls[shard]
        for position, (key, members) in enumerate(self._shard_samples(url)):
            generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, shard, position))
            example = self._example(f"{url}#{key}", members, generator)
            if example is not None:
                yield example

    def _shard_samples(self, url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
        """The samples of one shard; a damaged tar ends the shard with a warning."""
        count = 0
        with fsspec.open(url, "rb") as stream:
            try:
                with tarfile.open(fileobj=stream, mode="r|*") as tar:
                    for sample in _samples(tar):
                        yield sample
                        count += 1
            except (tarfile.TarError, EOFError) as err:
                self._warn(url, f"not a readable tar shard, or damaged after {count} "
                                f"samples ({err})")

    def _example(self, name: str, members: dict[str, bytes],
                 generator: torch.Generator) -> AudioExample | None:
        extension = next((e for e in self.audio_extensions if e in members), None)
        if extension is None:
            self._warn(name, f"no audio member (found {', '.join(sorted(members))})")
            return None
        try:
            metadata = _member_metadata(members)
        except ValueError as err:
            self._warn(name, str(err))
            return None
        data = members[extension]
        try:
            with open_sound(data, name) as sound:
                duration_s = sound.frames / sound.samplerate
            if duration_s < self.min_duration_s:
                self._warn(name, f"{duration_s:.3f} s is shorter than the minimum "
                                 f"{self.min_duration_s} s")
                return None
            return self.reader.read(data, name=name, metadata=metadata, generator=generator,
                                    file_is_silent=lambda: decode_peak(data, name) < SILENCE_PEAK)
        except AudioFileError as err:
            self._warn(name, str(err))
            return None


def _member_metadata(members: dict[str, bytes]) -> dict[str, Any]:
    """The metadata of a sample: its .json, else its .txt caption, else {}."""
    if "json" in members:
        try:
            data = json.loads(members["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"the .json member is not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"the .json member must hold an object, got {type(data).__name__}")
        return data
    if "txt" in members:
        try:
            caption = members["txt"].decode("utf-8").strip()
        except UnicodeDecodeError as err:
            raise ValueError(f"the .txt member is not UTF-8 text ({err})") from None
        return {"caption": caption} if caption else {}
    return {}


def _samples(tar: tarfile.TarFile) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each group of consecutive members sharing a key."""
    return _grouped(tar, lambda member: tar.extractfile(member).read())


def _grouped(tar: tarfile.TarFile,
             take: Callable[[tarfile.TarInfo], T]) -> Iterator[tuple[str, dict[str, T]]]:
    """(key, {extension: take(member)}) for each group of consecutive file members sharing
    a key; ``take`` runs as each member is reached (a stream can't go back)."""
    key: str | None = None
    members: dict[str, T] = {}
    for member in tar:
        if not member.isfile():
            continue
        split = _split_key(member.name)
        if split is None:
            continue
        member_key, extension = split
        if member_key != key:
            if key is not None:
                yield key, members
            key, members = member_key, {}
        members[extension] = take(member)
    if key is not None:
        yield key, members


# -- training from shards: an index of the members, examples read by byte range -------------

SHARD_SUFFIX = ".tar"
INDEX_BLOCK_SIZE = 1 << 16
"""Read-ahead while indexing: each member's header and small metadata, not its audio
(fsspec's default block of megabytes would fetch most of a remote shard)."""


def find_shards(spec: str | Sequence[str]) -> list[str]:
    """The tar shards named by ``spec`` (``data.path`` of ``kind: shards``), in order.

    ``spec`` is a list, or a string of entries separated by commas; each entry is a tar
    file, a folder (its ``*.tar`` files, as ``longplay data pack`` writes them), or a
    glob pattern, as a local path or any fsspec URL (``s3://bucket/shards``,
    ``memory://...``). Local shards are returned as plain paths.

    Raises:
        FileNotFoundError: an entry names nothing, or a folder or pattern holds no shard.
    """
    entries = spec.split(",") if isinstance(spec, str) else [os.fspath(e) for e in spec]
    urls: list[str] = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        fs, path = fsspec.core.url_to_fs(entry)
        if any(c in path for c in "*?["):
            found = sorted(p for p in fs.glob(path) if p.endswith(SHARD_SUFFIX))
        elif fs.isdir(path):
            found = sorted(fs.glob(f"{path.rstrip('/')}/*{SHARD_SUFFIX}"))
        elif fs.isfile(path):
            found = [path]
        else:
            raise FileNotFoundError(f"tar shards {entry!r}: no such file or folder")
        if not found:
            raise FileNotFoundError(f"tar shards {entry!r}: no {SHARD_SUFFIX} file there; pack "
                                    "an audio folder with `longplay data pack DIR -o SHARDS`")
        local = isinstance(fs, LocalFileSystem)
        urls += [p if local else fs.unstrip_protocol(p) for p in found]
    if not urls:
        raise FileNotFoundError(f"no tar shards named in {spec!r}")
    return urls


@dataclass(frozen=True)
class ShardSample:
    """One sample of a tar shard: where its audio member's bytes lie, and its metadata.

    Attributes:
        shard: the shard's path or URL.
        key: the sample's key in the shard.
        offset: byte offset of the audio member's data in the shard.
        size: its size in bytes.
        metadata: the sample's ``.json`` object, else its ``.txt`` caption, else {}.
    """

    shard: str
    key: str
    offset: int
    size: int
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        """``shard#key``, as messages and ``AudioExample.path`` name the sample."""
        return f"{self.shard}#{self.key}"


def index_tar_shards(
    urls: Sequence[str], *, extensions: Sequence[str] = DEFAULT_EXTENSIONS,
) -> tuple[list[ShardSample], DatasetSummary]:
    """Every usable sample of the shards, in order, from the members' headers and metadata
    (the audio is not read).

    A sample without an audio member, with bad metadata, or whose audio member is cut
    short (a truncated shard) is skipped with one warning and counted in the summary; a
    shard that is not a valid tar ends with a warning after the samples before the damage.

    Raises:
        FileNotFoundError: a shard does not exist.
    """
    audio_extensions = tuple(e.lstrip(".") for e in normalize_extensions(extensions))
    samples: list[ShardSample] = []
    summary = DatasetSummary()

    def skip(url: str, key: str, reason: str, detail: str) -> None:
        summary.skip(reason)
        logger.warning("skipping %s#%s (%s): %s", url, key, reason, detail)

    for url in urls:
        fs, path = fsspec.core.url_to_fs(url)
        if not fs.isfile(path):
            raise FileNotFoundError(f"tar shard {url} does not exist")
        end = fs.size(path)
        count = 0
        with fs.open(path, "rb", block_size=INDEX_BLOCK_SIZE) as stream:
            try:
                with tarfile.open(fileobj=stream, mode="r:") as tar:
                    for key, members in _grouped(tar, lambda member: member):
                        summary.num_files += 1
                        count += 1
                        extension = next((e for e in audio_extensions if e in members), None)
                        if extension is None:
                            skip(url, key, REASON_NO_AUDIO,
                                 f"no audio member (found {', '.join(sorted(members))})")
                            continue
                        audio = members[extension]
                        if audio.offset_data + audio.size > end:
                            skip(url, key, REASON_DECODE_ERROR,
                                 "the audio member is cut short (a truncated shard)")
                            continue
                        small = {e: tar.extractfile(members[e]).read()
                                 for e in ("json", "txt") if e in members}
                        try:
                            metadata = _member_metadata(small)
                        except ValueError as err:
                            skip(url, key, REASON_BAD_METADATA, str(err))
                            continue
                        samples.append(ShardSample(url, key, audio.offset_data, audio.size,
                                                   metadata))
            except (tarfile.TarError, EOFError) as err:
                logger.warning("%s is not a readable tar shard, or is damaged after %d "
                               "samples (%s); training uses the samples before the damage",
                               url, count, err)
    return samples, summary


class _TooShortError(BrokenAudioFileError):
    """The sample is shorter than the dataset's ``min_duration_s``."""


class ShardAudioDataset(SkippingAudioDataset):
    """Random windows of the audio samples of tar shards, with timing and prompts: the
    shard counterpart of :class:`~longplay.data.AudioFolderDataset`, which the trainers
    use for ``data: {kind: shards}``.

    The shards (local paths or fsspec URLs, see :func:`find_shards`) are indexed at
    construction (:func:`index_tar_shards`: member headers and metadata, not the audio).
    Item ``index`` is the index-th usable sample in shard order; ``example(index,
    position)`` reads its audio member by byte range and cuts the window exactly as the
    folder dataset does, with the generator of (``seed``, ``position``). So a folder
    and the shards ``longplay data pack`` makes of it give the same examples (same
    order, windows, timing and prompts), and a training run resumes exactly.

    Bad data found while reading (undecodable, silent, shorter than ``min_duration_s``)
    is reported once and the next sample (cyclically) is used instead, as in the folder
    dataset.

    Raises:
        ValueError: ``urls`` is empty or one string, or no usable sample was found.
        FileNotFoundError: a shard does not exist.
    """

    def __init__(
        self,
        urls: Sequence[str],
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
        if isinstance(urls, (str, os.PathLike)):
            raise ValueError("urls must be a sequence of shard paths or URLs, not one string; "
                             "use find_shards to expand a folder or a list.")
        if not urls:
            raise ValueError("urls is empty; pass at least one shard.")
        if min_duration_s < 0:
            raise ValueError(f"min_duration_s must be >= 0, got {min_duration_s}.")
        self.reader = WindowReader(sample_rate=sample_rate, channels=channels,
                                   num_samples=num_samples, random_crop=random_crop,
                                   phase_flip=phase_flip, prompt_builder=prompt_builder)
        self.seed = int(seed)
        self.min_duration_s = float(min_duration_s)
        self.urls: tuple[str, ...] = tuple(os.fspath(u) for u in urls)
        samples, summary = index_tar_shards(self.urls, extensions=extensions)
        if not samples:
            raise ValueError(f"no usable audio sample in the {len(self.urls)} shard(s) "
                             f"{self.urls[0]}... ({summary}).")
        self.samples: tuple[ShardSample, ...] = tuple(samples)
        super().__init__(summary)

    _kind = "sample"

    @property
    def _items(self) -> tuple[ShardSample, ...]:
        return self.samples

    def _name(self, i: int) -> str:
        return self.samples[i].name

    def _reason(self, err: AudioFileError) -> str:
        return REASON_TOO_SHORT if isinstance(err, _TooShortError) else super()._reason(err)

    def _read(self, i: int, position: int) -> AudioExample:
        sample = self.samples[i]
        data = self._audio_bytes(sample)
        with open_sound(data, sample.name) as sound:
            duration_s = sound.frames / sound.samplerate
        if duration_s < self.min_duration_s:
            raise _TooShortError(f"{duration_s:.3f} s is shorter than the minimum "
                                 f"{self.min_duration_s} s")
        return self.reader.read(data, name=sample.name, metadata=sample.metadata,
                                generator=example_generator(self.seed, position),
                                file_is_silent=lambda: self._file_is_silent(i, data))

    @staticmethod
    def _audio_bytes(sample: ShardSample) -> bytes:
        fs, path = fsspec.core.url_to_fs(sample.shard)
        data = fs.cat_file(path, start=sample.offset, end=sample.offset + sample.size)
        if len(data) != sample.size:
            raise BrokenAudioFileError(f"{sample.name}: the shard ends inside this sample "
                                       "(was it changed after the run started?)")
        return data

    def _file_is_silent(self, i: int, data: bytes) -> bool:
        if i not in self._silent:
            self._silent[i] = decode_peak(data, self.samples[i].name) < SILENCE_PEAK
        return self._silent[i]

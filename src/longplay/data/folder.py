"""Scanning a folder of audio files and resolving each file's metadata.

Shared by :class:`~longplay.data.AudioFolderDataset`, :func:`~longplay.data.encode_folder`
and :func:`~longplay.data.write_tar_shards`, so the three see the same files with the
same metadata.

Metadata precedence. Each audio file gets its metadata from exactly one source, the
first that exists (sources are never merged, so what a file's prompt is built from
is always one place to look):

1. ``<stem>.json`` beside the file (``song.json`` for ``song.flac``): a JSON object;
2. ``<stem>.txt`` beside the file: a caption, read as ``{"caption": <text stripped>}``
   (a blank file gives ``{}``, an unconditional example);
3. the row of ``metadata.csv`` or ``metadata.jsonl`` in the root folder whose ``file``
   (or ``path``) column is the file's path relative to the root, with "/" separators;
   the other columns are the metadata (empty CSV cells are left out). A root may hold
   one of the two tables, not both;
4. nothing: ``{}``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import soundfile as sf

from longplay.audio import AudioFileError, AudioInfo, AudioLimitError, audio_info

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_EXTENSIONS",
    "METADATA_TABLES",
    "AudioFile",
    "DatasetSummary",
    "read_metadata_table",
    "scan_audio_folder",
]

DEFAULT_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")
METADATA_TABLES: tuple[str, ...] = ("metadata.csv", "metadata.jsonl")
PATH_COLUMNS: tuple[str, ...] = ("file", "path")

# Reasons a file is skipped, as counted in DatasetSummary.reasons.
REASON_EMPTY = "empty file"
REASON_UNREADABLE = "unreadable"
REASON_NO_AUDIO = "no audio"
REASON_OUT_OF_RANGE = "out of range"  # rate, channels or length beyond longplay.audio's limits
REASON_TOO_SHORT = "too short"
REASON_BAD_METADATA = "bad metadata"
REASON_DECODE_ERROR = "decode error"
REASON_SILENT = "silent"


@dataclass
class DatasetSummary:
    """What a scan found and what it had to skip.

    Updated in place when files turn out bad after the scan (while reading samples),
    so it reflects everything this object has seen. In DataLoader worker processes
    each worker updates its own copy, not the main process's.

    Attributes:
        num_files: audio files found (usable or not).
        num_skipped: files skipped, each counted once.
        reasons: skipped files per reason ("unreadable", "too short", "silent"...).
    """

    num_files: int = 0
    num_skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def num_usable(self) -> int:
        """Files not (yet) skipped."""
        return self.num_files - self.num_skipped

    def skip(self, reason: str) -> None:
        """Count one more skipped file."""
        self.num_skipped += 1
        self.reasons[reason] += 1

    def __str__(self) -> str:
        text = f"{self.num_files} audio files, {self.num_skipped} skipped"
        if self.reasons:
            text += " (" + ", ".join(f"{n} {r}" for r, n in sorted(self.reasons.items())) + ")"
        return text


@dataclass(frozen=True)
class AudioFile:
    """A usable audio file of a scanned folder.

    Attributes:
        path: the file.
        relative_path: its path relative to the scanned root, "/"-separated.
        info: its header (sample rate, channels, length).
        metadata: its metadata, from the source given by the module's precedence.
    """

    path: Path
    relative_path: str
    info: AudioInfo
    metadata: dict[str, Any]


def normalize_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    """Lower-cased extensions with a leading dot; ValueError when none is given."""
    normalized = tuple(
        (e if e.startswith(".") else f".{e}").lower() for e in extensions if e.strip(".")
    )
    if not normalized:
        raise ValueError("extensions must name at least one audio file extension, e.g. '.wav'.")
    return normalized


def _row_key(value: Any, table: Path, line: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{table}, line {line}: the file/path column must hold the audio "
                         f"file's path relative to the folder, got {value!r}.")
    return PurePosixPath(value.strip().replace("\\", "/")).as_posix()


def _add_row(rows: dict[str, dict[str, Any]], key: str, row: dict[str, Any], table: Path,
             line: int) -> None:
    if key in rows:
        raise ValueError(f"{table}, line {line}: {key!r} appears a second time; keep one row "
                         "per audio file.")
    rows[key] = row


def _read_csv(table: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    with table.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        path_column = next((c for c in PATH_COLUMNS if c in columns), None)
        if path_column is None:
            raise ValueError(f"{table}: no 'file' or 'path' column (columns: {columns}); add "
                             "one holding each audio file's path relative to the folder.")
        for line, row in enumerate(reader, start=2):
            key = _row_key(row.get(path_column), table, line)
            values = {k: v for k, v in row.items()
                      if k is not None and k != path_column and v not in (None, "")}
            _add_row(rows, key, values, table, line)
    return rows


def _read_jsonl(table: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    with table.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"{table}, line {line}: not valid JSON ({err}).") from None
            if not isinstance(row, dict):
                raise ValueError(f"{table}, line {line}: expected a JSON object, got "
                                 f"{type(row).__name__}.")
            path_column = next((c for c in PATH_COLUMNS if c in row), None)
            if path_column is None:
                raise ValueError(f"{table}, line {line}: no 'file' or 'path' key naming the "
                                 "audio file.")
            key = _row_key(row.pop(path_column), table, line)
            _add_row(rows, key, row, table, line)
    return rows


def read_metadata_table(root: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The rows of ``metadata.csv`` or ``metadata.jsonl`` in ``root``, keyed by relative path.

    Returns:
        {relative posix path: metadata}; empty when the root holds no table.

    Raises:
        ValueError: both tables exist, a table lacks the file/path column, holds an
            invalid line, or names a file twice.
    """
    root = Path(root)
    present = [root / name for name in METADATA_TABLES if (root / name).is_file()]
    if len(present) > 1:
        raise ValueError(f"{root} holds both {' and '.join(p.name for p in present)}; keep one "
                         "metadata table.")
    if not present:
        return {}
    table = present[0]
    return _read_csv(table) if table.suffix == ".csv" else _read_jsonl(table)


def sidecar_metadata(path: Path) -> dict[str, Any] | None:
    """Metadata from ``<stem>.json`` or ``<stem>.txt`` beside ``path``; None when neither exists.

    Raises:
        ValueError: the sidecar is not UTF-8, not valid JSON, or not a JSON object.
    """
    json_path = path.with_suffix(".json")
    if json_path.is_file():
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{json_path} is not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{json_path} must hold a JSON object, got {type(data).__name__}")
        return data
    txt_path = path.with_suffix(".txt")
    if txt_path.is_file():
        try:
            caption = txt_path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as err:
            raise ValueError(f"{txt_path} is not UTF-8 text ({err})") from None
        return {"caption": caption} if caption else {}
    return None


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _header_failure(path: Path, err: AudioFileError) -> str:
    """The skip reason for a file whose header ``audio_info`` rejected."""
    if isinstance(err, AudioLimitError):
        return REASON_OUT_OF_RANGE
    try:
        frames = sf.info(os.fsencode(path)).frames
    except (sf.SoundFileError, RuntimeError, OSError):
        return REASON_UNREADABLE
    return REASON_NO_AUDIO if frames <= 0 else REASON_UNREADABLE


def scan_audio_folder(
    root: str | os.PathLike[str],
    *,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    min_duration_s: float = 0.0,
) -> tuple[list[AudioFile], DatasetSummary]:
    """Find the usable audio files under ``root`` (recursively) and their metadata.

    Files are taken in sorted order of their relative paths, so every scan of the same
    folder gives the same list. Hidden files and folders (names starting with ".", such
    as macOS ``._song.wav`` resource forks) are ignored. Only headers are read here. A
    file that is empty, unreadable, holds no samples, has a sample rate or channel
    count outside ``longplay.audio``'s limits (``MIN_INPUT_SAMPLE_RATE``..
    ``MAX_INPUT_SAMPLE_RATE``, ``MAX_INPUT_CHANNELS``), is shorter than
    ``min_duration_s`` or has a broken sidecar is skipped with one warning naming it
    and the reason, and counted in the summary.

    Returns:
        (usable files, summary).

    Raises:
        ValueError: ``root`` is not a folder, or its metadata table is invalid.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; pass the folder that holds the audio files.")
    if min_duration_s < 0:
        raise ValueError(f"min_duration_s must be >= 0, got {min_duration_s}.")
    suffixes = normalize_extensions(extensions)
    table = read_metadata_table(root)
    candidates = sorted(
        (p for p in root.rglob("*")
         if p.suffix.lower() in suffixes and not _is_hidden(p.relative_to(root)) and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    summary = DatasetSummary(num_files=len(candidates))
    files: list[AudioFile] = []
    for path in candidates:
        relative = path.relative_to(root).as_posix()

        def skip(reason: str, detail: str, path: Path = path) -> None:
            logger.warning("skipping %s (%s): %s", path, reason, detail)
            summary.skip(reason)

        if path.stat().st_size == 0:
            skip(REASON_EMPTY, "the file is 0 bytes, probably an interrupted copy")
            continue
        try:
            info = audio_info(path)
        except AudioFileError as err:
            skip(_header_failure(path, err), str(err))
            continue
        if info.duration_s < min_duration_s:
            skip(REASON_TOO_SHORT, f"{info.duration_s:.3f} s is shorter than the minimum "
                                   f"{min_duration_s} s")
            continue
        try:
            metadata = sidecar_metadata(path)
        except ValueError as err:
            skip(REASON_BAD_METADATA, str(err))
            continue
        if metadata is None:
            metadata = dict(table.get(relative, {}))
        files.append(AudioFile(path=path, relative_path=relative, info=info, metadata=metadata))
    unmatched = sorted(set(table) - {p.relative_to(root).as_posix() for p in candidates})
    if unmatched:
        logger.warning("%d row(s) of the metadata table in %s name no audio file found there "
                       "(first: %s)", len(unmatched), root, unmatched[0])
    return files, summary

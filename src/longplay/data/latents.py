"""Pre-encoding an audio folder into VAE latents, and the dataset that reads them back.

Training the diffusion model on pre-encoded latents skips the VAE encoder at every
step. As in the reference, the stored latents are a *sample* of the VAE posterior
(SYSTEM.md section 2: "latents used for DiT training are samples"), drawn once per
file with a seeded generator, for the whole file.

On-disk format of a latent folder:

* ``latents-00000.safetensors``, ``latents-00001.safetensors``...: up to
  ``shard_size`` items each. Tensor ``<item id>`` is the item's latents [D, T]
  (float32). The safetensors metadata holds ``format`` ("longplay-latents"),
  ``version`` ("1"), ``sample_rate``, ``hop_length``, ``latent_dim``,
  ``latent_rate``, ``seed``, ``latents`` ("posterior sample"; "model sample" for a
  model's own generations, :mod:`longplay.training.samples`), ``silence`` (a JSON list:
  the VAE's latent of digital silence, ``AudioVAE.silence_latent``, with which
  :class:`LatentDataset` pads a window past the end of its piece; folders written
  before it was recorded are padded with zeros) and ``items``: a JSON list of the
  items' index records (below), in order.
* ``index.jsonl``: one JSON object per item: ``id`` (8-digit string, the tensor
  name), ``shard`` (file name), ``frames`` (T), ``duration_s`` (of the source file),
  ``path`` (source, relative to the encoded folder, "/"-separated), ``sample_rate``
  and ``num_samples`` (the VAE's rate, and the source's length at that rate: what
  ``vae.decode(latents, num_samples=...)`` needs), ``metadata`` (the source's metadata
  as resolved for audio folders).

Crash safety. A shard is written atomically (temporary file + rename) and its index
lines are appended, with one write and an fsync, only after it is complete, so the
index never names a missing shard. If a crash cuts the index in the middle of a
shard's lines, the next run (or :class:`LatentDataset`) finds that the last shard's
lines disagree with the shard's own ``items`` and drops them; ``encode_folder`` then
writes that shard again. A shard written but never indexed is never read and is
overwritten by the next run.

Shape legend: C audio channels, S samples, D latent channels, T latent frames.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch.utils.data import Dataset

from longplay.atomic import atomic_output_path
from longplay.audio import (
    MAX_LOAD_DURATION_S,
    AudioFileError,
    AudioLimitError,
    Waveform,
    load_audio,
)
from longplay.autoencoder import DEFAULT_CHUNK_FRAMES, AudioVAE
from longplay.checkpoints.files import (
    CheckpointError,
    read_safetensors_metadata,
    write_safetensors,
)
from longplay.config.training import SHORT_CROP_LENGTHS
from longplay.data.folder import (
    DEFAULT_EXTENSIONS,
    REASON_DECODE_ERROR,
    REASON_OUT_OF_RANGE,
    REASON_SILENT,
    AudioFile,
    DatasetSummary,
    scan_audio_folder,
)
from longplay.data.prompts import DEFAULT_PROMPT_BUILDER, PromptBuilder
from longplay.data.types import LatentExample
from longplay.data.windows import SILENCE_PEAK, example_generator, mix_seed

logger = logging.getLogger(__name__)

__all__ = [
    "INDEX_NAME",
    "LATENTS_FORMAT",
    "EncodeSummary",
    "LatentDataset",
    "LatentFolderWriter",
    "LatentIndexEntry",
    "encode_folder",
    "latent_folder_header",
    "read_latent_index",
]

INDEX_NAME = "index.jsonl"
LATENTS_FORMAT = "longplay-latents"
LATENTS_FORMAT_VERSION = "1"
SHARD_PATTERN = "latents-{:05d}.safetensors"
_SHARD_RE = re.compile(r"^latents-(\d{5,})\.safetensors$")
# Header fields that must agree between the shards of one folder.
_MODEL_FIELDS = ("format", "version", "sample_rate", "hop_length", "latent_dim", "seed")

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(files_done, files_total)`` after each file of an encode run."""


@dataclass(frozen=True)
class LatentIndexEntry:
    """One encoded file: a line of ``index.jsonl`` (see the module docstring)."""

    item_id: str
    shard: str
    frames: int
    duration_s: float
    path: str
    sample_rate: int
    num_samples: int
    metadata: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.item_id, "shard": self.shard, "frames": self.frames,
                "duration_s": self.duration_s, "path": self.path,
                "sample_rate": self.sample_rate, "num_samples": self.num_samples,
                "metadata": self.metadata}

    @classmethod
    def from_json(cls, data: Any) -> LatentIndexEntry:
        """Raises ValueError naming what is missing or mistyped."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        fields = {"id": str, "shard": str, "frames": int, "duration_s": (int, float),
                  "path": str, "sample_rate": int, "num_samples": int, "metadata": dict}
        for key, kind in fields.items():
            if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
                raise ValueError(f"field {key!r} is missing or not a {kind}")
        return cls(item_id=data["id"], shard=data["shard"], frames=data["frames"],
                   duration_s=float(data["duration_s"]), path=data["path"],
                   sample_rate=data["sample_rate"], num_samples=data["num_samples"],
                   metadata=data["metadata"])


@dataclass(frozen=True)
class EncodeSummary:
    """What one :func:`encode_folder` run did.

    Attributes:
        out_dir: the latent folder.
        num_files: audio files found in the source folder (usable or not).
        num_encoded: files encoded by this run.
        num_already_encoded: files found in the index before this run (not redone).
        num_skipped: files skipped by the scan or while encoding.
        reasons: skipped files per reason.
        shards_written: shard file names written by this run.
    """

    out_dir: Path
    num_files: int
    num_encoded: int
    num_already_encoded: int
    num_skipped: int
    reasons: Counter[str]
    shards_written: tuple[str, ...]

    def __str__(self) -> str:
        text = (f"encoded {self.num_encoded} file(s) into {len(self.shards_written)} shard(s) "
                f"in {self.out_dir}; {self.num_already_encoded} already encoded, "
                f"{self.num_skipped} skipped")
        if self.reasons:
            text += " (" + ", ".join(f"{n} {r}" for r, n in sorted(self.reasons.items())) + ")"
        return text


def _shard_items(path: Path) -> list[str] | None:
    """The item ids a shard's header lists; None when the shard is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        items = json.loads(read_safetensors_metadata(path).get("items", "null"))
    except (CheckpointError, json.JSONDecodeError):
        return None
    if not isinstance(items, list):
        return None
    return [item.get("id") for item in items if isinstance(item, dict)]


def read_latent_index(root: str | os.PathLike[str], *,
                      repair: bool = False) -> list[LatentIndexEntry]:
    """The complete entries of ``root/index.jsonl`` (empty when there is no index).

    The entries of the last shard are kept only when they match the shard's own item
    list (an interrupted append leaves them incomplete); a cut-off last line is ignored.
    With ``repair`` the index file is rewritten without them.

    Raises:
        ValueError: a line other than a cut-off last one is not a valid entry.
    """
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    cut_off = lines.pop() != ""  # the text after the last newline: a partial line
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(LatentIndexEntry.from_json(json.loads(line)))
        except (json.JSONDecodeError, ValueError) as err:
            raise ValueError(f"{path}, line {number}: not a valid latent index entry ({err}); "
                             "the index is damaged, re-encode into a new folder.") from None
    incomplete = cut_off
    if entries:
        last = entries[-1].shard
        group = [e.item_id for e in entries if e.shard == last]
        if _shard_items(Path(root) / last) != group:
            entries = [e for e in entries if e.shard != last]
            incomplete = True
    if incomplete:
        logger.warning("%s ends with the entries of an interrupted run; %s", path,
                       "dropping them (their files are encoded again)" if repair
                       else "ignoring them (run the encode again to finish it)")
        if repair:
            text = "".join(_index_line(e) for e in entries)
            with atomic_output_path(path) as tmp:
                tmp.write_text(text, encoding="utf-8")
    return entries


def _json_text(value: Any, *, sort_keys: bool = False) -> str:
    """``value`` as JSON that is valid UTF-8. Non-ASCII text is kept as it is, except in a
    value holding a file name that is not UTF-8: its undecodable bytes (lone surrogates
    in Python) are then escaped as ``\\udcXX``, which ``json.loads`` reads back the same."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=sort_keys)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, sort_keys=sort_keys)
    return text


def _index_line(entry: LatentIndexEntry) -> str:
    return _json_text(entry.to_json(), sort_keys=True) + "\n"


def _append_index(root: Path, entries: Sequence[LatentIndexEntry]) -> None:
    """Append the lines of one complete shard in a single write, then fsync."""
    with (root / INDEX_NAME).open("a", encoding="utf-8") as handle:
        handle.write("".join(_index_line(e) for e in entries))
        handle.flush()
        os.fsync(handle.fileno())


def _path_seed(seed: int, relative_path: str) -> int:
    """The posterior-sample seed of a file: from ``seed`` and a hash of its relative path,
    so a file's latents do not change when other files are added, removed or resumed."""
    name = relative_path.encode("utf-8", "surrogateescape")  # the bytes of a non-UTF-8 name
    digest = hashlib.blake2b(name, digest_size=8).digest()
    return mix_seed(seed, int.from_bytes(digest, "little"))


def latent_folder_header(vae: AudioVAE, seed: int,
                         latents: str = "posterior sample") -> dict[str, str]:
    """The safetensors metadata of a latent folder's shards (without ``items``): the
    module docstring's fields for ``vae``; ``latents`` says what the tensors are."""
    return {"format": LATENTS_FORMAT, "version": LATENTS_FORMAT_VERSION,
            "sample_rate": str(vae.sample_rate), "hop_length": str(vae.hop_length),
            "latent_dim": str(vae.latent_dim), "latent_rate": repr(vae.latent_rate),
            "seed": str(seed), "latents": latents,
            "silence": json.dumps(vae.silence_latent().tolist())}


def _check_same_model(out_dir: Path, shard: str, header: Mapping[str, str]) -> None:
    existing = read_safetensors_metadata(out_dir / shard)
    differing = [f"{k} {existing.get(k)!r} (now {header[k]!r})" for k in _MODEL_FIELDS
                 if existing.get(k) != header[k]]
    if differing:
        raise ValueError(f"{out_dir} holds latents made with other settings: "
                         f"{', '.join(differing)}; encode into another folder, or use the "
                         "same VAE and seed to continue.")


def _next_shard_number(entries: Sequence[LatentIndexEntry]) -> int:
    numbers = [int(m.group(1)) for e in entries if (m := _SHARD_RE.match(e.shard))]
    return max(numbers) + 1 if numbers else 0


def _load_for_encoding(file: AudioFile, vae: AudioVAE, summary: DatasetSummary,
                       max_duration_s: float | None) -> Waveform | None:
    """The whole file at the VAE's rate and channels; None (warned, counted) when it
    cannot be decoded, is longer than ``max_duration_s`` or is silent."""
    try:
        wave = load_audio(file.path, sample_rate=vae.sample_rate, channels=vae.audio_channels,
                          max_duration_s=max_duration_s)
    except AudioFileError as err:
        reason = REASON_OUT_OF_RANGE if isinstance(err, AudioLimitError) else REASON_DECODE_ERROR
        logger.warning("skipping %s (%s): %s", file.path, reason, err)
        summary.skip(reason)
        return None
    if float(wave.audio.abs().max()) < SILENCE_PEAK:
        logger.warning("skipping %s (%s): peak below %g", file.path, REASON_SILENT, SILENCE_PEAK)
        summary.skip(REASON_SILENT)
        return None
    return wave


class LatentFolderWriter:
    """Appends items to a latent folder (the module docstring's format), a shard at a time.

    Opening an existing folder repairs its index (an interrupted run's lines are dropped)
    and checks that its shards were written with the same ``header`` fields
    (``_MODEL_FIELDS``); numbering continues after its last item and shard. Items are
    written when ``shard_size`` of them are pending and by :meth:`close`.

    Args:
        out_dir: the latent folder (created when missing).
        header: the shards' safetensors metadata, without ``items``.
        shard_size: items per shard.

    Raises:
        ValueError: ``out_dir`` holds latents written with other header fields.
    """

    def __init__(self, out_dir: str | os.PathLike[str], header: Mapping[str, str], *,
                 shard_size: int = 64) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}.")
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.header = dict(header)
        self.shard_size = shard_size
        self.entries: list[LatentIndexEntry] = read_latent_index(self.out, repair=True)
        if self.entries:
            _check_same_model(self.out, self.entries[-1].shard, self.header)
        self.num_added = 0
        self.written: list[str] = []
        self._shard_number = _next_shard_number(self.entries)
        self._pending: list[tuple[LatentIndexEntry, torch.Tensor]] = []

    @property
    def num_items(self) -> int:
        """Items in the folder, pending ones included."""
        return len(self.entries) + len(self._pending)

    def add(self, latents: torch.Tensor, *, duration_s: float, path: str, num_samples: int,
            metadata: dict[str, Any]) -> LatentIndexEntry:
        """Queue one item's latents [D, T]; its id is the next number."""
        entry = LatentIndexEntry(
            item_id=f"{self.num_items:08d}", shard="", frames=int(latents.shape[-1]),
            duration_s=float(duration_s), path=path,
            sample_rate=int(self.header["sample_rate"]), num_samples=int(num_samples),
            metadata=metadata)
        self._pending.append((entry, latents.detach().float().cpu().contiguous()))
        self.num_added += 1
        if len(self._pending) == self.shard_size:
            self.flush()
        return entry

    def flush(self) -> None:
        """Write the pending items as one shard (atomically), then append their index
        lines."""
        if not self._pending:
            return
        name = SHARD_PATTERN.format(self._shard_number)
        batch = [(replace(e, shard=name), z) for e, z in self._pending]
        items = _json_text([e.to_json() for e, _ in batch])
        write_safetensors(self.out / name, {e.item_id: z for e, z in batch},
                          {**self.header, "items": items})
        _append_index(self.out, [e for e, _ in batch])
        self.entries.extend(e for e, _ in batch)
        self.written.append(name)
        self._pending.clear()
        self._shard_number += 1

    def close(self) -> None:
        self.flush()


def encode_folder(
    vae: AudioVAE,
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    shard_size: int = 64,
    seed: int = 0,
    chunk_frames: int | None = DEFAULT_CHUNK_FRAMES,
    progress: ProgressFn | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    min_duration_s: float = 0.0,
    max_duration_s: float | None = MAX_LOAD_DURATION_S,
) -> EncodeSummary:
    """Encode every usable audio file under ``root`` into latent shards in ``out_dir``.

    Files are those an :class:`~longplay.data.AudioFolderDataset` sees (same scan,
    skips and metadata). Each whole file is loaded at the VAE's rate and channel count,
    encoded (in chunks of ``chunk_frames``, see ``AudioVAE.encode``) and one posterior
    sample is stored, drawn with a generator seeded from ``seed`` and the file's
    relative path. Files that fail to decode, are silent, are longer than
    ``max_duration_s`` (each is decoded whole into memory) or have a sample rate or
    channel count outside ``longplay.audio``'s limits are skipped with a warning naming
    the file and the reason; the run goes on with the others.

    Resumable: files already in ``out_dir``'s index (by relative path) are skipped, and
    numbering continues after the last indexed shard. The run must use the same VAE
    (rate, hop, latent channels) and seed as the earlier ones.

    Args:
        vae: the autoencoder (in eval mode; its device is used).
        root: the audio folder.
        out_dir: the latent folder (created when missing).
        shard_size: items per shard.
        seed: seed of the posterior samples.
        chunk_frames: VAE chunk size (None: whole files at once).
        progress: called as ``progress(files_done, files_total)`` over this run's files.
        extensions: audio file extensions.
        min_duration_s: files shorter than this are skipped.
        max_duration_s: files longer than this are skipped (None: no limit).

    Returns:
        EncodeSummary of this run.

    Raises:
        ValueError: bad arguments, ``root`` is not a folder, or ``out_dir`` holds
            latents of another VAE or seed.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}.")
    if max_duration_s is not None and not max_duration_s > 0:
        raise ValueError(f"max_duration_s must be > 0 or None, got {max_duration_s}.")
    out = Path(out_dir)
    files, summary = scan_audio_folder(root, extensions=extensions,
                                       min_duration_s=min_duration_s)
    writer = LatentFolderWriter(out, latent_folder_header(vae, seed), shard_size=shard_size)
    done = {e.path for e in writer.entries}
    todo = [f for f in files if f.relative_path not in done]
    device = next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype

    for done_count, file in enumerate(todo, start=1):
        wave = _load_for_encoding(file, vae, summary, max_duration_s)
        if wave is not None:
            generator = torch.Generator(device=device).manual_seed(
                _path_seed(seed, file.relative_path))
            with torch.inference_mode():
                posterior = vae.encode(wave.audio[None].to(device=device, dtype=dtype),
                                       chunk_frames=chunk_frames)
                latents = posterior.sample(generator)[0].float().cpu()  # [D, T]
            writer.add(latents, duration_s=file.info.duration_s, path=file.relative_path,
                       num_samples=wave.num_samples, metadata=file.metadata)
        if progress is not None:
            progress(done_count, len(todo))
    writer.close()
    return EncodeSummary(out_dir=out, num_files=summary.num_files,
                         num_encoded=writer.num_added, num_already_encoded=len(done),
                         num_skipped=summary.num_skipped, reasons=summary.reasons,
                         shards_written=tuple(writer.written))


_LENGTH_STREAM = 7_919
"""Offset of the seed of the window-length draws, so that they do not repeat the
examples' own draws."""


class LatentDataset(Dataset[LatentExample]):
    """Random windows of pre-encoded latents (a folder written by :func:`encode_folder`).

    ``example(index, position)`` crops ``num_frames`` frames of item ``index`` at an
    offset drawn uniformly in [0, max(0, T - num_frames)] (0 when not
    ``random_crop``), padding past the end with the VAE's latent of silence (recorded
    in the shards; zeros for folders written without it), as the paper follows a piece
    shorter than the window with silence, and keeps the timing conditioning
    consistent with the crop: ``seconds_start`` = floor(offset_frames / latent_rate)
    (the reference forgets to move it with the crop on this path), ``seconds_total`` =
    ceil(duration_s of the source). Only the window's frames are read from the shard.

    With probability ``short_crop_probability`` the window instead holds a short piece:
    a whole number S of seconds in [1, the seconds W the window holds], uniform
    (``short_crop_lengths="uniform"``) or log-uniform (``"log-uniform"``: S =
    floor(exp(u ln(W + 1))) with u uniform in [0, 1), as many pieces per octave of length,
    so that a 4m45s window holds a piece of 10 s or less in 42 % of the draws instead of
    3.5 %), of the crop (round(S * latent_rate) frames; S at most the whole seconds the crop holds)
    followed by silence, with ``seconds_start`` = 0 and ``seconds_total`` = S. Where the corpus's
    pieces are longer than the window, no window would otherwise show where a piece
    ends; these windows teach the timing conditioning to end the music at any length
    the window holds (the paper's windows of a piece shorter than the window, followed
    by silence), at any window length.

    With ``min_frames`` the window's length varies: for each group of ``group_size``
    consecutive positions (the trainer's micro-batches, so a batch keeps one length) it
    is drawn uniformly among the multiples of ``frame_multiple`` from ``min_frames`` up to
    ``num_frames`` and ``num_frames`` itself (a multiple or not: the longest fit window),
    from a generator of its own (the examples' draws are unchanged). With
    ``full_window_share`` > 0, that share of the groups takes ``num_frames`` and the rest
    draw uniformly as above, so that the full window, one length among many, is not
    trained on too rarely to keep what it learnt.
    These are the windows that a pipeline's "fit" mode samples, so the timing
    conditioning is learnt where generation uses it, not only in the full window.

    Random draws (offset, then the short-crop choice and length when
    ``short_crop_probability`` > 0, then prompt) come from a generator seeded with seed *
    1_000_003 + position, as in :class:`~longplay.data.AudioFolderDataset`;
    ``dataset[i]`` is ``example(i, i)``.

    Args:
        root: the latent folder.
        num_frames: window length T.
        random_crop: random offsets; when False every window starts at 0.
        prompt_builder: turns metadata into prompts; None makes every prompt "".
        seed: seed of the random choices.
        latent_rate: frames per second, checked against the shards' (sample_rate /
            hop_length) when given; the shards' exact value is used.
        short_crop_probability: the share of windows that hold a short piece followed
            by silence (above).
        short_crop_lengths: how the short pieces' lengths are drawn: "uniform" or
            "log-uniform" (above).
        min_frames: the shortest window when the length varies (above); None: every
            window is ``num_frames`` long.
        full_window_share: with ``min_frames``, the share of groups in the full window
            (a training config's data.window_full_share).
        group_size: consecutive positions that share a window length (the batch size).
        frame_multiple: window lengths are multiples of this many frames (the trainer
            passes ``longplay.config.WINDOW_QUANTUM_FRAMES``, the fit windows' step).

    Raises:
        ValueError: no index or no complete entry, shards missing or of different
            models, or a ``latent_rate`` that disagrees with the shards.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        num_frames: int,
        random_crop: bool = True,
        prompt_builder: PromptBuilder | None = DEFAULT_PROMPT_BUILDER,
        seed: int = 0,
        latent_rate: float | None = None,
        short_crop_probability: float = 0.0,
        short_crop_lengths: str = "uniform",
        min_frames: int | None = None,
        full_window_share: float = 0.0,
        group_size: int = 1,
        frame_multiple: int = 1,
    ) -> None:
        if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames <= 0:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}.")
        if group_size < 1 or frame_multiple < 1:
            raise ValueError(f"group_size and frame_multiple must be >= 1, got {group_size} "
                             f"and {frame_multiple}.")
        self.lengths: tuple[int, ...] = (num_frames,)
        if min_frames is not None:
            if not isinstance(min_frames, int) or not 0 < min_frames <= num_frames:
                raise ValueError(f"min_frames (a training config's data.window_frames_min) "
                                 f"must be in [1, the window of {num_frames} frames], got "
                                 f"{min_frames!r}; lower it or remove it.")
            multiples = range(-(-min_frames // frame_multiple) * frame_multiple,
                              num_frames, frame_multiple)
            # the window itself is a fit window too (the longest), multiple or not
            self.lengths = (*multiples, num_frames)
        if not 0.0 <= full_window_share <= 1.0 or (full_window_share > 0 and min_frames is None):
            raise ValueError(f"full_window_share (a training config's data.window_full_share) "
                             f"must be in [0, 1] and needs data.window_frames_min, got "
                             f"{full_window_share!r}; set window_frames_min or remove it.")
        self.full_window_share = float(full_window_share)
        self.group_size = int(group_size)
        if not 0.0 <= short_crop_probability <= 1.0:
            raise ValueError("short_crop_probability must be in [0, 1], got "
                             f"{short_crop_probability!r}.")
        self.short_crop_probability = float(short_crop_probability)
        if short_crop_lengths not in SHORT_CROP_LENGTHS:
            raise ValueError(f"short_crop_lengths (a training config's data.short_crop_lengths) "
                             f"must be one of {', '.join(SHORT_CROP_LENGTHS)}, got "
                             f"{short_crop_lengths!r}.")
        if short_crop_lengths != "uniform" and self.short_crop_probability == 0.0:
            raise ValueError("short_crop_lengths (a training config's data.short_crop_lengths) "
                             "draws the lengths of short pieces, and short_crop_probability "
                             "is 0: set it above 0, or remove short_crop_lengths.")
        self.short_crop_lengths = short_crop_lengths
        self.root = Path(root)
        self.entries: tuple[LatentIndexEntry, ...] = tuple(read_latent_index(self.root))
        if not self.entries:
            raise ValueError(f"{self.root} holds no encoded latents ({INDEX_NAME} is missing "
                             "or empty); write them with `longplay data encode`.")
        headers = {}
        silences: list[str | None] = []  # each shard's "silence" header, in order
        for shard in sorted({e.shard for e in self.entries}):
            path = self.root / shard
            if not path.is_file():
                raise ValueError(f"{path} is named by {INDEX_NAME} but missing.")
            header = read_safetensors_metadata(path)
            if header.get("format") != LATENTS_FORMAT:
                raise ValueError(f"{path} is not a longplay latent shard.")
            headers[shard] = tuple(header.get(k) for k in _MODEL_FIELDS)
            silences.append(header.get("silence"))
        if len(set(headers.values())) > 1:
            raise ValueError(f"the shards of {self.root} were written with different models or "
                             "seeds; keep one encode per folder.")
        fields = dict(zip(_MODEL_FIELDS, next(iter(headers.values())), strict=True))
        self.silence = self._silence_of(silences[0], self.root,
                                        int(fields["latent_dim"]))
        self.latent_dim = int(fields["latent_dim"])
        self.latent_rate = int(fields["sample_rate"]) / int(fields["hop_length"])
        if latent_rate is not None and not math.isclose(latent_rate, self.latent_rate,
                                                        rel_tol=1e-6):
            raise ValueError(f"latent_rate={latent_rate} disagrees with the shards of "
                             f"{self.root}, encoded at {self.latent_rate} frames per second.")
        self.num_frames = num_frames
        self.random_crop = random_crop
        self.prompt_builder = prompt_builder
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def _silence_of(text: str | None, root: Path, latent_dim: int) -> torch.Tensor:
        """[D] the padding latent recorded in the shards' ``silence`` header ``text``
        (zeros when there is none)."""
        if text is None:
            return torch.zeros(latent_dim)
        try:
            silence = torch.tensor(json.loads(text), dtype=torch.float32)
        except (ValueError, TypeError):
            silence = None
        if silence is None or silence.shape != (latent_dim,) or not silence.isfinite().all():
            raise ValueError(f"{root}: the shards' silence latent is not {latent_dim} finite "
                             "numbers; the latent folder is damaged, encode it again.")
        return silence

    def __getitem__(self, index: int) -> LatentExample:
        return self.example(index, index)

    def window_frames(self, position: int) -> int:
        """The window length of the example at global sample ``position``: the same for
        every position of a group of ``group_size``."""
        if len(self.lengths) == 1:
            return self.lengths[0]
        group = example_generator(self.seed + _LENGTH_STREAM, position // self.group_size)
        if (self.full_window_share > 0
                and float(torch.rand((), generator=group)) < self.full_window_share):
            return self.lengths[-1]
        return self.lengths[int(torch.randint(len(self.lengths), (1,), generator=group))]

    def _short_piece_seconds(self, generator: torch.Generator, frames: int,
                             window: int) -> int | None:
        """The length S in seconds of a short piece for a crop of ``frames`` frames in a
        window of ``window`` frames, or None (a plain crop); draws nothing when short
        crops are off, so seeds keep their windows. S is at most the whole seconds the
        crop holds."""
        if self.short_crop_probability == 0.0:
            return None
        chosen = float(torch.rand((), generator=generator)) < self.short_crop_probability
        longest = max(int(window / self.latent_rate), 1)
        if self.short_crop_lengths == "uniform":
            seconds = int(torch.randint(1, longest + 1, (1,), generator=generator).item())
        else:  # log-uniform: one draw too, so the draws after it stay in step
            u = float(torch.rand((), generator=generator))
            seconds = min(int(math.exp(u * math.log(longest + 1))), longest)
        seconds = min(seconds, int(frames / self.latent_rate))
        return seconds if chosen and seconds >= 1 else None

    def example(self, index: int, position: int) -> LatentExample:
        """The example of item ``index`` drawn at global sample ``position``."""
        if not 0 <= index < len(self.entries):
            raise IndexError(f"index {index} is outside [0, {len(self.entries)})")
        entry = self.entries[index]
        generator = example_generator(self.seed, position)
        frames = self.window_frames(position)
        offset = 0
        if self.random_crop:
            max_offset = max(0, entry.frames - frames)
            offset = int(torch.randint(0, max_offset + 1, (1,), generator=generator).item())
        path = self.root / entry.shard
        try:
            with safe_open(str(path), framework="pt") as shard:
                window = shard.get_slice(entry.item_id)[:, offset:offset + frames]
        except (SafetensorError, OSError, KeyError) as err:
            raise CheckpointError(f"{path}: cannot read item {entry.item_id} ({err}); the "
                                  "latent folder is damaged, encode it again.") from None
        if window.dim() != 2 or window.shape[0] != self.latent_dim:
            raise CheckpointError(f"{path}: item {entry.item_id} has shape "
                                  f"{tuple(window.shape)}, expected [{self.latent_dim}, T].")
        seconds_start = float(math.floor(offset / self.latent_rate))
        seconds_total = float(math.ceil(entry.duration_s))
        short = self._short_piece_seconds(generator, int(window.shape[-1]), frames)
        if short is not None:
            window = window[:, :round(short * self.latent_rate)]
            seconds_start, seconds_total = 0.0, float(short)
        num_valid = int(window.shape[-1])
        latents = torch.cat([window.float(), self.silence[:, None].expand(
            -1, frames - num_valid)], dim=-1)  # [D, T]
        prompt = ("" if self.prompt_builder is None
                  else self.prompt_builder.build(entry.metadata, generator))
        return LatentExample(
            latents=latents,
            seconds_start=seconds_start,
            seconds_total=seconds_total,
            prompt=prompt,
            path=entry.path,
            num_valid_frames=num_valid,
        )

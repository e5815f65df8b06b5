"""Building a corpus of rendered music: planning, one track at a time, and the whole.

``build_corpus(DIR, hours=H, seed=S)`` plans tracks until their target durations add
up to H hours, then builds each one (in worker processes when asked) into
``DIR/<split>/<id>.flac`` with its ``.json`` sidecar, and finally writes ``LICENSES.md``
and ``corpus.json`` into DIR.

Determinism. Track i draws everything (its source, length, piece, instruments,
tempo, key, mix) from random generators seeded by (S, i), and rendering is
deterministic, so a build is a function of (H, S, test fraction, sound font, tool
versions): two builds give the same samples. The plan for more hours extends the plan
for fewer (only the last track's length depends on H).

Resumption. A track is finished when its sidecar (written last, atomically, after the
audio) names the track's build key (a digest of its plan entry and the tool
versions) and the audio has the length the sidecar states; a rerun skips finished
tracks and rebuilds the rest.

Held-out split. Pieces (score files, ABC tunes) are split by a hash of their identity,
so the held-out pieces are the same for every seed and never appear in training (unless
the fraction is so small that a source has no held-out piece at all);
tracks are assigned to "test" by systematic sampling with a seeded phase, so at least
floor(n * test_fraction) of n tracks are held out. Generated MMA songs are new
material for every track.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from longplay.atomic import atomic_output_path
from longplay.audio import save_audio
from longplay.data.corpus import midi
from longplay.data.corpus.abc import load_abc
from longplay.data.corpus.catalog import (
    ABC_COLLECTIONS,
    EXCLUDED_COLLECTIONS,
    SCORE_COLLECTIONS,
    SKIPPED_COLLECTIONS,
    SKIPPED_FILES,
    Piece,
    load_catalog,
    piece_split_value,
)
from longplay.data.corpus.gm import (
    DRUM_CHANNEL,
    DRUM_KIT_NAME,
    ENSEMBLES,
    SUBSTITUTE_GROUPS,
    Ensemble,
    program_name,
)
from longplay.data.corpus.mma import MMA_LICENCE, MMA_STYLES, available_styles, load_mma
from longplay.data.corpus.pieces import PieceUnusableError, SourcePiece
from longplay.data.corpus.render import SAMPLE_RATE, finish_audio, render_midi
from longplay.data.corpus.scores import load_score
from longplay.data.corpus.theory import bar_quarters, beat_quarters, transpose_key
from longplay.data.corpus.tools import Toolchain, find_toolchain

__all__ = [
    "BUILDER_VERSION",
    "DEFAULT_TEST_FRACTION",
    "MAX_DURATION_S",
    "MIN_DURATION_S",
    "SOURCE_WEIGHTS",
    "CorpusSummary",
    "TrackSpec",
    "build_corpus",
    "build_track",
    "licence_summary",
    "plan_corpus",
]

logger = logging.getLogger(__name__)

BUILDER_VERSION = "1"
"""Part of every build key: bump it when a change alters what a track sounds like."""

DEFAULT_TEST_FRACTION = 0.05
SOURCE_WEIGHTS: Mapping[str, float] = {"music21": 0.35, "abc": 0.35, "mma": 0.30}
MIN_DURATION_S = 4.0
MAX_DURATION_S = 285.0
"""Target durations lie in [MIN_DURATION_S, MAX_DURATION_S] (285 s is the longest
window of Stable Audio Open 1.0)."""
SHORT_PROBABILITY = 0.2
SHORT_DURATION_S = (MIN_DURATION_S, 15.0)
"""A fifth of the tracks are short, so that a model sees pieces end inside its window."""
NATURAL_TOLERANCE = 0.15
"""A piece (or whole repetitions of it) within 15 % of the target plays to its end."""
MAX_ATTEMPTS = 8
MAX_PLAYS = 4
"""Pieces that would have to be repeated more often to fill a track are redrawn."""
TAIL_S = 4.0
"""Seconds rendered after the last note for release and reverb tails."""


@dataclass(frozen=True)
class TrackSpec:
    """One planned track: everything its build depends on, besides the toolchain.

    Attributes:
        index: position in the plan.
        source: "music21", "abc" or "mma".
        split: "train" or "test".
        target_s: the duration the track is built to (crop, loop or song length).
        seed: the corpus seed.
        test_fraction: the held-out fraction (decides which pieces are held out).
    """

    index: int
    source: str
    split: str
    target_s: float
    seed: int
    test_fraction: float

    @property
    def id(self) -> str:
        return f"{self.index:06d}"

    @property
    def relative_stem(self) -> str:
        """"train/000012": the track's files without extension, relative to the corpus."""
        return f"{self.split}/{self.id}"

    def build_key(self, tools: Toolchain) -> str:
        payload = {"spec": asdict(self), "tools": tools.versions, "builder": BUILDER_VERSION}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([*key])


def plan_corpus(hours: float, seed: int, test_fraction: float = DEFAULT_TEST_FRACTION
                ) -> list[TrackSpec]:
    """The tracks of a corpus of ``hours`` hours: their sources, splits and lengths.

    Target durations are drawn per track (a fifth short, 4-15 s; the rest log-uniform
    in 15-285 s) until they add up to ``hours``; the last one is shortened to fit.
    """
    _check_settings(hours, seed, test_fraction)
    total_s = hours * 3600.0
    phase = float(_rng(seed, 2**32 - 1).random())
    sources = list(SOURCE_WEIGHTS)
    weights = np.array([SOURCE_WEIGHTS[s] for s in sources])
    specs: list[TrackSpec] = []
    planned_s = 0.0
    while total_s - planned_s > 1e-6:
        index = len(specs)
        rng = _rng(seed, index, 0)
        source = sources[int(rng.choice(len(sources), p=weights / weights.sum()))]
        if rng.random() < SHORT_PROBABILITY:
            target_s = float(rng.uniform(*SHORT_DURATION_S))
        else:
            target_s = float(np.exp(rng.uniform(np.log(SHORT_DURATION_S[1]),
                                                 np.log(MAX_DURATION_S))))
        remaining = total_s - planned_s
        if target_s > remaining:
            if remaining < MIN_DURATION_S and specs:
                break
            target_s = max(remaining, MIN_DURATION_S)
        held_out = math.floor((index + 1) * test_fraction + phase) > math.floor(
            index * test_fraction + phase)
        specs.append(TrackSpec(index, source, "test" if held_out else "train",
                               round(target_s, 3), seed, test_fraction))
        planned_s += target_s
    return specs


def _check_settings(hours: float, seed: int, test_fraction: float) -> None:
    if not (math.isfinite(hours) and hours > 0):
        raise ValueError(f"--hours must be a positive number, got {hours}.")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}.")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"--test-fraction must lie in [0, 1), got {test_fraction}.")


# -- one track -------------------------------------------------------------------------


def build_track(spec: TrackSpec, output_dir: Path, tools: Toolchain) -> dict[str, Any]:
    """Build one track: draw a piece, perform, render, finish, and write
    ``<output_dir>/<split>/<id>.flac`` and ``.json`` (atomically, the sidecar last).

    Returns:
        The track's metadata (the sidecar's content).
    """
    rng = _rng(spec.seed, spec.index, 1)
    with tempfile.TemporaryDirectory(prefix="longplay-corpus-") as scratch:
        workdir = Path(scratch)
        piece, timed, tempo_factor = _draw_piece(spec, rng, tools, workdir)
        performance, plan = _perform(piece, timed, tempo_factor, spec, rng)
        midi_path = midi.write_midi(performance, workdir / "track.mid", tail_s=TAIL_S)
        rendered = render_midi(tools, midi_path, workdir / "track.wav")
    audio = finish_audio(rendered, cut_s=plan["cut_s"], fade_s=plan["fade_s"])  # [S, 2]
    if len(audio) < SAMPLE_RATE // 2:
        raise RuntimeError(f"track {spec.id} rendered to silence or almost nothing; the "
                           "sound font may lack the instruments it uses.")
    metadata = _metadata(spec, piece, plan, audio, tools)
    stem = output_dir / spec.relative_stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_audio(stem.with_suffix(".flac"), torch.from_numpy(np.ascontiguousarray(audio.T)),
               SAMPLE_RATE)
    with atomic_output_path(stem.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    return metadata


def _pool(spec: TrackSpec, collections: Sequence[Any]) -> list[tuple[Any, list[Piece]]]:
    """(collection, pieces of the track's split) for collections with such pieces."""
    catalog = load_catalog()
    pools = []
    for collection in collections:
        pieces = [p for p in catalog.get(collection.name, ())
                  if (piece_split_value(p.id) < spec.test_fraction) == (spec.split == "test")]
        if pieces:
            pools.append((collection, pieces))
    return pools


def _draw_piece(spec: TrackSpec, rng: np.random.Generator, tools: Toolchain,
                workdir: Path) -> tuple[SourcePiece, midi.Performance, float]:
    """Draw pieces of the track's source until one can be used, and time it.

    A piece so short that it would have to be played more than MAX_PLAYS times to fill
    the track is put back while draws remain (the longest such piece is kept as the
    fallback). At most MAX_ATTEMPTS pieces are drawn.

    Returns:
        (the piece, its performance at the track's tempo, the tempo factor applied).
    """
    failures: list[str] = []
    fallback: tuple[SourcePiece, midi.Performance, float] | None = None
    for _ in range(MAX_ATTEMPTS):
        try:
            piece = _load_one(spec, rng, tools, workdir)
        except PieceUnusableError as error:
            logger.debug("track %s: %s; drawing another piece", spec.id, error)
            failures.append(str(error))
            continue
        performance, factor = _timing(piece, spec, rng)
        if spec.source == "mma" or performance.duration_s * MAX_PLAYS >= spec.target_s:
            return piece, performance, factor
        if fallback is None or performance.duration_s > fallback[1].duration_s:
            fallback = (piece, performance, factor)
    if fallback is not None:
        return fallback
    raise RuntimeError(f"track {spec.id}: no usable {spec.source} piece in {MAX_ATTEMPTS} "
                       f"draws: {'; '.join(failures)}")


def _load_one(spec: TrackSpec, rng: np.random.Generator, tools: Toolchain,
              workdir: Path) -> SourcePiece:
    """One piece of the track's source: an MMA style, or a collection (by weight) and one
    of its pieces in the track's split."""
    if spec.source == "mma":
        styles = available_styles()
        if not styles:
            raise FileNotFoundError("no MMA style of the builder's list is installed; "
                                    "reinstall the Debian package mma.")
        style = styles[int(rng.integers(len(styles)))]
        return load_mma(style, rng, spec.target_s, tools, workdir)
    collections = SCORE_COLLECTIONS if spec.source == "music21" else ABC_COLLECTIONS
    pools = _pool(spec, collections)
    if not pools:  # a test fraction so small that no piece is held out
        pools = _pool(replace(spec, split="train", test_fraction=0.0), collections)
    weights = np.array([collection.weight for collection, _ in pools])
    collection, pieces = pools[int(rng.choice(len(pools), p=weights / weights.sum()))]
    piece = pieces[int(rng.integers(len(pieces)))]
    if spec.source == "music21":
        return load_score(piece, collection)
    return load_abc(piece, collection, tools, workdir)


def _timing(piece: SourcePiece, spec: TrackSpec, rng: np.random.Generator
            ) -> tuple[midi.Performance, float]:
    """The piece at its tempo: a tempo drawn from the piece's range when the source gave
    none, then (except for generated songs, whose tempo is already drawn) a random
    factor of 0.9-1.1."""
    performance = piece.performance
    if piece.beat_bpm_range is not None:
        quarter_bpm = float(rng.uniform(*piece.beat_bpm_range)) * beat_quarters(piece.meter)
        performance = midi.scale_tempo(performance, quarter_bpm / performance.quarter_bpm())
    factor = 1.0 if spec.source == "mma" else float(rng.uniform(0.9, 1.1))
    return midi.scale_tempo(performance, factor), factor


def _perform(piece: SourcePiece, performance: midi.Performance, tempo_factor: float,
             spec: TrackSpec, rng: np.random.Generator
             ) -> tuple[midi.Performance, dict[str, Any]]:
    """Transposition, length, ending, orchestration and mix of one timed piece."""
    meter = piece.meter
    generated = spec.source == "mma"
    transpose = 0 if generated else int(rng.integers(-3, 4))
    performance = midi.transpose(performance, transpose)
    if piece.family == "early" or spec.source == "music21":
        performance = _humanise(performance, rng)

    performance, length_plan = _fit_length(performance, spec.target_s, rng)
    if length_plan["cut_s"] is None and not generated and rng.random() < 0.5:
        slowdown = float(rng.uniform(1.15, 1.6))
        performance = midi.ritardando(performance, 2 * bar_quarters(meter), slowdown)
        length_plan["ritardando"] = round(slowdown, 3)

    programs, ensemble = _orchestrate(performance, piece, rng)
    performance = midi.set_programs(performance, programs)
    pan, reverb, chorus = _mix(performance, piece.roles, rng)
    performance = midi.set_mix(performance, pan, reverb, chorus)
    instruments = [program_name(programs[c]) for c in sorted(programs)]
    if DRUM_CHANNEL in piece.roles:
        instruments.append(DRUM_KIT_NAME)
    plan = {
        **length_plan,
        "transpose": transpose,
        "tempo_factor": round(tempo_factor, 4),
        "bpm": _tempo_label(performance.quarter_bpm() / beat_quarters(meter)),
        "instruments": list(dict.fromkeys(instruments)),
        "ensemble": ensemble,
        "mix": {"pan": {str(c): v for c, v in sorted(pan.items())},
                "reverb": {str(c): v for c, v in sorted(reverb.items())},
                "chorus": {str(c): v for c, v in sorted(chorus.items())}},
    }
    return performance, plan


def _tempo_label(beat_bpm: float) -> int:
    """Beats per minute as a label, folded into [50, 200) by octaves, as beat trackers
    and DJs count (a reel notated in 4/4 at 240 quarters a minute is "120 BPM")."""
    while beat_bpm >= 200:
        beat_bpm /= 2
    while beat_bpm < 50:
        beat_bpm *= 2
    return round(beat_bpm)


def _humanise(performance: midi.Performance, rng: np.random.Generator) -> midi.Performance:
    """Vary each note's velocity a little, as a player would."""
    jitter = rng.integers(-6, 7, size=len(performance.notes))
    notes = tuple(replace(n, velocity=int(np.clip(n.velocity + j, 1, 127)))
                  for n, j in zip(performance.notes, jitter, strict=True))
    return replace(performance, notes=notes)


def _fit_length(performance: midi.Performance, target_s: float, rng: np.random.Generator
                ) -> tuple[midi.Performance, dict[str, Any]]:
    """Loop or crop the performance to the target duration.

    Whole plays (one, or repetitions each starting on a bar line) within
    NATURAL_TOLERANCE of the target end naturally; otherwise the piece is looped past
    the target and cut there with a fade-out of 1.5-5 s (at most a third of the track).
    """
    numerator, denominator = performance.meter
    bar_ticks = max(1, round(numerator * 4 / denominator * performance.ticks_per_quarter))
    period = math.ceil(performance.end_tick / bar_ticks) * bar_ticks
    play_s = performance.duration_s
    period_s = performance.seconds_at(period)
    times = max(1, round((target_s - play_s) / period_s) + 1)
    natural_s = (times - 1) * period_s + play_s
    plan: dict[str, Any] = {"plays": times, "cut_s": None, "fade_s": 0.0,
                            "ending": "natural"}
    if abs(natural_s - target_s) > NATURAL_TOLERANCE * target_s:
        times = max(1, math.ceil((target_s - play_s) / period_s) + 1)
        plan.update(plays=times, cut_s=target_s, ending="fade",
                    fade_s=round(min(float(rng.uniform(1.5, 5.0)), target_s / 3), 3))
    if times > 1:
        performance = midi.loop(performance, times, period)
    if plan["cut_s"] is not None:
        performance = midi.crop(performance, performance.tick_at(target_s + 0.5))
    return performance, plan


def _choice(options: Sequence[int], rng: np.random.Generator) -> int:
    return int(options[int(rng.integers(len(options)))])


def _orchestrate(performance: midi.Performance, piece: SourcePiece,
                 rng: np.random.Generator) -> tuple[dict[int, int], str]:
    """General MIDI programs for the channels, and the ensemble's name."""
    stats = midi.channel_stats(performance)
    programs: dict[int, int] = {}
    if piece.family is None:
        # An accompaniment style chose its programs; swap some for related ones.
        current = {c.channel: c.value for c in reversed(performance.controls)
                   if c.kind == "program"}
        for channel in stats:
            if channel == DRUM_CHANNEL:
                continue
            program = current.get(channel, 0)
            group = next((g for g in SUBSTITUTE_GROUPS if program in g), None)
            if group is not None and rng.random() < 0.5:
                program = _choice(group, rng)
            programs[channel] = program
        return programs, "style band"
    ensembles = ENSEMBLES[piece.family]
    weights = np.array([e.weight for e in ensembles])
    ensemble: Ensemble = ensembles[int(rng.choice(len(ensembles), p=weights / weights.sum()))]
    voices = sorted((c for c, role in piece.roles.items() if role == "voice" and c in stats),
                    key=lambda c: (-stats[c].mean_pitch, c))
    slots = ensemble.voices
    for i, channel in enumerate(voices):
        slot = round(i * (len(slots) - 1) / (len(voices) - 1)) if len(voices) > 1 else 0
        programs[channel] = _choice(slots[slot], rng)
    keyboard = _choice(ensemble.keyboard, rng)
    chords, bass = _choice(ensemble.chords, rng), _choice(ensemble.bass, rng)
    for channel, role in piece.roles.items():
        if channel in stats and channel != DRUM_CHANNEL:
            if role == "keyboard":
                programs[channel] = keyboard
            elif role == "chords":
                programs[channel] = chords
            elif role == "bass":
                programs[channel] = bass
    return programs, ensemble.name


def _mix(performance: midi.Performance, roles: Mapping[int, str], rng: np.random.Generator
         ) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """Pan (CC10) spread over a drawn stereo width, bass and drums in the middle; one
    reverb (CC91) and chorus (CC93) amount per track with small per-channel changes."""
    channels = sorted(midi.channel_stats(performance))
    spread = [c for c in channels if roles.get(c) not in ("bass", "drums")]
    width = float(rng.uniform(0.2, 0.85))
    positions = np.linspace(-width, width, len(spread)) if len(spread) > 1 else np.zeros(1)
    order = rng.permutation(len(spread))
    pan = {c: 64 for c in channels}
    for channel, k in zip(spread, order, strict=False):
        position = positions[k] + rng.uniform(-0.05, 0.05)
        pan[channel] = int(np.clip(round(64 + 63 * position), 0, 127))
    room, shimmer = float(rng.uniform(15, 90)), float(rng.uniform(0, 30))
    reverb = {c: int(np.clip(round(room + rng.uniform(-8, 8)), 0, 127)) for c in channels}
    chorus = {c: int(np.clip(round(shimmer + rng.uniform(-5, 5)), 0, 127)) for c in channels}
    return pan, reverb, chorus


def _metadata(spec: TrackSpec, piece: SourcePiece, plan: Mapping[str, Any], audio: np.ndarray,
              tools: Toolchain) -> dict[str, Any]:
    """The sidecar: the descriptive fields PromptBuilder reads (title, composer, genre,
    style, instruments, bpm, key, meter), then provenance and how the track was made."""
    key = transpose_key(piece.key, plan["transpose"]) if piece.key else None
    return {
        "title": piece.title,
        "composer": piece.composer or None,
        "genre": piece.genre,
        "style": piece.style,
        "instruments": plan["instruments"],
        "bpm": plan["bpm"],
        "key": key,
        "meter": piece.meter,
        "duration_s": round(len(audio) / SAMPLE_RATE, 3),
        "num_samples": len(audio),
        "sample_rate": SAMPLE_RATE,
        "source": spec.source,
        "collection": piece.collection,
        "origin": piece.details.get("origin"),
        "file": piece.path or None,
        "piece": piece.details.get("piece"),
        "licence": piece.licence,
        "split": spec.split,
        "seed": spec.seed,
        "id": spec.id,
        "target_s": spec.target_s,
        "ending": plan["ending"],
        "plays": plan["plays"],
        "ritardando": plan.get("ritardando"),
        "transpose": plan["transpose"],
        "tempo_factor": plan["tempo_factor"],
        "ensemble": plan["ensemble"],
        "mix": plan["mix"],
        "soundfont": tools.soundfont_name,
        "soundfont_licence": tools.soundfont_licence,
        "details": {k: v for k, v in piece.details.items() if k not in ("origin", "piece")},
        "build_key": spec.build_key(tools),
    }


# -- the corpus ------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusSummary:
    """What a build produced.

    Attributes:
        output_dir: the corpus folder.
        num_tracks: tracks in the corpus (built now or before).
        num_built: tracks built by this run.
        num_reused: finished tracks of an earlier run that were kept.
        duration_s: total audio duration.
        by_source, by_genre, by_split, by_collection: track counts.
    """

    output_dir: Path
    num_tracks: int
    num_built: int
    num_reused: int
    duration_s: float
    by_source: Mapping[str, int]
    by_genre: Mapping[str, int]
    by_split: Mapping[str, int]
    by_collection: Mapping[str, int]

    @property
    def hours(self) -> float:
        return self.duration_s / 3600.0

    def __str__(self) -> str:
        def counts(values: Mapping[str, int]) -> str:
            return ", ".join(f"{name} {n}" for name, n in sorted(values.items(),
                                                                 key=lambda kv: (-kv[1], kv[0])))

        return "\n".join([
            f"corpus in {self.output_dir}: {self.num_tracks} tracks, {self.hours:.3f} h "
            f"({self.num_built} built, {self.num_reused} already there)",
            f"  splits: {counts(self.by_split)}",
            f"  sources: {counts(self.by_source)}",
            f"  genres: {counts(self.by_genre)}",
        ])


def _finished(spec: TrackSpec, output_dir: Path, tools: Toolchain) -> dict[str, Any] | None:
    """The sidecar of a finished track with the right build key, else None."""
    stem = output_dir / spec.relative_stem
    sidecar, audio = stem.with_suffix(".json"), stem.with_suffix(".flac")
    if not (sidecar.is_file() and audio.is_file()):
        return None
    try:
        metadata = json.loads(sidecar.read_text(encoding="utf-8"))
        frames = sf.info(str(audio)).frames
    except (OSError, ValueError, RuntimeError):
        return None
    if metadata.get("build_key") != spec.build_key(tools) or frames != metadata.get(
            "num_samples"):
        return None
    return metadata


def build_corpus(
    output_dir: str | os.PathLike[str],
    *,
    hours: float,
    seed: int,
    soundfont: str | os.PathLike[str] | None = None,
    workers: int = 1,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    progress: Callable[[int, int], None] | None = None,
    tools: Toolchain | None = None,
) -> CorpusSummary:
    """Build (or finish building) a corpus of about ``hours`` hours in ``output_dir``.

    Args:
        output_dir: the corpus folder (created if missing).
        hours: total duration to build.
        seed: the corpus seed (>= 0).
        soundfont: sound font name ("FluidR3_GM", the default, or "TimGM6mb") or path.
        workers: processes building tracks in parallel.
        test_fraction: fraction of tracks held out as "test".
        progress: called with (finished tracks, all tracks) as tracks finish.
        tools: a toolchain found beforehand (default: :func:`find_toolchain`).

    Returns:
        A summary of the corpus.

    Raises:
        CorpusToolError: a program, sound font or package is missing (before any work).
        ValueError: an argument is out of range.
    """
    _check_settings(hours, seed, test_fraction)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}.")
    tools = tools if tools is not None else find_toolchain(soundfont)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    specs = plan_corpus(hours, seed, test_fraction)
    records: dict[int, dict[str, Any]] = {}
    todo = []
    for spec in specs:
        finished = _finished(spec, output_dir, tools)
        if finished is None:
            todo.append(spec)
        else:
            records[spec.index] = finished
    num_reused = len(records)
    logger.info("corpus plan: %d tracks, %d already built, %d to build with %d worker(s)",
                len(specs), num_reused, len(todo), workers)

    def report(num_built: int) -> None:
        if progress is not None:
            progress(num_reused + num_built, len(specs))

    report(0)
    if workers == 1 or len(todo) <= 1:
        for built, spec in enumerate(todo, start=1):
            records[spec.index] = build_track(spec, output_dir, tools)
            report(built)
    else:
        records.update(_build_parallel(todo, output_dir, tools, workers, report))
    ordered = [records[spec.index] for spec in specs]
    _warn_stale(output_dir, specs)
    summary = CorpusSummary(
        output_dir=output_dir, num_tracks=len(ordered), num_built=len(todo),
        num_reused=num_reused, duration_s=sum(r["duration_s"] for r in ordered),
        by_source=dict(Counter(r["source"] for r in ordered)),
        by_genre=dict(Counter(r["genre"] for r in ordered)),
        by_split=dict(Counter(r["split"] for r in ordered)),
        by_collection=dict(Counter(r["collection"] for r in ordered)))
    _write_manifest(output_dir, specs, ordered, summary, tools, hours)
    _write_licences(output_dir, ordered, tools)
    return summary


def _build_parallel(todo: list[TrackSpec], output_dir: Path, tools: Toolchain, workers: int,
                    progress: Callable[[int], None]) -> dict[int, dict[str, Any]]:
    """Build tracks in ``workers`` fresh processes (spawned: nothing of this process's
    state, e.g. torch's threads, is inherited); the first failure stops the build."""
    records: dict[int, dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
        futures = {pool.submit(build_track, spec, output_dir, tools): spec for spec in todo}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                records[futures[future].index] = future.result()
            progress(len(records))
    return records


def _warn_stale(output_dir: Path, specs: Sequence[TrackSpec]) -> None:
    planned = {spec.relative_stem for spec in specs}
    stale = sorted(path for split in ("train", "test") for path in
                   (output_dir / split).glob("*.flac")
                   if f"{split}/{path.stem}" not in planned)
    if stale:
        logger.warning("%d track(s) in %s are not part of this corpus's plan (left from a "
                       "build with other settings), e.g. %s; delete them before training.",
                       len(stale), output_dir, stale[0])


def _write_manifest(output_dir: Path, specs: Sequence[TrackSpec],
                    records: Sequence[Mapping[str, Any]], summary: CorpusSummary,
                    tools: Toolchain, hours: float) -> None:
    manifest = {
        "format": "longplay-corpus",
        "version": BUILDER_VERSION,
        "hours": hours,
        "seed": specs[0].seed,
        "test_fraction": specs[0].test_fraction,
        "soundfont": str(tools.soundfont),
        "tools": dict(tools.versions),
        "num_tracks": summary.num_tracks,
        "duration_s": round(summary.duration_s, 3),
        "by_source": summary.by_source,
        "by_genre": summary.by_genre,
        "by_split": summary.by_split,
        "tracks": [{"id": r["id"], "file": f"{r['split']}/{r['id']}.flac",
                    "split": r["split"], "source": r["source"],
                    "collection": r["collection"], "genre": r["genre"],
                    "duration_s": r["duration_s"]} for r in records],
    }
    with atomic_output_path(output_dir / "corpus.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                       encoding="utf-8")


def _write_licences(output_dir: Path, records: Sequence[Mapping[str, Any]],
                    tools: Toolchain) -> None:
    with atomic_output_path(output_dir / "LICENSES.md") as tmp:
        tmp.write_text(licence_summary(records, tools), encoding="utf-8")


def licence_summary(records: Sequence[Mapping[str, Any]], tools: Toolchain) -> str:
    """LICENSES.md: the licence of every source the tracks come from, the tools, and the
    collections and files left out with the reason."""
    counts = Counter(r["collection"] for r in records)
    lines = [
        "# Licences of this corpus",
        "",
        "Built by `longplay data build-corpus` from scores and generators installed from "
        "package registries. Every track's `.json` sidecar names its licence in the field "
        "`licence`; this file summarises them.",
        "",
        "## Sources used",
        "",
        "| source | collection | tracks | licence |",
        "|---|---|---:|---|",
    ]
    for collection in SCORE_COLLECTIONS:
        lines.append(f"| music21 corpus (MusicXML/Humdrum, music21 "
                     f"{dict(tools.versions)['music21']}) | {collection.name}: "
                     f"{collection.title} | {counts.get(collection.name, 0)} | "
                     f"{collection.licence} |")
    for abc_collection in ABC_COLLECTIONS:
        lines.append(f"| music21 corpus, ABC via abc2midi | {abc_collection.name}: "
                     f"{abc_collection.title} | {counts.get(abc_collection.name, 0)} | "
                     f"{abc_collection.licence} |")
    for style in MMA_STYLES:
        if counts.get(style.file):
            lines.append(f"| MMA accompaniment style | {style.file}: {style.style} songs over "
                         f"generated chord progressions | {counts[style.file]} | "
                         f"{MMA_LICENCE} |")
    lines += [
        "",
        "## Tools and sound font",
        "",
        f"- Sound font: {tools.soundfont} ({tools.soundfont_licence}).",
        "- fluidsynth (LGPL-2.1-or-later), abcmidi (GPL-2.0-or-later), mma "
        "(GPL-2.0-or-later), music21 (BSD-3-Clause), mido (MIT): Debian and PyPI packages.",
        "- Versions: " + "; ".join(f"{name} {version}" for name, version in tools.versions),
        "",
        "## Left out",
        "",
        "music21 ships its corpus under umbrella terms and asks users to respect the "
        "licences embedded in directories and files; these were left out:",
        "",
    ]
    lines += [f"- `{name}`: {reason}." for name, reason in SKIPPED_COLLECTIONS.items()]
    lines += [f"- `{name}` (not a licence matter): {reason}."
              for name, reason in EXCLUDED_COLLECTIONS.items()]
    lines += [f"- file `{path}`: {reason}." for path, reason in SKIPPED_FILES.items()]
    return "\n".join(lines) + "\n"

"""Scores of the music21 corpus (MusicXML, Humdrum) turned into MIDI performances.

music21 parses the score; the notes are then written out here rather than with
music21's own MIDI export, which is slow on long movements and fails on some repeat
structures. Each part becomes one MIDI channel; ties are joined, grace notes and
chord symbols are left out, repeats are played once, dynamics set the velocity.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from longplay.data.corpus.catalog import (
    Piece,
    ScoreCollection,
    music21_corpus_dir,
    read_score_text,
    restrictive_notice,
)
from longplay.data.corpus.gm import DRUM_CHANNEL
from longplay.data.corpus.midi import Note, Performance, channel_stats
from longplay.data.corpus.pieces import PieceUnusableError, SourcePiece
from longplay.data.corpus.theory import MODES, estimate_key, key_name

__all__ = ["TICKS_PER_QUARTER", "load_score"]

TICKS_PER_QUARTER = 480

DYNAMIC_VELOCITY = {"pppp": 20, "ppp": 30, "pp": 42, "p": 55, "mp": 68, "mf": 80, "f": 95,
                    "ff": 108, "fff": 118, "ffff": 124, "sf": 105, "sfz": 108, "fp": 95}
DEFAULT_VELOCITY = 80
MIN_QUARTER_BPM, MAX_QUARTER_BPM = 30.0, 260.0
"""Metronome marks outside this range are taken for encoding errors and ignored."""

_KEYBOARD_NAME = re.compile(
    r"piano|klavier|clavier|organ|orgel|harpsichord|cembalo|keyboard|continuo", re.IGNORECASE)
_KEYBOARD_FAMILIES = ("keyboard", "ragtime", "baroque keyboard")


def load_score(piece: Piece, collection: ScoreCollection) -> SourcePiece:
    """Parse a score of the music21 corpus into a performance with its metadata.

    Raises:
        PieceUnusableError: the file carries a restrictive notice, music21 cannot parse
            it, or it holds no notes.
    """
    import music21

    path = music21_corpus_dir() / piece.path
    notice = restrictive_notice(read_score_text(path))
    if notice is not None:
        raise PieceUnusableError(f"{piece.path}: restrictive notice {notice!r}")
    try:
        with warnings.catch_warnings():
            # Encoding quirks ("measure 1 is overfull") are music21's to fix, not the user's.
            warnings.simplefilter("ignore")
            # Parsed from the file every time, and no pickle left in music21's scratch folder.
            parsed = music21.converter.parse(str(path), forceSource=True, storePickle=False)
    except Exception as error:  # music21 raises many types for malformed input
        raise PieceUnusableError(f"{piece.path}: music21 cannot parse it ({error})") from error
    if isinstance(parsed, music21.stream.Opus):
        parsed = parsed.scores[0]
    parts = list(parsed.parts) or [parsed]
    channels = [c for c in range(16) if c != DRUM_CHANNEL]
    notes: list[Note] = []
    names: dict[int, str] = {}
    histogram = np.zeros(12)
    for index, part in enumerate(parts):
        channel = channels[index % len(channels)]
        instrument = part.getInstrument(returnDefault=False)
        # The part's own name; MuseScore files call every part's instrument "Piano".
        names[channel] = (part.partName or getattr(instrument, "instrumentName", "")
                          or "")
        notes += _part_notes(part, channel, index, histogram, music21)
    if not notes:
        raise PieceUnusableError(f"{piece.path}: the score holds no notes")

    flat = parsed.flatten()
    tempos = {}
    for mark in flat.getElementsByClass(music21.tempo.MetronomeMark):
        bpm = mark.getQuarterBPM()
        if bpm is not None and MIN_QUARTER_BPM <= bpm <= MAX_QUARTER_BPM:
            tempos.setdefault(_ticks(mark.offset), round(60e6 / bpm))
    if 0 not in tempos:
        tempos = {}  # no tempo for the opening: the collection's range decides
    first_part = parts[0].flatten()
    meters = [(_ticks(ts.offset), ts.numerator, ts.denominator)
              for ts in first_part.getElementsByClass(music21.meter.TimeSignature)]
    performance = Performance.build(TICKS_PER_QUARTER, notes, (), tempos.items(), meters)
    meter = "{}/{}".format(*performance.meter)

    signatures = list(first_part.getElementsByClass(music21.key.KeySignature))
    key = _key(signatures[0] if signatures else None, histogram, music21)

    genre, style, family = collection.labels(piece.path)
    metadata = parsed.metadata
    return SourcePiece(
        performance=performance,
        title=_title(metadata, piece.path, collection, style),
        composer=_composer(metadata, collection.composer),
        genre=genre, style=style, key=key, meter=meter,
        licence=_licence(metadata, collection.licence),
        collection=collection.name, path=piece.path,
        roles=_roles(performance, names, family),
        family=family,
        beat_bpm_range=None if tempos else collection.beat_bpm,
        details={"piece": piece.id},
    )


def _ticks(quarters) -> int:
    return round(float(quarters) * TICKS_PER_QUARTER)


def _part_notes(part, channel: int, track: int, histogram: np.ndarray, music21) -> list[Note]:
    """The notes of one part, ties joined; adds their durations to the pitch-class
    histogram."""
    notes: list[Note] = []
    open_ties: dict[int, int] = {}  # pitch -> index in notes of the note it continues
    velocity = DEFAULT_VELOCITY
    wanted = (music21.note.Note, music21.chord.Chord, music21.dynamics.Dynamic)
    for element in part.flatten().getElementsByClass(wanted):
        if isinstance(element, music21.dynamics.Dynamic):
            velocity = DYNAMIC_VELOCITY.get(str(element.value), velocity)
            continue
        if isinstance(element, music21.harmony.Harmony) or element.duration.isGrace:
            continue
        start = _ticks(element.offset)
        end = start + _ticks(element.quarterLength)
        if end <= start:
            continue
        members = element.notes if isinstance(element, music21.chord.Chord) else (element,)
        for member in members:
            pitch = member.pitch.midi
            if not 0 <= pitch <= 127:
                continue
            tie = member.tie if member.tie is not None else element.tie
            tie_type = tie.type if tie is not None else None
            histogram[pitch % 12] += end - start
            if tie_type in ("continue", "stop") and pitch in open_ties:
                index = open_ties[pitch]
                notes[index] = Note(notes[index].start, end, channel, pitch,
                                    notes[index].velocity, track)
                if tie_type == "stop":
                    del open_ties[pitch]
                continue
            notes.append(Note(start, end, channel, pitch, velocity, track))
            if tie_type == "start":
                open_ties[pitch] = len(notes) - 1
            else:
                open_ties.pop(pitch, None)
    return notes


def _key(signature, histogram: np.ndarray, music21) -> str:
    """The key: a key object's tonic and mode, else the Krumhansl-Schmuckler estimate
    within the key signature (or among all keys without one)."""
    if isinstance(signature, music21.key.Key) and signature.mode in MODES:
        return key_name(signature.tonic.pitchClass, signature.mode)
    sharps = signature.sharps if signature is not None else None
    tonic, mode = estimate_key(histogram, sharps)
    return key_name(tonic, mode)


def _roles(performance: Performance, names: dict[int, str], family: str) -> dict[int, str]:
    """Keyboard parts (by family or part name; in songs, else the chordal parts, else the
    last part) and melodic voices."""
    stats = channel_stats(performance)
    if family in _KEYBOARD_FAMILIES:
        return dict.fromkeys(stats, "keyboard")
    keyboard = {c for c in stats if _KEYBOARD_NAME.search(names.get(c, ""))}
    if family == "song" and not keyboard:
        keyboard = {c for c, s in stats.items() if s.max_polyphony >= 3}
        if not keyboard and len(stats) > 1:
            keyboard = {max(stats)}
    return {c: "keyboard" if c in keyboard else "voice" for c in stats}


def _title(metadata, path: str, collection: ScoreCollection, style: str) -> str:
    """The collection's work title, the path in words, or the score's own title."""
    if collection.work_title:
        movement = re.search(r"movement(\d+)", path)
        return collection.work_title + (f", no. {movement.group(1)}" if movement else "")
    if not collection.titles_from_paths:
        for candidate in (getattr(metadata, "title", None),
                          getattr(metadata, "movementName", None)):
            text = str(candidate or "").strip()
            if text and not re.search(r"\.(mxl|xml|musicxml|krn)$", text):
                # "12. Lugentum siccentur", "48 (139). Cara mi donna": drop edition numbers
                return re.sub(r"^\d+\s*(\(\d+\))?\.\s*", "", text)
    return _title_from_path(path, style)


def _title_from_path(path: str, style: str) -> str:
    """"bach/bwv66.6.mxl" -> "Chorale BWV 66.6"; "beethoven/opus59no1/movement1.mxl" ->
    "String quartet Op. 59 No. 1, movement 1"; otherwise the file name in words."""
    relative = Path(path)
    stem = relative.stem
    bwv = re.fullmatch(r"bwv(\d+(?:\.\d+)?)(.*)", stem)
    if bwv:
        return f"Chorale BWV {bwv.group(1)}{bwv.group(2)}"
    words = []
    for part in [*relative.parent.parts[1:], stem]:
        opus = re.fullmatch(r"(?:opus|polonaise_op)(\d+)(?:no|n)?(\d+)?", part)
        kochel = re.fullmatch(r"k(\d+)", part)
        movement = re.fullmatch(r"movement(\d+)(?:_(\w+))?", part)
        if opus:
            number = f" No. {opus.group(2)}" if opus.group(2) else ""
            words.append(f"Op. {opus.group(1)}{number}")
        elif kochel:
            words.append(f"K. {kochel.group(1)}")
        elif movement:
            words.append(f"movement {movement.group(1)}"
                         + (f" ({movement.group(2)})" if movement.group(2) else ""))
        else:
            words.append(re.sub(r"^PMFC_[\d_]+-", "", part).replace("_", " ").strip())
    title = ", ".join(words)
    if title.startswith(("Op.", "K.")):
        title = f"{style[:1].upper()}{style[1:]} {title}"
    return title


def _composer(metadata, default: str) -> str:
    """The collection's composer, or (for collections of many composers) the score's,
    first line, without dates."""
    if default:
        return default
    text = str(getattr(metadata, "composer", None) or "").strip().splitlines()
    name = re.sub(r"\s*\(.*?\)\s*", " ", text[0]).strip() if text else ""
    if not name or name.lower() in ("music21", "unknown"):
        return "anonymous"
    if name.count(",") == 1:  # "Chopin, Frederic" -> "Frederic Chopin"
        last, first = (part.strip() for part in name.split(","))
        name = f"{first} {last}"
    return name


def _licence(metadata, default: str) -> str:
    rights = str(getattr(metadata, "copyright", None) or "").strip()
    if rights and re.search(r"CC|creative commons|public domain|licen", rights, re.IGNORECASE):
        return f"{default}; the score states: {rights}"
    return default

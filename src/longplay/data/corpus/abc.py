"""ABC tunes of the music21 corpus converted to MIDI with abc2midi.

Each tune is written to its own file (with the tune book's ``%%`` directives) and
converted by ``abc2midi``; tunes that are the voices of one piece (the Josquin
chansons) are converted one by one and played together on separate channels. The
header fields give the metadata: title (T), composer (C), rhythm (R, else the title,
else the meter), meter (M), key (K) and tempo (Q, else a range for the rhythm).
"""

from __future__ import annotations

import re
from pathlib import Path

from longplay.data.corpus.catalog import (
    AbcCollection,
    AbcTune,
    Piece,
    abc_tunes,
    music21_corpus_dir,
    restrictive_notice,
)
from longplay.data.corpus.gm import DRUM_CHANNEL
from longplay.data.corpus.midi import Control, Note, Performance, channel_stats, read_midi
from longplay.data.corpus.pieces import PieceUnusableError, SourcePiece
from longplay.data.corpus.theory import bar_quarters, beat_quarters, key_name, parse_key
from longplay.data.corpus.tools import CorpusToolError, Toolchain, run_tool

__all__ = ["RHYTHM_BARS_PER_MINUTE", "load_abc", "tune_rhythm"]

RHYTHM_BARS_PER_MINUTE: dict[str, tuple[float, float]] = {
    "reel": (50, 60), "hornpipe": (38, 46), "jig": (54, 64), "double jig": (54, 64),
    "single jig": (56, 66), "slip jig": (38, 44), "slide": (40, 46),
    "strathspey": (30, 38), "highland fling": (32, 40), "fling": (32, 40),
    "polka": (60, 72), "march": (54, 62), "quickstep": (58, 66), "clog": (36, 44),
    "waltz": (48, 62), "schottische": (34, 40), "walkaround": (40, 50),
    "country dance": (48, 58), "minuet": (36, 44), "gavotte": (36, 44),
}
"""Dance tempi in bars per minute, which does not depend on how a tune is notated (a
reel in 2/4 with sixteenths or in 4/4 with eighths)."""

SLOW_BEAT_BPM = (52.0, 72.0)
MODERATE_BEAT_BPM = (72.0, 100.0)
LIVELY_BEAT_BPM = (100.0, 132.0)

_NOT_A_COMPOSER = re.compile(
    r"collected|o'neill|^trad|^anon|unknown|^(irish|scotch|scottish|english|welsh|west india"
    r"|highland|an? old|old|a highland|as sung|as performed|n\.g)\b", re.IGNORECASE)
"""C: fields that name a collector, a nation or a kind of tune rather than a composer."""

_RHYTHM_WORDS = [*sorted(RHYTHM_BARS_PER_MINUTE, key=len, reverse=True), "air", "song"]


def tune_rhythm(tune: AbcTune, meter: str, dance_meters: bool = True) -> str:
    """The tune's rhythm: its R: field, else a rhythm named in its title, else (in dance
    tune books, ``dance_meters``) the one a compound meter implies (6/8: jig), else ""."""
    text = tune.field("R").strip().lower()
    text = {"slipjig": "slip jig", "reels": "reel", "jigs": "jig"}.get(text, text)
    if text:
        return text
    title = " ".join(tune.all("T")).lower()
    for word in _RHYTHM_WORDS:
        if re.search(rf"\b{word}s?\b", title):
            return word
    if not dance_meters:
        return ""
    return {"6/8": "jig", "9/8": "slip jig", "12/8": "slide"}.get(meter, "")


def _meter(field: str, performance: Performance) -> str:
    text = field.strip()
    if text in ("C", ""):
        return "4/4" if text else "{}/{}".format(*performance.meter)
    if text == "C|":
        return "2/2"
    match = re.match(r"(\d+)\s*/\s*(\d+)", text)
    return f"{match.group(1)}/{match.group(2)}" if match else "{}/{}".format(*performance.meter)


def _beat_bpm_range(rhythm: str, meter: str, notes: str) -> tuple[float, float]:
    """A tempo range for a tune without Q: field, in beats per minute."""
    if rhythm in RHYTHM_BARS_PER_MINUTE:
        low, high = RHYTHM_BARS_PER_MINUTE[rhythm]
        beats_per_bar = bar_quarters(meter) / beat_quarters(meter)
        return low * beats_per_bar, high * beats_per_bar
    words = notes.lower()
    if rhythm == "air" or re.search(r"slow|plaintive|tenderly|with expression", words):
        return SLOW_BEAT_BPM
    if re.search(r"lively|quick|fast|spirited|brisk", words):
        return LIVELY_BEAT_BPM
    return MODERATE_BEAT_BPM


def _clean_title(text: str) -> str:
    """"Miners of Wicklow, The" -> "The Miners of Wicklow"; "7th Regiment -- Reel" ->
    "7th Regiment Reel"."""
    text = re.sub(r"\s+--\s+", " ", text).strip().rstrip(".")
    article = re.fullmatch(r"(.*?)[.\s]*,\s*(The|A|An)", text)
    if article:
        text = f"{article.group(2)} {article.group(1)}"
    if text.isupper():
        text = text.title().replace("'S ", "'s ")
    return text or "untitled"


def _clean_composer(text: str, default: str) -> str:
    """A C: field as a composer; collectors' notes ("collected by ...") and "trad." give
    the collection's default."""
    text = re.sub(r"^by\s+", "", text.strip().strip('"').strip().rstrip("."),
                  flags=re.IGNORECASE)
    if not text or _NOT_A_COMPOSER.search(text):
        return default
    return text.title() if text.isupper() else text


def load_abc(piece: Piece, collection: AbcCollection, tools: Toolchain,
             workdir: Path) -> SourcePiece:
    """Convert the tunes of ``piece`` with abc2midi into one performance.

    Raises:
        PieceUnusableError: a restrictive notice, or abc2midi writes no notes.
        CorpusToolError: abc2midi could not be run.
    """
    path = music21_corpus_dir() / piece.path
    header, tunes = abc_tunes(path.read_text(encoding="utf-8", errors="replace"))
    selected = [tunes[ordinal] for ordinal in piece.tunes]
    notice = restrictive_notice(header + "\n".join(tune.text for tune in selected))
    if notice is not None:
        raise PieceUnusableError(f"{piece.id}: restrictive notice {notice!r}")

    voices = []
    for index, tune in enumerate(selected):
        source = workdir / f"tune{index}.abc"
        target = workdir / f"tune{index}.mid"
        source.write_text(f"{header}\n{tune.text}" if header else tune.text, encoding="utf-8")
        try:
            # Text in quotes is read as guitar chords, except in polyphony, whose files
            # use quotes for rehearsal letters.
            options = ["-NGUI"] if collection.voices_as_tunes else []
            run_tool([tools.abc2midi, source.name, "-o", target.name, "-silent", *options],
                     what=f"abc2midi on {piece.id}", cwd=workdir)
        except CorpusToolError as error:
            raise PieceUnusableError(str(error)) from error
        if not target.is_file():
            raise PieceUnusableError(f"{piece.id}: abc2midi wrote no MIDI file")
        voices.append(read_midi(target))
    performance = _play_together(voices)
    if not performance.notes:
        raise PieceUnusableError(f"{piece.id}: abc2midi wrote no notes")

    first = selected[0]
    meter = _meter(first.field("M"), performance)
    rhythm = tune_rhythm(first, meter, collection.dance_meters)
    parsed_key = parse_key(first.field("K"))
    has_tempo = bool(re.search(r"\d", first.field("Q")))  # "Q:\"Allegro\"" gives no number
    return SourcePiece(
        performance=performance,
        title=_clean_title(first.field("T")),
        composer=_clean_composer(first.field("C"), collection.composer),
        genre=collection.genre,
        style=rhythm or collection.style,
        key=key_name(*parsed_key) if parsed_key else None,
        meter=meter,
        licence=collection.licence,
        collection=collection.name,
        path=piece.path,
        roles=_roles(performance),
        family=collection.family,
        beat_bpm_range=None if has_tempo else (collection.beat_bpm or _beat_bpm_range(
            rhythm, meter, " ".join(first.all("N")))),
        details={"piece": piece.id, "origin": collection.origin},
    )


def _play_together(voices: list[Performance]) -> Performance:
    """Voices converted separately, on distinct channels; the first sets tempo and meter."""
    if len(voices) == 1:
        return voices[0]
    free = [c for c in range(16) if c != DRUM_CHANNEL]
    notes, controls = [], []
    resolution = voices[0].ticks_per_quarter
    used = 0
    for index, voice in enumerate(voices):
        scale = resolution / voice.ticks_per_quarter
        mapping = {}
        for channel in sorted({n.channel for n in voice.notes}):
            mapping[channel] = free[used % len(free)]
            used += 1
        notes += [Note(round(n.start * scale), round(n.end * scale), mapping[n.channel],
                       n.pitch, n.velocity, index) for n in voice.notes]
        controls += [Control(round(c.tick * scale), mapping[c.channel], c.kind, c.number,
                             c.value) for c in voice.controls if c.channel in mapping]
    return Performance.build(resolution, notes, controls, voices[0].tempos,
                             voices[0].time_signatures)


def _roles(performance: Performance) -> dict[int, str]:
    """abc2midi writes each melody voice on a track of its own and the guitar chords on
    one track with two channels, a bass line and the chords: the busier of the two plays
    chords, the other the bass. Every other channel is a melody voice."""
    stats = channel_stats(performance)
    by_track: dict[int, list[int]] = {}
    for channel, s in stats.items():
        for track in s.tracks:
            by_track.setdefault(track, []).append(channel)
    roles = dict.fromkeys(stats, "voice")
    for channels in by_track.values():
        if len(channels) == 2 and all(len(stats[c].tracks) == 1 for c in channels):
            chords, bass = sorted(channels, key=lambda c: (-stats[c].max_polyphony,
                                                           -stats[c].mean_pitch))
            roles[chords], roles[bass] = "chords", "bass"
    return roles

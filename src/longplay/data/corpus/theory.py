"""Keys, meters and tempi as the corpus metadata writes them.

Keys are written "F# minor", "Bb major", "D dorian"; meters "6/8"; tempi in beats per
minute, where the beat is the denominator's note value in simple meters (quarter in
4/4, half in 2/2) and the dotted note in compound meters (dotted quarter in 6/8).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

__all__ = [
    "MODES",
    "bar_quarters",
    "beat_quarters",
    "estimate_key",
    "key_name",
    "parse_key",
    "pitch_class",
    "spell",
    "transpose_key",
]

_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
# Conventional tonic spellings: majors prefer flats (Db, Ab), minors sharps (C#, G#).
_MAJOR_TONICS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")

MODES: Mapping[str, int] = {
    "major": 0, "ionian": 0, "dorian": 2, "phrygian": 4, "lydian": 5, "mixolydian": 7,
    "minor": 9, "aeolian": 9, "locrian": 11,
}
"""Mode -> semitones from the relative major's tonic up to the mode's tonic."""

_MODE_ABBREVIATIONS = {
    "": "major", "maj": "major", "ion": "ionian", "m": "minor", "min": "minor",
    "aeo": "aeolian", "dor": "dorian", "phr": "phrygian", "lyd": "lydian",
    "mix": "mixolydian", "loc": "locrian",
}


def pitch_class(name: str) -> int:
    """"C" -> 0, "F#" -> 6, "Bb" / "B-" (music21) -> 10."""
    match = re.fullmatch(r"([A-Ga-g])([#b\-]*)", name.strip())
    if match is None:
        raise ValueError(f"not a pitch name: {name!r}.")
    accidentals = match.group(2)
    offset = accidentals.count("#") - accidentals.count("b") - accidentals.count("-")
    return (_LETTER_PC[match.group(1).upper()] + offset) % 12


def spell(pc: int, *, flats: bool) -> str:
    """The name of pitch class ``pc`` with sharps or flats."""
    return (_FLAT_NAMES if flats else _SHARP_NAMES)[pc % 12]


def key_name(tonic_pc: int, mode: str) -> str:
    """"F# minor", "Bb major", "D dorian" for a tonic pitch class and a mode."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}.")
    minor_like = mode in ("minor", "aeolian", "dorian", "phrygian", "locrian")
    tonic = (_MINOR_TONICS if minor_like else _MAJOR_TONICS)[tonic_pc % 12]
    return f"{tonic} {mode}"


def parse_key(text: str) -> tuple[int, str] | None:
    """A key as written in metadata or an ABC ``K:`` field -> (tonic pitch class, mode).

    Accepts "F# minor", "Bb major", "Gm", "Ador", "D mix", "Emin", "G". Returns None for
    keys that name no tonic ("none", bagpipe "HP", empty).
    """
    match = re.match(r"\s*([A-Ga-g][#b]?)\s*([A-Za-z]*)", text)
    if match is None:
        return None
    word = match.group(2).lower()
    mode = "major"  # no mode word, or a clef or other K: option after the tonic
    for abbreviation in sorted(_MODE_ABBREVIATIONS, key=len, reverse=True):
        if abbreviation and word.startswith(abbreviation):
            mode = _MODE_ABBREVIATIONS[abbreviation]
            break
    return pitch_class(match.group(1)), mode


def transpose_key(key: str, semitones: int) -> str:
    """"G major" transposed by +2 -> "A major"; keys that cannot be parsed are kept."""
    parsed = parse_key(key)
    if parsed is None:
        return key
    tonic, mode = parsed
    return key_name(tonic + semitones, mode)


# Krumhansl & Kessler (1982) key profiles, tonic first.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29,
                           2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34,
                           3.17])


def estimate_key(pc_durations: np.ndarray, sharps: int | None = None) -> tuple[int, str]:
    """The key whose Krumhansl-Kessler profile correlates best with a pitch-class
    duration histogram (the Krumhansl-Schmuckler algorithm).

    Args:
        pc_durations: [12] total duration of each pitch class.
        sharps: a key signature (negative for flats) restricting the answer to its
            major key and relative minor; None considers all 24 keys.

    Returns:
        (tonic pitch class, "major" or "minor").
    """
    histogram = np.asarray(pc_durations, dtype=np.float64)
    if histogram.shape != (12,):
        raise ValueError(f"pc_durations must have shape [12], got {histogram.shape}.")
    if sharps is None:
        candidates = [(pc, mode) for pc in range(12) for mode in ("major", "minor")]
    else:
        major = (7 * sharps) % 12
        candidates = [(major, "major"), ((major + 9) % 12, "minor")]
    if not histogram.any():
        return candidates[0]
    best, best_score = candidates[0], -np.inf
    for tonic, mode in candidates:
        profile = np.roll(_MAJOR_PROFILE if mode == "major" else _MINOR_PROFILE, tonic)
        score = float(np.corrcoef(histogram, profile)[0, 1]) if histogram.std() > 0 else 0.0
        if score > best_score:
            best, best_score = (tonic, mode), score
    return best


def beat_quarters(meter: str) -> float:
    """Length of one beat in quarter notes: 1 in 4/4, 2 in 2/2, 1.5 in 6/8, 0.5 in 3/8.

    Compound meters (numerator a multiple of 3 above 3) count dotted beats.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", meter)
    if match is None:
        raise ValueError(f"not a meter: {meter!r} (expected e.g. '3/4').")
    numerator, denominator = int(match.group(1)), int(match.group(2))
    if numerator <= 0 or denominator <= 0:
        raise ValueError(f"not a meter: {meter!r}.")
    note = 4.0 / denominator
    if numerator > 3 and numerator % 3 == 0:
        return 3 * note
    return note


def bar_quarters(meter: str) -> float:
    """Length of one bar in quarter notes (3 in 3/4, 3 in 6/8)."""
    numerator, denominator = (int(part) for part in meter.split("/"))
    return numerator * 4.0 / denominator

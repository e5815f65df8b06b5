"""What every source hands to the builder: a performance and what is known about it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from longplay.data.corpus.midi import Performance

__all__ = ["ROLES", "PieceUnusableError", "SourcePiece"]

ROLES = ("voice", "keyboard", "chords", "bass", "drums", "styled")
"""Channel roles: a melodic part, a keyboard part, chord accompaniment, a bass line,
General MIDI drums, and a part whose program an accompaniment style chose."""


class PieceUnusableError(Exception):
    """This piece cannot be used (a restrictive notice, a parse failure, no notes); the
    builder draws another one."""


@dataclass(frozen=True)
class SourcePiece:
    """A piece turned into a MIDI performance, before orchestration and mixing.

    Attributes:
        performance: the notes and tempo map as the source wrote them.
        title, composer, genre, style: metadata labels.
        key: "F# minor" etc. in the written pitch, or None when unknown.
        meter: "3/4" etc.
        licence: the licence the piece is used under.
        collection: the collection (or accompaniment style) it comes from.
        path: the source file, relative to music21's corpus folder ("" for generated).
        roles: channel -> role (see :data:`ROLES`).
        family: ensemble family for the voice/keyboard/chords/bass roles, or None.
        beat_bpm_range: the tempo range (beats per minute) to draw from when the source
            gives no tempo; None when the performance's own tempo is the piece's.
        details: further source-specific fields for the metadata.
    """

    performance: Performance
    title: str
    composer: str
    genre: str
    style: str
    key: str | None
    meter: str
    licence: str
    collection: str
    path: str
    roles: Mapping[int, str]
    family: str | None
    beat_bpm_range: tuple[float, float] | None
    details: Mapping[str, object] = field(default_factory=dict)

"""General MIDI instruments: names, interchangeable groups, and ensembles per repertoire.

Programs are 0-based (0 = Acoustic Grand Piano), as in MIDI program-change messages.
Channel 10 (index 9) is the General MIDI drum channel and is never given a program.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DRUM_CHANNEL",
    "DRUM_KIT_NAME",
    "ENSEMBLES",
    "GM_PROGRAM_NAMES",
    "SUBSTITUTE_GROUPS",
    "Ensemble",
    "program_name",
]

DRUM_CHANNEL = 9
DRUM_KIT_NAME = "Drum Kit"

GM_PROGRAM_NAMES: tuple[str, ...] = (
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano",
    "Honky-tonk Piano", "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone", "Marimba", "Xylophone",
    "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ", "Reed Organ",
    "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)",
    "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar",
    "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass",
    "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings", "Pizzicato Strings",
    "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2",
    "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section",
    "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn",
    "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle",
    "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)",
    "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)",
    "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum", "Melodic Tom",
    "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet", "Telephone Ring",
    "Helicopter", "Applause", "Gunshot",
)

SUBSTITUTE_GROUPS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 4, 5),          # pianos and electric pianos
    (8, 9, 10, 11, 12, 13),   # mallets
    (16, 17, 18),             # drawbar / percussive / rock organ
    (21, 23),                 # accordions
    (24, 25),                 # acoustic guitars
    (26, 27, 28),             # clean electric guitars
    (29, 30),                 # distorted guitars
    (32, 33, 34, 35),         # basses
    (38, 39),                 # synth basses
    (48, 49, 50, 51),         # string sections
    (52, 53, 54, 91),         # voices
    (56, 59),                 # trumpets
    (61, 62, 63),             # brass sections
    (64, 65, 66),             # saxophones
    (68, 69, 71),             # oboe, English horn, clarinet
    (72, 73, 74, 75, 79),     # flutes
    (80, 81, 82, 83, 84, 87),  # synth leads
    (88, 89, 90, 92, 94, 95),  # pads
    (40, 110),                # violin, fiddle
)
"""Programs that can stand in for each other in an accompaniment style (a program in no
group is kept as it is)."""


def program_name(program: int) -> str:
    """The General MIDI name of a 0-based program number."""
    if not 0 <= program < len(GM_PROGRAM_NAMES):
        raise ValueError(f"a MIDI program lies in [0, 127], got {program}.")
    return GM_PROGRAM_NAMES[program]


@dataclass(frozen=True)
class Ensemble:
    """A way to orchestrate a piece: General MIDI programs per role.

    Each slot holds the alternatives for one role; one is drawn per track.

    Attributes:
        name: what the ensemble is ("string quartet").
        voices: slots for the melodic parts, highest part first; a piece with more
            parts than slots spreads its parts over the slots by pitch order.
        keyboard: alternatives for parts written for a keyboard instrument.
        chords: alternatives for a chord-accompaniment part (ABC guitar chords).
        bass: alternatives for a bass-line part (the bass of ABC guitar chords).
        weight: relative probability of the ensemble within its family.
    """

    name: str
    voices: tuple[tuple[int, ...], ...]
    keyboard: tuple[int, ...] = (0,)
    chords: tuple[int, ...] = (0,)
    bass: tuple[int, ...] = (32,)
    weight: float = 1.0


_PIANO = (0, 0, 1)
ENSEMBLES: dict[str, tuple[Ensemble, ...]] = {
    # Four-part vocal writing: chorales, hymns, madrigal-like textures.
    "chorale": (
        Ensemble("string quartet", ((40,), (40, 41), (41,), (42,)), weight=2),
        Ensemble("string orchestra", ((48, 49), (48, 49), (48, 49), (42, 43))),
        Ensemble("brass choir", ((56,), (60,), (57,), (58,)), weight=1.5),
        Ensemble("woodwind quartet", ((73,), (68,), (71,), (70,)), weight=1.5),
        Ensemble("church organ", ((19,), (19,), (19,), (19,)), weight=2),
        Ensemble("choir", ((52,), (52, 53), (52, 53), (52,)), weight=1.5),
        Ensemble("saxophone quartet", ((64,), (65,), (66,), (67,))),
        Ensemble("piano", (_PIANO,)),
        Ensemble("recorder consort", ((74,), (74,), (74,), (70,))),
    ),
    # String-quartet and chamber writing.
    "chamber": (
        Ensemble("string quartet", ((40,), (40,), (41,), (42,)), weight=4),
        Ensemble("string orchestra", ((48, 49), (48, 49), (48, 49), (42, 43)), weight=1.5),
        Ensemble("wind quartet", ((73,), (68,), (71,), (70,))),
        Ensemble("piano", (_PIANO,)),
        Ensemble("mixed winds and strings", ((73, 68), (40,), (41, 71), (42,))),
    ),
    # Keyboard music: every part plays one keyboard instrument.
    "keyboard": (
        Ensemble("piano", (_PIANO,), keyboard=_PIANO, weight=5),
        Ensemble("electric piano", ((4, 5),), keyboard=(4, 5)),
        Ensemble("harpsichord", ((6,),), keyboard=(6,)),
        Ensemble("vibraphone", ((11,),), keyboard=(11,), weight=0.5),
    ),
    "ragtime": (
        Ensemble("piano", (_PIANO,), keyboard=_PIANO, weight=3),
        Ensemble("honky-tonk piano", ((3,),), keyboard=(3,), weight=2),
        Ensemble("electric piano", ((4,),), keyboard=(4,), weight=0.5),
    ),
    "baroque keyboard": (
        Ensemble("harpsichord", ((6,),), keyboard=(6,), weight=3),
        Ensemble("piano", (_PIANO,), keyboard=_PIANO, weight=2),
        Ensemble("organ", ((19,),), keyboard=(19,)),
    ),
    # A melody (voice or solo instrument) with keyboard accompaniment.
    "song": (
        Ensemble("violin and piano", ((40,), (42,)), keyboard=_PIANO, weight=2),
        Ensemble("flute and piano", ((73,), (71,)), keyboard=_PIANO, weight=1.5),
        Ensemble("clarinet and piano", ((71,), (70,)), keyboard=_PIANO),
        Ensemble("oboe and harp", ((68,), (70,)), keyboard=(46,)),
        Ensemble("cello and piano", ((42,), (43,)), keyboard=_PIANO),
        Ensemble("voice and piano", ((53, 52), (53,)), keyboard=_PIANO, weight=1.5),
        Ensemble("trumpet and organ", ((56,), (57,)), keyboard=(19,)),
        Ensemble("guitar and flute", ((73,), (71,)), keyboard=(24,)),
        Ensemble("saxophone and electric piano", ((65, 66), (67,)), keyboard=(4, 5)),
    ),
    # Baroque chamber music (trio sonatas, arias with continuo).
    "baroque": (
        Ensemble("strings and harpsichord", ((40,), (40,), (42,)), keyboard=(6,), weight=3),
        Ensemble("recorders and continuo", ((74,), (74,), (70,)), keyboard=(6,)),
        Ensemble("oboes and organ", ((68,), (68,), (70,)), keyboard=(19,)),
        Ensemble("strings and organ", ((40,), (41,), (42,)), keyboard=(19,)),
    ),
    # Medieval and Renaissance polyphony.
    "early": (
        Ensemble("recorder consort", ((74,), (74,), (74,), (70,)), weight=2),
        Ensemble("viol consort", ((40,), (41,), (41, 42), (42,)), weight=2),
        Ensemble("cornett and sackbuts", ((68, 56), (57,), (57,), (57,))),
        Ensemble("choir", ((52,), (52, 53), (53,), (52,)), weight=2),
        Ensemble("organ", ((19, 20),), keyboard=(19,)),
        Ensemble("lute and voices", ((53,), (24,), (24,), (24,))),
        Ensemble("shawm band", ((68, 111), (68,), (70,), (70,)), weight=0.5),
    ),
    # Folk tunes: melody voices, ABC guitar chords and their bass line.
    "folk": (
        Ensemble("fiddle and guitar", ((110, 40), (40, 110)), chords=(25, 24), bass=(32,),
                 weight=3),
        Ensemble("session", ((73, 78, 110, 21), (110, 73)), chords=(24, 25, 0),
                 bass=(32, 42), weight=3),
        Ensemble("accordion band", ((21, 23), (21,)), chords=(21, 0), bass=(32, 58)),
        Ensemble("piano", (_PIANO, _PIANO), chords=_PIANO, bass=_PIANO),
        Ensemble("harp", ((46,), (46,)), chords=(46,), bass=(46, 32)),
        Ensemble("banjo and fiddle", ((105, 110), (110,)), chords=(25, 105), bass=(32,)),
        Ensemble("woodwinds", ((73, 68, 71, 74), (71, 70)), chords=(0, 46, 24),
                 bass=(70, 42)),
        Ensemble("whistle and harmonica", ((78, 22), (22, 78)), chords=(25,), bass=(32,),
                 weight=0.5),
    ),
    "fife": (
        Ensemble("fifes", ((72,), (72, 73)), chords=(0,), bass=(58, 70), weight=3),
        Ensemble("flutes", ((73,), (73, 74)), chords=(24,), bass=(70,)),
        Ensemble("whistles", ((78,), (78, 79)), chords=(25,), bass=(32,)),
        Ensemble("fiddles", ((110,), (40,)), chords=(25,), bass=(32,)),
    ),
}
"""Ensemble families (a collection names its family), each a tuple of ensembles."""

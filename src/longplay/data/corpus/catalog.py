"""Which scores of the music21 corpus the builder uses, under which licence, and why the
others are left out.

The music21 package ships its corpus under umbrella terms (``corpus/license.txt``:
the encodings are distributed with the encoders' permission, the music is out of
copyright in the United States, and "some encodings ... may not be used for commercial
uses or have other restrictions: please see the licenses embedded in individual
compositions or directories"). The builder therefore reads every directory licence
and the notices embedded in the files, and leaves out whatever restricts
redistribution, derivative works or commercial use (:data:`SKIPPED_COLLECTIONS`,
:data:`SKIPPED_FILES`). The acknowledgements in music21's documentation ("Authors,
Acknowledgments, Contributing, and Licensing") name the permissions the kept
collections rest on; each collection's entry below cites them. As a second line of
defence, every file is checked for a restrictive notice (:func:`restrictive_notice`)
before it is used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = [
    "ABC_COLLECTIONS",
    "EXCLUDED_COLLECTIONS",
    "SCORE_COLLECTIONS",
    "SKIPPED_COLLECTIONS",
    "SKIPPED_FILES",
    "AbcCollection",
    "AbcTune",
    "Piece",
    "ScoreCollection",
    "abc_tunes",
    "load_catalog",
    "music21_corpus_dir",
    "piece_split_value",
    "read_score_text",
    "restrictive_notice",
]

MUSIC21_UMBRELLA = ("music21 corpus terms: distributed with the encoders' permission, "
                    "music out of copyright in the United States")


@dataclass(frozen=True)
class ScoreCollection:
    """A folder of the music21 corpus rendered from its scores (MusicXML, Humdrum).

    Attributes:
        name: folder name in music21's corpus.
        title: what the collection is, for LICENSES.md.
        licence: the licence or permission the tracks are used under.
        composer: the composer written into the metadata; "" takes the score's own.
        genre, style: metadata labels.
        family: the ensemble family (:data:`longplay.data.corpus.gm.ENSEMBLES`).
        beat_bpm: tempo range drawn from when the score has no metronome mark.
        suffixes: file types used.
        overrides: (path prefix, genre, style, family) for files unlike the rest.
        work_title: the title of the collection's one work ("" when it has several);
            movement numbers in the file path are appended.
        titles_from_paths: title the files by their paths ("String quartet Op. 59 No. 1,
            movement 1") instead of the scores' own, unreliable titles.
        weight: relative probability of drawing the collection (folders of a single
            piece get less weight than the Bach chorales).
    """

    name: str
    title: str
    licence: str
    composer: str
    genre: str
    style: str
    family: str
    beat_bpm: tuple[float, float]
    suffixes: tuple[str, ...] = (".mxl", ".xml", ".musicxml", ".krn")
    overrides: tuple[tuple[str, str, str, str], ...] = ()
    work_title: str = ""
    titles_from_paths: bool = False
    weight: float = 1.0

    def labels(self, relative_path: str) -> tuple[str, str, str]:
        """(genre, style, family) of one file of the collection."""
        for prefix, genre, style, family in self.overrides:
            if relative_path.startswith(prefix):
                return genre, style, family
        return self.genre, self.style, self.family


@dataclass(frozen=True)
class AbcCollection:
    """A folder of ABC tune books in the music21 corpus, converted with abc2midi.

    Attributes:
        name, title, licence, weight: as for :class:`ScoreCollection`.
        origin: where the tunes come from ("Irish"), the genre's prefix.
        composer: written when a tune has no ``C:`` field.
        genre: genre label; the tune's rhythm ("reel", "jig") becomes its style.
        family: ensemble family.
        style: the style of tunes whose rhythm is unknown.
        beat_bpm: tempo range for tunes without a Q: field or a known rhythm (None: a
            range from the tune's tempo words).
        voices_as_tunes: the file holds one tune per voice (same title), to be
            converted separately and played together.
        dance_meters: the book is of dance tunes, so that a tune in 6/8 without a
            stated rhythm is a jig (not so in books of songs and marches).
    """

    name: str
    title: str
    licence: str
    origin: str
    composer: str
    genre: str
    family: str
    style: str = "tune"
    beat_bpm: tuple[float, float] | None = None
    voices_as_tunes: bool = False
    dance_meters: bool = True
    weight: float = 1.0


SCORE_COLLECTIONS: tuple[ScoreCollection, ...] = (
    ScoreCollection(
        "bach", "J. S. Bach, four-part chorales (MusicXML editions by Margaret Greentree)",
        "public-domain music; MusicXML editions distributed with music21 by permission of "
        "Margaret Greentree (music21 acknowledgements)",
        "Johann Sebastian Bach", "baroque", "chorale", "chorale", (60, 92),
        suffixes=(".mxl", ".xml"), weight=6),
    ScoreCollection(
        "beethoven", "L. van Beethoven, string quartets",
        "public-domain music; MusicXML from Project Gutenberg's public-domain music "
        f"(music21 acknowledgements); {MUSIC21_UMBRELLA}",
        "Ludwig van Beethoven", "classical", "string quartet", "chamber", (66, 138),
        suffixes=(".mxl",), titles_from_paths=True, weight=3),
    ScoreCollection(
        "haydn", "J. Haydn, string quartets",
        "public-domain music; MusicXML from Project Gutenberg's public-domain music "
        f"(music21 acknowledgements); {MUSIC21_UMBRELLA}",
        "Joseph Haydn", "classical", "string quartet", "chamber", (72, 138),
        titles_from_paths=True, weight=2),
    ScoreCollection(
        "mozart", "W. A. Mozart, string quartets and a piano sonata",
        "public-domain music; MusicXML from Project Gutenberg's public-domain music "
        f"(music21 acknowledgements); {MUSIC21_UMBRELLA}",
        "Wolfgang Amadeus Mozart", "classical", "string quartet", "chamber", (72, 138),
        overrides=(("mozart/k545", "classical", "piano sonata", "keyboard"),),
        titles_from_paths=True, weight=2.5),
    ScoreCollection(
        "chopin", "F. Chopin, Mazurka op. 6 no. 2 (Humdrum, C. S. Sapp; Mikuli edition)",
        f"public-domain music; {MUSIC21_UMBRELLA}", "Frederic Chopin", "romantic",
        "mazurka", "keyboard", (112, 150), weight=0.5),
    ScoreCollection(
        "trecento", "Italian and French polyphony of the 14th century (music21 project "
        "encodings)", f"public-domain music; {MUSIC21_UMBRELLA}", "", "medieval",
        "trecento polyphony", "early", (50, 84), weight=3),
    ScoreCollection(
        "ciconia", "J. Ciconia, Quod jactatur", "CC BY-SA 3.0 (2010 Michael Scott Cuthbert)",
        "Johannes Ciconia", "medieval", "motet", "early", (50, 80), weight=0.3),
    ScoreCollection(
        "luca", "Gloria (Lucca codex)", "CC BY-SA 3.0 (2010 Michael Scott Cuthbert)",
        "anonymous", "medieval", "mass movement", "early", (50, 80), weight=0.3),
    ScoreCollection(
        "lusitano", "V. Lusitano, Allor che ignuda", "CC0 / public domain (2022 Michael "
        "Scott Asato Cuthbert)", "Vicente Lusitano", "renaissance", "madrigal", "early",
        (56, 84), weight=0.3),
    ScoreCollection(
        "corelli", "A. Corelli, trio sonata op. 3 no. 1", "CC BY (2014)",
        "Arcangelo Corelli", "baroque", "trio sonata", "baroque", (50, 80), weight=0.4),
    ScoreCollection(
        "cpebach", "C. P. E. Bach, keyboard piece H. 186", f"public-domain music; "
        f"{MUSIC21_UMBRELLA}", "Carl Philipp Emanuel Bach", "baroque", "keyboard sonata",
        "baroque keyboard", (80, 120), suffixes=(".mxl",),
        work_title="Sonata in A major H. 186, Wq. 55/4", weight=0.4),
    ScoreCollection(
        "handel", "G. F. Handel, Lascia ch'io pianga (MuseScore contribution)",
        f"public-domain music; {MUSIC21_UMBRELLA}", "George Frideric Handel", "baroque",
        "aria", "song", (54, 72), work_title="Lascia ch'io pianga", weight=0.4),
    ScoreCollection(
        "joplin", "S. Joplin, Maple Leaf Rag", f"public-domain music; {MUSIC21_UMBRELLA}",
        "Scott Joplin", "ragtime", "piano rag", "ragtime", (84, 104),
        work_title="Maple Leaf Rag", weight=0.5),
    ScoreCollection(
        "schumann_clara", "C. Schumann, polonaises op. 1 and op. 17",
        "CC BY-SA 4.0 (polonaises, as stated in the scores); public-domain music; "
        f"{MUSIC21_UMBRELLA}", "Clara Schumann", "romantic", "polonaise", "keyboard",
        (84, 112), overrides=(("schumann_clara/opus17", "romantic", "piano trio",
                               "chamber"),), titles_from_paths=True, weight=0.8),
    ScoreCollection(
        "schumann_robert", "R. Schumann, string quartet op. 41 no. 1 and songs",
        f"public-domain music; {MUSIC21_UMBRELLA}", "Robert Schumann", "romantic",
        "string quartet", "chamber", (66, 132),
        overrides=(("schumann_robert/dichterliebe", "romantic", "lied", "song"),
                   ("schumann_robert/opus48", "romantic", "lied", "song")), weight=1),
    ScoreCollection(
        "schubert", "F. Schubert, Der Lindenbaum", f"public-domain music; {MUSIC21_UMBRELLA}",
        "Franz Schubert", "romantic", "lied", "song", (60, 84), weight=0.3),
    ScoreCollection(
        "verdi", "G. Verdi, La donna è mobile", f"public-domain music; {MUSIC21_UMBRELLA}",
        "Giuseppe Verdi", "romantic", "opera aria", "song", (120, 150),
        work_title="La donna è mobile", weight=0.3),
    ScoreCollection(
        "weber", "C. M. von Weber, Concertino for clarinet", "public domain (released "
        "to the public domain in 1998, as stated in the score)", "Carl Maria von Weber",
        "romantic", "concertino", "song", (60, 120), weight=0.3),
    ScoreCollection(
        "webern", "A. Webern, Dormi Jesu op. 16 no. 2", "public domain in Canada, the EU "
        "and the US; edition CC BY-SA (Michael Scott Cuthbert), as stated in the score",
        "Anton Webern", "modernist", "canon", "song", (40, 60), weight=0.2),
    ScoreCollection(
        "schoenberg", "A. Schoenberg, Six little piano pieces op. 19",
        f"public-domain music in the US (published 1913); {MUSIC21_UMBRELLA}",
        "Arnold Schoenberg", "modernist", "atonal piano miniature", "keyboard", (50, 80),
        work_title="Six Little Piano Pieces Op. 19", weight=0.3),
    ScoreCollection(
        "beach", "A. Beach, Prayer of a tired child", "CC BY-SA (2017 Michael Scott "
        "Cuthbert, as stated in the score); public-domain music (1915)", "Amy Beach",
        "romantic", "choral song", "song", (56, 76), weight=0.2),
    ScoreCollection(
        "johnson_j_r", "J. R. Johnson, Lift every voice and sing", "public domain; "
        "encoding CC0 (as stated in the score)", "J. Rosamond Johnson", "hymn",
        "four-part hymn", "chorale", (60, 84), weight=0.2),
    ScoreCollection(
        "liliuokalani", "Liliʻuokalani, Aloha ʻOe", "public domain; encoding CC0 (as "
        "stated in the score)", "Liliʻuokalani", "song", "Hawaiian song", "song",
        (60, 80), weight=0.2),
    ScoreCollection(
        "leadSheet", "S. Foster, Jeanie with the light brown hair (lead sheet)",
        "public domain (as stated in the score)", "Stephen Foster", "song", "parlour song",
        "song", (60, 84), weight=0.2),
)
"""The score collections used (source "music21")."""

ABC_COLLECTIONS: tuple[AbcCollection, ...] = (
    AbcCollection(
        "oneills1850", "O'Neill's Music of Ireland (1850 melodies; ABC transcriptions by "
        "Norbert Paap and others)",
        "public-domain tunes; ABC editions distributed with music21 by permission of John "
        "Chambers (music21 acknowledgements)", "Irish", "traditional", "Irish folk",
        "folk", weight=4),
    AbcCollection(
        "ryansMammoth", "Ryan's Mammoth Collection (1883) of fiddle tunes",
        "public-domain tunes; ABC editions distributed with music21 by permission of John "
        "Chambers (music21 acknowledgements)", "Irish, Scottish and American",
        "traditional", "fiddle music", "folk", weight=4),
    AbcCollection(
        "airdsAirs", "Aird's Selection of Scotch, English, Irish and Foreign Airs "
        "(1778-1803)", "public-domain tunes; ABC editions distributed with music21 by "
        "permission of Jack Campin and John Chambers (music21 acknowledgements)",
        "Scottish", "traditional", "Scottish folk", "folk", weight=3),
    AbcCollection(
        "miscFolk", "Northumbrian Minstrelsy (1882) and Colonial and Civil War American "
        "fife music", "public-domain tunes; ABC editions distributed with music21 by "
        "permission of Jack Campin (music21 acknowledgements)",
        "Northumbrian and American", "traditional", "folk", "fife", dance_meters=False,
        weight=1.5),
    AbcCollection(
        "josquin", "Josquin des Prez, chansons and motets (Serpent Publications)",
        "GPL-2.0-or-later (ABC editions (C) 1999 Laura E. Conrad, Serpent Publications, as "
        "stated in the files); public-domain music", "Franco-Flemish", "Josquin des Prez",
        "renaissance", "early", style="chanson", beat_bpm=(56, 76), voices_as_tunes=True,
        weight=1),
    AbcCollection(
        "nottingham-dataset", "Nottingham Music Database (reels)",
        f"public-domain tunes; {MUSIC21_UMBRELLA}", "British", "traditional", "folk",
        "folk", weight=0.2),
)
"""The ABC collections used (source "abc")."""

SKIPPED_COLLECTIONS: dict[str, str] = {
    "essenFolksong": (
        "licence forbids commercial use: its license.txt says the legal status of the "
        "Essen folksong database is unclear and that permission was given for "
        "non-commercial distribution and use only"),
    "palestrina": (
        "licence reserves derivative formats: every file says 'Copyright 2000, John "
        "Miller. Rights to all derivative electronic formats reserved' and must be "
        "accompanied by a licensing agreement that music21 does not ship"),
    "monteverdi": (
        "copyright of a commercial edition: the scores were taken from Ut Orpheus "
        "Edizioni's 2003 edition (files carry '(C) Ut Orpheus Edizioni 2003') and music21 "
        "records no permission for them"),
}
"""music21 corpus collections left out for their licence, with the reason."""

EXCLUDED_COLLECTIONS: dict[str, str] = {
    "demos": "test and demonstration files, not repertoire",
    "theoryExercises": "music theory exercises, not repertoire",
}
"""music21 corpus folders left out because they are not music to learn from."""

SKIPPED_FILES: dict[str, str] = {
    **{f"bach/{name}.krn": (
        "licence reserves derivative formats: 'Copyright 1994, Center for Computer "
        "Assisted Research in the Humanities. Rights to all derivative electronic formats "
        "reserved'") for name in ("bwv277", "bwv281", "bwv366")},
    "leadSheet/berlinAlexandersRagtime.mxl": "the score says 'All Rights Reserved'",
    **{f"beethoven/opus18no1/movement{i}.krn": "duplicate of the MusicXML file"
       for i in range(1, 5)},
}
"""Files of kept collections left out, with the reason (paths relative to the corpus)."""

_RESTRICTIVE = re.compile(
    r"all rights reserved|rights to all derivative|licensing agreement|non-?commercial|"
    r"not for (?:commercial|resale)|no commercial use", re.IGNORECASE)


def restrictive_notice(text: str) -> str | None:
    """The first notice in ``text`` that restricts use (reserved rights, non-commercial
    terms, a required licensing agreement), or None."""
    match = _RESTRICTIVE.search(text)
    return match.group(0) if match else None


def read_score_text(path: Path) -> str:
    """The text of a score file; for compressed MusicXML (.mxl) its XML members."""
    if path.suffix == ".mxl":
        with zipfile.ZipFile(path) as archive:
            return "\n".join(archive.read(name).decode("utf-8", "replace")
                             for name in archive.namelist() if name.endswith(".xml"))
    return path.read_text(encoding="utf-8", errors="replace")


@cache
def music21_corpus_dir() -> Path:
    """The corpus folder shipped inside the installed music21 package (music21 itself
    is not imported)."""
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the Python package music21 is not installed; install it "
                                "with `pip install music21`.")
    corpus = Path(next(iter(spec.submodule_search_locations))) / "corpus"
    if not corpus.is_dir():
        raise FileNotFoundError(
            f"the music21 installation has no corpus folder ({corpus}); install the full "
            "package from PyPI (`pip install music21`), not a corpus-less build.")
    return corpus


@dataclass(frozen=True)
class AbcTune:
    """One tune of an ABC file: its position in the file and its header fields."""

    ordinal: int
    text: str
    fields: tuple[tuple[str, str], ...]

    def field(self, name: str) -> str:
        """The first value of header field ``name`` ("T", "K", ...), "" if absent."""
        for key, value in self.fields:
            if key == name:
                return value
        return ""

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]


_FIELD = re.compile(r"^([A-Za-z]):\s*(.*?)\s*$")


def abc_tunes(text: str) -> tuple[str, list[AbcTune]]:
    """Split an ABC file into (file header directives, tunes).

    A tune runs from its ``X:`` line to the next ``X:`` line. Its header fields are
    the field lines up to and including ``K:``. The file header's ``%%`` directives
    (before the first tune) apply to every tune and are returned to be prepended.
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"^X:", line)]
    header = "\n".join(line for line in lines[:starts[0] if starts else len(lines)]
                       if line.startswith("%%"))
    tunes = []
    for ordinal, start in enumerate(starts):
        end = starts[ordinal + 1] if ordinal + 1 < len(starts) else len(lines)
        body = lines[start:end]
        fields = []
        for line in body:
            match = _FIELD.match(line)
            if match is None:
                if line.strip() and not line.startswith("%"):
                    break  # the music starts
                continue
            fields.append((match.group(1), match.group(2)))
            if match.group(1) == "K":
                break
        tunes.append(AbcTune(ordinal, "\n".join(body).rstrip() + "\n", tuple(fields)))
    return header, tunes


@dataclass(frozen=True)
class Piece:
    """Something to render: a score file, or tunes of an ABC file played together.

    Attributes:
        id: stable identity, "music21:bach/bwv66.6.mxl" or "abc:josquin/x.abc#0+1+2+3";
            it decides the piece's split.
        source: "music21" or "abc".
        collection: the collection's name.
        path: file path relative to music21's corpus folder.
        tunes: ordinals of the ABC tunes (empty for scores).
    """

    id: str
    source: str
    collection: str
    path: str
    tunes: tuple[int, ...] = ()


def piece_split_value(piece_id: str) -> float:
    """A number in [0, 1) fixed by the piece's identity; pieces below the test fraction
    form the held-out set (the same pieces for every seed)."""
    digest = hashlib.sha256(piece_id.encode("utf-8")).hexdigest()
    return int(digest[:13], 16) / 16**13


@cache
def load_catalog() -> dict[str, tuple[Piece, ...]]:
    """Every usable piece of the music21 corpus, by collection name, in a fixed order."""
    root = music21_corpus_dir()
    catalog: dict[str, tuple[Piece, ...]] = {}
    for collection in SCORE_COLLECTIONS:
        pieces = []
        for path in sorted((root / collection.name).rglob("*")):
            relative = path.relative_to(root).as_posix()
            if (path.suffix in collection.suffixes and path.is_file()
                    and relative not in SKIPPED_FILES):
                pieces.append(Piece(f"music21:{relative}", "music21", collection.name,
                                    relative))
        catalog[collection.name] = tuple(pieces)
    for abc_collection in ABC_COLLECTIONS:
        pieces = []
        for path in sorted((root / abc_collection.name).glob("*.abc")):
            relative = path.relative_to(root).as_posix()
            if relative in SKIPPED_FILES:
                continue
            _, tunes = abc_tunes(path.read_text(encoding="utf-8", errors="replace"))
            for group in _tune_groups(tunes, abc_collection.voices_as_tunes):
                key = "+".join(str(ordinal) for ordinal in group)
                pieces.append(Piece(f"abc:{relative}#{key}", "abc", abc_collection.name,
                                    relative, group))
        catalog[abc_collection.name] = tuple(pieces)
    return catalog


def _tune_groups(tunes: list[AbcTune], voices_as_tunes: bool) -> list[tuple[int, ...]]:
    """Tune ordinals to render together: each tune alone, or (voices as tunes)
    consecutive tunes sharing their first title."""
    if not voices_as_tunes:
        return [(tune.ordinal,) for tune in tunes]
    groups: list[list[int]] = []
    previous_title = None
    for tune in tunes:
        title = tune.field("T")
        if groups and title == previous_title:
            groups[-1].append(tune.ordinal)
        else:
            groups.append([tune.ordinal])
        previous_title = title
    return [tuple(group) for group in groups]

"""A corpus of real music, installable from package registries only, rendered for
training longplay's small demo model offline.

Sources: scores of the music21 corpus (MusicXML and Humdrum, rendered through
music21), ABC tune books of the music21 corpus (converted with Debian's abc2midi),
and accompaniment songs in the named styles of Debian's MMA over generated chord
progressions. Each track is orchestrated with General MIDI instruments, transposed,
re-timed, looped or cropped, panned and given reverb by a seeded generator, rendered
with fluidsynth and written as FLAC with a JSON sidecar whose fields
``longplay.data.PromptBuilder`` reads. Collections whose licence restricts
redistribution or commercial use are left out (:data:`SKIPPED_COLLECTIONS`).

Importing this package needs neither music21 nor mido; :func:`find_toolchain` (which
:func:`build_corpus` calls first) reports anything missing with the command that
installs it.
"""

from longplay.data.corpus.builder import (
    DEFAULT_TEST_FRACTION,
    MAX_DURATION_S,
    MIN_DURATION_S,
    SOURCE_WEIGHTS,
    CorpusSummary,
    TrackSpec,
    build_corpus,
    build_track,
    licence_summary,
    plan_corpus,
)
from longplay.data.corpus.catalog import (
    ABC_COLLECTIONS,
    EXCLUDED_COLLECTIONS,
    SCORE_COLLECTIONS,
    SKIPPED_COLLECTIONS,
    SKIPPED_FILES,
    load_catalog,
    restrictive_notice,
)
from longplay.data.corpus.gm import ENSEMBLES, GM_PROGRAM_NAMES
from longplay.data.corpus.mma import MMA_STYLES
from longplay.data.corpus.render import FLUIDSYNTH_SETTINGS, SAMPLE_RATE
from longplay.data.corpus.tools import (
    APT_PACKAGES,
    DEFAULT_SOUNDFONT,
    KNOWN_SOUNDFONTS,
    CorpusToolError,
    Toolchain,
    find_toolchain,
)

__all__ = [
    "ABC_COLLECTIONS",
    "APT_PACKAGES",
    "DEFAULT_SOUNDFONT",
    "DEFAULT_TEST_FRACTION",
    "ENSEMBLES",
    "EXCLUDED_COLLECTIONS",
    "FLUIDSYNTH_SETTINGS",
    "GM_PROGRAM_NAMES",
    "KNOWN_SOUNDFONTS",
    "MAX_DURATION_S",
    "MIN_DURATION_S",
    "MMA_STYLES",
    "SAMPLE_RATE",
    "SCORE_COLLECTIONS",
    "SKIPPED_COLLECTIONS",
    "SKIPPED_FILES",
    "SOURCE_WEIGHTS",
    "CorpusSummary",
    "CorpusToolError",
    "Toolchain",
    "TrackSpec",
    "build_corpus",
    "build_track",
    "find_toolchain",
    "licence_summary",
    "load_catalog",
    "plan_corpus",
    "restrictive_notice",
]

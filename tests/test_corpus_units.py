"""The pieces of the corpus builder: plan, MIDI edits, keys, ABC, MMA songs, rendering,
and the licence classification of the music21 corpus."""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from longplay.data.corpus import midi
from longplay.data.corpus.abc import tune_rhythm
from longplay.data.corpus.builder import (
    MAX_DURATION_S,
    MIN_DURATION_S,
    _fit_length,
    plan_corpus,
)
from longplay.data.corpus.catalog import (
    ABC_COLLECTIONS,
    EXCLUDED_COLLECTIONS,
    SCORE_COLLECTIONS,
    SKIPPED_COLLECTIONS,
    SKIPPED_FILES,
    abc_tunes,
    load_catalog,
    music21_corpus_dir,
    read_score_text,
    restrictive_notice,
)
from longplay.data.corpus.mma import MMA_LIBRARY, MMA_STYLES, chord_symbol, song_text
from longplay.data.corpus.render import SAMPLE_RATE, finish_audio
from longplay.data.corpus.theory import (
    beat_quarters,
    estimate_key,
    parse_key,
    transpose_key,
)

HAS_MUSIC21 = importlib.util.find_spec("music21") is not None
HAS_MIDO = importlib.util.find_spec("mido") is not None
TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
needs_music21 = pytest.mark.skipif(not HAS_MUSIC21, reason="pip install music21")
needs_mido = pytest.mark.skipif(not HAS_MIDO, reason="pip install mido")
needs_mma = pytest.mark.skipif(not MMA_LIBRARY.is_dir(), reason="apt-get install -y mma")


# -- plan ------------------------------------------------------------------------------


def test_plan_adds_up_to_the_hours_and_is_a_function_of_the_seed() -> None:
    plan = plan_corpus(2.0, seed=5, test_fraction=0.05)
    assert plan == plan_corpus(2.0, seed=5, test_fraction=0.05)
    assert plan != plan_corpus(2.0, seed=6, test_fraction=0.05)
    assert sum(s.target_s for s in plan) == pytest.approx(7200, abs=MIN_DURATION_S + 0.01)
    assert all(MIN_DURATION_S <= s.target_s <= MAX_DURATION_S for s in plan)
    assert sum(s.target_s < 15 for s in plan) >= 0.1 * len(plan)  # some short tracks
    assert sum(s.target_s > 120 for s in plan) >= 0.1 * len(plan)  # and long ones
    assert {s.source for s in plan} == {"music21", "abc", "mma"}
    assert [s.index for s in plan] == list(range(len(plan)))


def test_more_hours_extend_the_plan() -> None:
    short, long = plan_corpus(0.5, seed=2), plan_corpus(1.5, seed=2)
    assert long[:len(short) - 1] == short[:-1]  # only the last track's length may differ
    assert long[len(short) - 1].source == short[-1].source


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_held_out_tracks_are_at_least_the_fraction(fraction: float) -> None:
    for seed in range(5):
        plan = plan_corpus(0.6, seed=seed, test_fraction=fraction)
        held_out = sum(s.split == "test" for s in plan)
        assert math.floor(len(plan) * fraction) <= held_out <= math.ceil(len(plan) * fraction)
    assert all(s.split == "train" for s in plan_corpus(0.6, seed=0, test_fraction=0.0))


# -- MIDI edits ------------------------------------------------------------------------


def _scale(tpq: int = 480) -> midi.Performance:
    """C major scale in quarters at 120 BPM on channel 0, one drum hit on channel 9."""
    notes = [midi.Note(i * tpq, (i + 1) * tpq, 0, 60 + step, 80)
             for i, step in enumerate((0, 2, 4, 5, 7, 9, 11, 12))]
    notes.append(midi.Note(0, tpq, 9, 36, 100))
    return midi.Performance.build(tpq, notes, (), ((0, 500_000),), ((0, 4, 4),))


def test_tempo_map_and_duration() -> None:
    performance = _scale()
    assert performance.duration_s == pytest.approx(4.0)
    faster = midi.scale_tempo(performance, 2.0)
    assert faster.duration_s == pytest.approx(2.0)
    assert faster.tick_at(1.0) == 1920 and faster.seconds_at(1920) == pytest.approx(1.0)
    slower = midi.ritardando(performance, 4, 1.5)
    assert 4.0 < slower.duration_s < 4.0 * 1.5
    assert [n.start for n in slower.notes] == [n.start for n in performance.notes]


def test_loop_crop_transpose_programs_and_mix() -> None:
    performance = _scale()
    looped = midi.loop(performance, 3, 8 * 480)
    assert len(looped.notes) == 3 * len(performance.notes)
    assert looped.duration_s == pytest.approx(12.0)
    cropped = midi.crop(looped, 480 * 10 + 240)
    assert cropped.end_tick == 480 * 10 + 240
    assert max(n.end for n in cropped.notes) == cropped.end_tick
    up = midi.transpose(performance, 5)
    assert [n.pitch for n in up.notes if n.channel == 0] == [
        n.pitch + 5 for n in performance.notes if n.channel == 0]
    assert [n.pitch for n in up.notes if n.channel == 9] == [36]  # drums stay
    assert max(n.pitch for n in midi.transpose(performance, 127).notes) <= 127
    arranged = midi.set_mix(midi.set_programs(performance, {0: 40}), {0: 20, 9: 64},
                            {0: 50}, {0: 0})
    programs = [(c.channel, c.value) for c in arranged.controls if c.kind == "program"]
    assert programs == [(0, 40)]
    pans = {c.channel: c.value for c in arranged.controls if c.kind == "cc" and c.number == 10}
    assert pans == {0: 20, 9: 64}
    with pytest.raises(ValueError, match="drum"):
        midi.set_programs(performance, {9: 0})


@needs_mido
def test_midi_files_round_trip(tmp_path: Path) -> None:
    performance = midi.set_programs(midi.ritardando(_scale(), 2, 1.3), {0: 73})
    path = midi.write_midi(performance, tmp_path / "x.mid", tail_s=2.0)
    back = midi.read_midi(path)
    assert back.notes == performance.notes
    assert back.tempos == performance.tempos
    assert [c for c in back.controls if c.kind == "program"] == [
        c for c in performance.controls if c.kind == "program"]
    assert back.time_signatures == performance.time_signatures


def test_fit_length_plays_whole_pieces_or_cuts_with_a_fade() -> None:
    rng = np.random.default_rng(0)
    piece = _scale()  # 4 s: two bars of 4/4 at 120 BPM
    whole, plan = _fit_length(piece, 4.3, rng)
    assert plan["ending"] == "natural" and plan["plays"] == 1 and whole == piece
    thrice, plan = _fit_length(piece, 11.5, rng)
    assert plan["ending"] == "natural" and plan["plays"] == 3
    assert thrice.duration_s == pytest.approx(12.0)
    cut, plan = _fit_length(piece, 6.0, rng)
    assert plan["ending"] == "fade" and plan["cut_s"] == 6.0
    assert 1.5 <= plan["fade_s"] <= 2.0 and cut.duration_s >= 6.0


# -- keys, meters ----------------------------------------------------------------------


def test_keys_and_meters() -> None:
    assert parse_key("Ador") == (9, "dorian") and parse_key("Gm") == (7, "minor")
    assert parse_key("D mix") == (2, "mixolydian") and parse_key("HP") is None
    assert parse_key("Bb major") == (10, "major")
    assert transpose_key("G major", 2) == "A major"
    assert transpose_key("E minor", -3) == "C# minor"
    assert transpose_key("F major", 1) == "F# major"
    assert beat_quarters("6/8") == 1.5 and beat_quarters("2/2") == 2
    assert beat_quarters("3/4") == 1
    scale = np.zeros(12)
    scale[[0, 2, 4, 5, 7, 9, 11]] = 1
    scale[[0, 7]] += 2
    assert estimate_key(scale) == (0, "major")
    scale_minor = np.zeros(12)
    scale_minor[[9, 11, 0, 2, 4, 5, 7]] = 1
    scale_minor[[9, 4]] += 2
    assert estimate_key(scale_minor, sharps=0) == (9, "minor")


# -- sources ---------------------------------------------------------------------------


def test_abc_books_split_into_tunes() -> None:
    text = "%%MIDI program 1\nintro text\n\nX:1\nT:First Reel\nM:C|\nK:D\nabc|\n\n" \
           "X:2\nT:Second\nR:jig\nM:6/8\nK:Ador\nabc|\n"
    header, tunes = abc_tunes(text)
    assert header == "%%MIDI program 1"
    assert [t.field("T") for t in tunes] == ["First Reel", "Second"]
    assert tunes[1].field("K") == "Ador" and tunes[0].text.startswith("X:1")
    assert tune_rhythm(tunes[0], "2/2") == "reel" and tune_rhythm(tunes[1], "6/8") == "jig"


def test_chord_symbols() -> None:
    assert chord_symbol("ii7", 0, "major") == "Dm7"
    assert chord_symbol("V7", 7, "major") == "D7"
    assert chord_symbol("bVII", 9, "minor") == "G"
    assert chord_symbol("iim7b5", 9, "minor") == "Bm7b5"
    assert chord_symbol("IV", 5, "major") == "Bb"
    with pytest.raises(ValueError):
        chord_symbol("VIII", 0, "major")


@needs_mma
def test_mma_styles_are_installed_and_songs_are_seeded() -> None:
    for style in MMA_STYLES:
        assert (MMA_LIBRARY / f"{style.file}.mma").is_file(), style.file
    style = next(s for s in MMA_STYLES if s.style == "bossa nova")
    first, info = song_text(style, np.random.default_rng(3), 60.0)
    again, _ = song_text(style, np.random.default_rng(3), 60.0)
    other, _ = song_text(style, np.random.default_rng(4), 60.0)
    assert first == again and first != other
    assert first.startswith("RndSeed ") and "Use stdlib/bossanova" in first
    assert info["num_bars"] * 4 * 60 / info["bpm"] == pytest.approx(60.0, rel=0.1)


# -- licences --------------------------------------------------------------------------


@needs_music21
def test_every_music21_corpus_folder_is_classified() -> None:
    """A new music21 release with a new collection fails here until its licence has been
    read and the collection added to a table."""
    root = music21_corpus_dir()
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")}
    known = ({c.name for c in SCORE_COLLECTIONS} | {c.name for c in ABC_COLLECTIONS}
             | set(SKIPPED_COLLECTIONS) | set(EXCLUDED_COLLECTIONS))
    assert folders <= known, folders - known
    assert not ({c.name for c in SCORE_COLLECTIONS} | {c.name for c in ABC_COLLECTIONS}) & (
        set(SKIPPED_COLLECTIONS) | set(EXCLUDED_COLLECTIONS))


@needs_music21
def test_kept_files_carry_no_restrictive_notice_and_skipped_ones_do() -> None:
    root = music21_corpus_dir()
    catalog = load_catalog()
    paths = sorted({p.path for pieces in catalog.values() for p in pieces})
    assert len(paths) > 1000
    for path in paths:
        assert path.split("/")[0] not in SKIPPED_COLLECTIONS
        assert path not in SKIPPED_FILES
        assert restrictive_notice(read_score_text(root / path)) is None, path
    palestrina = sorted((root / "palestrina").glob("*.krn"))[0]
    assert restrictive_notice(read_score_text(palestrina))
    essen = (root / "essenFolksong" / "license.txt").read_text()
    assert restrictive_notice(essen)
    assert restrictive_notice(read_score_text(root / "leadSheet/berlinAlexandersRagtime.mxl"))


# -- rendering -------------------------------------------------------------------------


def test_finish_audio_cuts_fades_trims_and_normalises() -> None:
    rate = SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * rate) / rate).astype(np.float32)
    audio = np.zeros((5 * rate, 2), np.float32)
    audio[rate:4 * rate] = tone[:, None]  # 1 s silence, 3 s tone, 1 s silence
    natural = finish_audio(audio, cut_s=None, fade_s=0.0)
    assert len(natural) == pytest.approx(3 * rate, abs=0.07 * rate)
    assert np.abs(natural).max() == pytest.approx(10 ** (-1 / 20), rel=1e-4)
    faded = finish_audio(audio, cut_s=3.0, fade_s=1.0)
    assert len(faded) <= 2 * rate + 0.06 * rate
    assert np.abs(faded[-rate // 10:]).max() < 0.2 * np.abs(faded).max()
    assert len(finish_audio(np.zeros((rate, 2), np.float32), cut_s=None, fade_s=0)) == 0


@needs_mido
@pytest.mark.skipif(shutil.which("fluidsynth") is None or not TIMGM.is_file(),
                    reason="apt-get install -y fluidsynth timgm6mb-soundfont")
def test_fluidsynth_rendering_is_deterministic(tmp_path: Path) -> None:
    from longplay.data.corpus.render import render_midi
    from longplay.data.corpus.tools import Toolchain

    tools = Toolchain(fluidsynth=Path(shutil.which("fluidsynth")), abc2midi=Path("abc2midi"),
                      mma=Path("mma"), soundfont=TIMGM, versions=())
    performance = midi.set_mix(midi.set_programs(_scale(), {0: 48}), {0: 30}, {0: 100},
                               {0: 60})
    path = midi.write_midi(performance, tmp_path / "x.mid", tail_s=1.0)
    first = render_midi(tools, path, tmp_path / "a.wav")
    second = render_midi(tools, path, tmp_path / "b.wav")
    assert first.shape[1] == 2 and first.shape[0] >= 4 * SAMPLE_RATE
    assert np.abs(first).max() > 0.01
    assert np.array_equal(first, second)
    assert not np.array_equal(first[:, 0], first[:, 1])  # panned: the channels differ

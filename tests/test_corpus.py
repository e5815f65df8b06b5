"""``longplay data build-corpus``: format, determinism, resumption, licences, missing tools.

The builds render with the small TimGM6mb sound font; they need the Debian packages of
``make corpus-deps`` and the music21 and mido packages, and are skipped without them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from longplay.cli import corpus as corpus_cli
from longplay.cli import main as main_cli
from longplay.data import PromptBuilder
from longplay.data.corpus import (
    GM_PROGRAM_NAMES,
    SKIPPED_COLLECTIONS,
    SKIPPED_FILES,
    CorpusToolError,
    find_toolchain,
    plan_corpus,
)
from longplay.data.corpus import tools as corpus_tools
from longplay.data.corpus.catalog import piece_split_value

HOURS, SEED = 0.05, 1
TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
PROGRAMS = ("fluidsynth", "abc2midi", "mma")


def _missing() -> list[str]:
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    missing += [str(TIMGM)] if not TIMGM.is_file() else []
    missing += [m for m in ("music21", "mido") if importlib.util.find_spec(m) is None]
    return missing


needs_tools = pytest.mark.skipif(
    bool(_missing()), reason=f"missing {', '.join(_missing())}: run `make corpus-deps` "
                             "(as root) and `pip install music21 mido`")


def _registered() -> bool:
    """Whether ``longplay data`` already offers build-corpus (cli/data.py calls
    add_build_corpus)."""
    parser = main_cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and "data" in action.choices:
            for sub in action.choices["data"]._actions:
                if isinstance(sub, argparse._SubParsersAction):
                    return "build-corpus" in sub.choices
    return False


def run(*args: str | Path) -> int:
    """``longplay data build-corpus ARGS`` through the real command once it is wired into
    ``longplay data``; until then through a ``data`` parser holding only build-corpus,
    reporting errors as ``longplay.cli.main`` does."""
    argv: Sequence[str] = ["data", "build-corpus", *map(str, args), "--no-progress"]
    if _registered():
        return main_cli.main(argv)
    parser = argparse.ArgumentParser(prog="longplay")
    data = parser.add_subparsers(dest="command", required=True).add_parser("data")
    corpus_cli.add_build_corpus(data.add_subparsers(dest="data_command", required=True))
    parsed = parser.parse_args(argv)
    try:
        return int(parsed.run(parsed) or 0)
    except main_cli.USER_ERRORS as err:
        print(f"longplay: error: {err}", file=sys.stderr)
        return 2


def tracks(folder: Path) -> dict[str, tuple[Path, dict]]:
    """"split/id" -> (flac path, sidecar) for every track of a corpus folder."""
    found = {}
    for flac in sorted(folder.glob("*/*.flac")):
        sidecar = json.loads(flac.with_suffix(".json").read_text(encoding="utf-8"))
        found[f"{flac.parent.name}/{flac.stem}"] = (flac, sidecar)
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The command of the brief: 0.05 h, seed 1, TimGM6mb, one worker."""
    if _missing():
        pytest.skip(f"missing {', '.join(_missing())}: run `make corpus-deps`")
    out = tmp_path_factory.mktemp("corpus") / "a"
    assert run("-o", out, "--hours", HOURS, "--seed", SEED, "--soundfont", "TimGM6mb") == 0
    return out


@pytest.fixture(scope="module")
def corpus_again(tmp_path_factory) -> Path:
    """The same corpus built again, by two worker processes."""
    if _missing():
        pytest.skip(f"missing {', '.join(_missing())}: run `make corpus-deps`")
    out = tmp_path_factory.mktemp("corpus") / "b"
    assert run("-o", out, "--hours", HOURS, "--seed", SEED, "--soundfont", "TimGM6mb",
               "--workers", 2) == 0
    return out


@needs_tools
def test_tracks_are_flac_and_json_pairs_of_the_right_format(corpus: Path, capsys) -> None:
    found = tracks(corpus)
    plan = plan_corpus(HOURS, SEED)
    assert sorted(found) == sorted(spec.relative_stem for spec in plan)
    assert set(p.name for p in corpus.iterdir()) == {"LICENSES.md", "corpus.json"} | {
        spec.split for spec in plan}
    assert not list(corpus.rglob(".*.tmp-*"))  # no temporary file left behind
    builder = PromptBuilder()
    generator = torch.Generator().manual_seed(0)
    gm_names = set(GM_PROGRAM_NAMES) | {"Drum Kit"}
    for name, (flac, meta) in found.items():
        info = sf.info(str(flac))
        assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_16")
        assert meta["num_samples"] == info.frames
        assert meta["duration_s"] == pytest.approx(info.frames / 44100, abs=1e-3)
        assert 2.0 <= meta["duration_s"] <= 300
        audio, _ = sf.read(str(flac), dtype="float32")
        assert np.abs(audio).max() == pytest.approx(10 ** (-1 / 20), abs=2e-3)  # -1 dBFS
        assert meta["source"] in ("music21", "abc", "mma")
        for field in ("title", "genre", "style", "meter", "licence"):
            assert isinstance(meta[field], str) and meta[field].strip(), (name, field)
        assert "composer" in meta and (meta["composer"] is None or meta["composer"].strip())
        assert meta["composer"] or meta["origin"]
        assert meta["instruments"] and set(meta["instruments"]) <= gm_names
        assert isinstance(meta["bpm"], int) and 20 <= meta["bpm"] <= 300
        assert meta["key"] is None or re.fullmatch(r"[A-G][#b]? [a-z]+", meta["key"])
        assert re.fullmatch(r"\d+/\d+", meta["meter"])
        assert meta["split"] == flac.parent.name and meta["seed"] == SEED
        labels = dict(builder.available_fields(meta))
        assert {"Title", "Genre", "Style", "Instruments", "Tempo", "Meter"} <= set(labels)
        assert labels["Tempo"] == f"{meta['bpm']} BPM"
        assert builder.build(meta, generator)
    total_s = sum(meta["duration_s"] for _, meta in found.values())
    assert total_s == pytest.approx(HOURS * 3600, rel=0.2)
    manifest = json.loads((corpus / "corpus.json").read_text())
    assert manifest["num_tracks"] == len(found) and manifest["seed"] == SEED
    assert manifest["duration_s"] == pytest.approx(total_s, abs=0.01)
    splits = {meta["split"] for _, meta in found.values()}
    if math.floor(len(found) * 0.05) >= 1:
        assert splits == {"train", "test"}


@needs_tools
def test_same_seed_gives_the_same_samples(corpus: Path, corpus_again: Path) -> None:
    first, second = tracks(corpus), tracks(corpus_again)
    assert sorted(first) == sorted(second) and first
    for name in first:
        audio_a, rate_a = sf.read(str(first[name][0]), dtype="int16")
        audio_b, rate_b = sf.read(str(second[name][0]), dtype="int16")
        assert rate_a == rate_b and np.array_equal(audio_a, audio_b), name
        assert first[name][1] == second[name][1], name


@needs_tools
def test_a_rerun_rebuilds_only_what_is_missing(corpus: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    found = tracks(copy)
    victim = sorted(found)[len(found) // 2]
    reference, _ = sf.read(str(found[victim][0]), dtype="int16")
    found[victim][0].unlink()
    before = {p: p.stat().st_mtime_ns for p in copy.glob("*/*.*")}
    capsys.readouterr()
    assert run("-o", copy, "--hours", HOURS, "--seed", SEED, "--soundfont", "TimGM6mb") == 0
    out = capsys.readouterr().out
    assert f"({1} built, {len(found) - 1} already there)" in out
    after = {p: p.stat().st_mtime_ns for p in copy.glob("*/*.*")}
    changed = {p.relative_to(copy).as_posix() for p in after if before.get(p) != after[p]}
    assert changed == {f"{victim}.flac", f"{victim}.json"}
    rebuilt, _ = sf.read(str(found[victim][0]), dtype="int16")
    assert np.array_equal(rebuilt, reference)


@needs_tools
def test_every_track_has_a_licence_and_no_skipped_collection(corpus: Path, mixed: Path
                                                              ) -> None:
    for folder in (corpus, mixed):
        licences = (folder / "LICENSES.md").read_text(encoding="utf-8")
        for name in SKIPPED_COLLECTIONS:
            assert f"`{name}`" in licences
        for _, meta in tracks(folder).values():
            assert meta["licence"].strip()
            assert meta["licence"].split("; the score states")[0] in licences
            assert meta["collection"] not in SKIPPED_COLLECTIONS
            assert meta["file"] not in SKIPPED_FILES
            if meta["file"]:
                assert meta["file"].split("/")[0] not in SKIPPED_COLLECTIONS
            assert f"| {meta['collection']}:" in licences


MIXED = ("--hours", 0.015, "--seed", 22, "--test-fraction", 0.5)
"""Five short tracks from all three sources, in both splits."""


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    if _missing():
        pytest.skip(f"missing {', '.join(_missing())}: run `make corpus-deps`")
    out = tmp_path_factory.mktemp("corpus") / "mixed"
    assert run("-o", out, *MIXED, "--soundfont", "TimGM6mb") == 0
    return out


@needs_tools
def test_all_sources_are_deterministic_across_worker_counts(mixed: Path, tmp_path: Path
                                                           ) -> None:
    assert run("-o", tmp_path, *MIXED, "--soundfont", "TimGM6mb", "--workers", 3) == 0
    first, second = tracks(mixed), tracks(tmp_path)
    assert sorted(first) == sorted(second)
    assert {meta["source"] for _, meta in first.values()} == {"music21", "abc", "mma"}
    for name in first:
        audio_a, _ = sf.read(str(first[name][0]), dtype="int16")
        audio_b, _ = sf.read(str(second[name][0]), dtype="int16")
        assert np.array_equal(audio_a, audio_b), name
        assert first[name][1] == second[name][1], name


@needs_tools
def test_held_out_tracks_come_from_held_out_pieces(mixed: Path) -> None:
    fraction = MIXED[MIXED.index("--test-fraction") + 1]
    found = tracks(mixed)
    assert len(found) == len(plan_corpus(*MIXED[1:4:2], fraction)) >= 3
    assert {meta["split"] for _, meta in found.values()} == {"train", "test"}
    for _, meta in found.values():
        if meta["piece"] is not None:  # generated songs have no piece to hold out
            held_out = piece_split_value(meta["piece"]) < fraction
            assert held_out == (meta["split"] == "test"), meta["piece"]
        else:
            assert meta["source"] == "mma"


def _bin_without(tmp_path: Path, missing: str) -> Path:
    """A PATH folder with links to the corpus programs except ``missing``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for program in PROGRAMS:
        found = shutil.which(program)
        if program != missing and found is not None:
            os.symlink(found, folder / program)
    return folder


@pytest.mark.parametrize(("program", "package"), [("fluidsynth", "fluidsynth"),
                                                  ("abc2midi", "abcmidi"), ("mma", "mma")])
def test_a_missing_program_is_named_with_its_install_command(tmp_path: Path, monkeypatch,
                                                             capsys, program: str,
                                                             package: str) -> None:
    monkeypatch.setenv("PATH", str(_bin_without(tmp_path, program)))
    assert run("-o", tmp_path / "out", "--hours", 0.01, "--soundfont", "TimGM6mb") == 2
    error = capsys.readouterr().err
    assert f"`{program}`" in error
    assert re.search(rf"apt-get install -y [a-z0-9 -]*\b{package}\b", error)
    assert not (tmp_path / "out").exists()  # nothing was started


def test_a_missing_sound_font_is_named_with_its_package(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(corpus_tools, "SOUNDFONT_DIR", tmp_path)
    with pytest.raises(CorpusToolError, match=r"TimGM6mb.sf2.*timgm6mb-soundfont"):
        find_toolchain("TimGM6mb")
    with pytest.raises(CorpusToolError, match=r"apt-get install -y .*fluid-soundfont-gm"):
        find_toolchain(None)
    with pytest.raises(CorpusToolError, match="does not exist"):
        find_toolchain(tmp_path / "mine.sf2")


def test_a_missing_python_package_is_named_with_pip(monkeypatch) -> None:
    monkeypatch.setattr(corpus_tools, "PYTHON_PACKAGES", {"no_such_module_q": "no-such-dist"})
    with pytest.raises(CorpusToolError, match="pip install no-such-dist"):
        find_toolchain("TimGM6mb", path="")


def test_bad_options_are_rejected_before_any_work(tmp_path: Path, capsys) -> None:
    for option, value in (("--hours", "0"), ("--seed", "-1"), ("--test-fraction", "1"),
                          ("--workers", "0")):
        args = ["-o", tmp_path / "out", "--hours", "0.01", option, value]
        assert run(*args) == 2
        assert option in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

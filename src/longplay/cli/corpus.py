"""``longplay data build-corpus``: render a corpus of real music for offline training."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from longplay.cli.options import add_progress_option
from longplay.data.corpus import (
    DEFAULT_SOUNDFONT,
    DEFAULT_TEST_FRACTION,
    KNOWN_SOUNDFONTS,
    build_corpus,
)


def add_build_corpus(data_subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build-corpus`` action to the subparsers of ``longplay data``."""
    build = data_subparsers.add_parser(
        "build-corpus", help="render a corpus of real music (scores and styles from "
                             "package registries) for training",
        description="Render about H hours of music into DIR: scores of the music21 "
                    "corpus, its ABC tune books (through abc2midi) and MMA accompaniment "
                    "styles over generated chord progressions, orchestrated with General "
                    "MIDI instruments and rendered with fluidsynth. Each track is "
                    "DIR/<train|test>/<id>.flac with a .json sidecar; DIR/LICENSES.md lists "
                    "the licences. The result is a function of the options; running the "
                    "command again skips finished tracks. Needs the Debian packages "
                    "fluidsynth, fluid-soundfont-gm (or another sound font), abcmidi and "
                    "mma (`make corpus-deps`).")
    build.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                       help="corpus folder (created if missing)")
    build.add_argument("--hours", type=float, required=True, metavar="H",
                       help="total duration to render, in hours")
    build.add_argument("--seed", type=int, default=0, metavar="S",
                       help="corpus seed (default 0); the same seed gives the same corpus")
    build.add_argument("--soundfont", default=DEFAULT_SOUNDFONT, metavar="PATH",
                       help=f"sound font: a .sf2 file or one of {', '.join(KNOWN_SOUNDFONTS)} "
                            f"(default {DEFAULT_SOUNDFONT}; TimGM6mb is small and fast)")
    build.add_argument("--workers", type=int, default=1, metavar="N",
                       help="processes rendering tracks in parallel (default 1)")
    build.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION,
                       metavar="F", help="fraction of tracks held out in DIR/test, from "
                                         f"held-out pieces (default {DEFAULT_TEST_FRACTION})")
    add_progress_option(build)
    build.set_defaults(run=run_build_corpus)


def run_build_corpus(args: argparse.Namespace) -> int:
    bars: list[tqdm] = []  # opened at the first report, once the tools have been found

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc="rendering", unit="track", total=total,
                             disable=args.no_progress))
        bars[0].update(done - bars[0].n)

    try:
        summary = build_corpus(args.output, hours=args.hours, seed=args.seed,
                               soundfont=args.soundfont, workers=args.workers,
                               test_fraction=args.test_fraction, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    print(summary)
    return 0

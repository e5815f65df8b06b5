"""The ``longplay`` command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from longplay import __version__
from longplay.cli import data as data_cli
from longplay.cli import evaluate as evaluate_cli
from longplay.cli import generate as generate_cli
from longplay.cli import serve as serve_cli
from longplay.cli import train as train_cli
from longplay.cli import ui as ui_cli
from longplay.cli import vae as vae_cli
from longplay.pipelines import GenerationError

logger = logging.getLogger("longplay")

# Errors that are the user's to fix: reported in one line, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError,
                                                IsADirectoryError, FileExistsError, GenerationError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longplay",
        description="Long-form text-to-music generation with latent diffusion.",
    )
    parser.add_argument("--version", action="version", version=f"longplay {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch's operators (default: torch's own choice, "
                             "one per physical core, or OMP_NUM_THREADS when set)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    generate_cli.add_parsers(sub)
    vae_cli.add_parser(sub)
    train_cli.add_parsers(sub)
    data_cli.add_parser(sub)
    ui_cli.add_parser(sub)
    serve_cli.add_parser(sub)
    evaluate_cli.add_parser(sub)
    return parser


def _set_threads(threads: int | None) -> None:
    """The command's thread count. Only the command line sets it: importing longplay
    never changes torch's global settings."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _quiet_transformers() -> None:
    """The command line shows its own progress; transformers' loading bars are noise there."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every write in progress is undone the same way
    (temporary files removed, no partial output)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _handle_sigterm(command: str) -> None:
    """SIGTERM interrupts a command as Ctrl-C does; training keeps Lightning's own handling
    (it stops at the end of the step and its checkpoints stay whole)."""
    if command != "train":
        signal.signal(signal.SIGTERM, _raise_terminated)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s: %(message)s")
    _quiet_transformers()
    try:
        _handle_sigterm(args.command)
        _set_threads(args.threads)
        return int(args.run(args) or 0)
    except USER_ERRORS as err:
        if args.verbose:
            logger.exception("failed")
        print(f"longplay: error: {err}", file=sys.stderr)
        return 2
    except Terminated:
        print("longplay: terminated (SIGTERM); nothing half-written was left", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("longplay: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

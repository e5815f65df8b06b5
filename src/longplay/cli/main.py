"""The ``longplay`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from longplay import __version__
from longplay.cli import vae as vae_cli

logger = logging.getLogger("longplay")

# Errors that are the user's to fix: reported in one line, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError,
                                                IsADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longplay",
        description="Long-form text-to-music generation with latent diffusion.",
    )
    parser.add_argument("--version", action="version", version=f"longplay {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    vae_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as err:
        if args.verbose:
            logger.exception("failed")
        print(f"longplay: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("longplay: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

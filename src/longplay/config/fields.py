"""What each config field accepts, declared once in its annotation.

A field's type is ``Annotated[type, constraint]``: ``Range`` bounds a number, ``OneOf``
lists the accepted strings and ``ConfigPath`` marks a path that a config file gives
relative to its own folder. The aliases below (``PositiveInt``, ``SampleRate``...) are
those declarations, named; the strict loader (:mod:`longplay.config.loader`) checks
every field of a config against its annotation whenever a config is built, from a file,
from a foreign layout or in Python (``dataclasses.replace`` included).

The limits on sizes (``MAX_SAMPLE_SIZE``...) are far above any model longplay knows;
they are there so that a typo fails with a message naming the limit instead of
allocating gigabytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Annotated

from longplay.assets import BUNDLED_MODELS
from longplay.conditioning.packaged import packaged_text_encoder_path
from longplay.errors import TextEncoderError

__all__ = [
    "AUDIO_CHANNELS",
    "MAX_HOP_LENGTH",
    "MAX_LATENT_FRAMES",
    "MAX_LAYERS",
    "MAX_SAMPLE_SIZE",
    "MAX_TOKENS",
    "MAX_WIDTH",
    "SAMPLE_RATES",
    "AudioChannels",
    "ConfigPath",
    "Depth",
    "FilePath",
    "Fraction",
    "FrameCount",
    "ModelPath",
    "NonNegativeFloat",
    "NonNegativeInt",
    "OneOf",
    "OptionalWidth",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "Range",
    "SampleCount",
    "SampleRate",
    "Seed",
    "TextEncoderPath",
    "TokenCount",
    "TrainingDataPath",
    "Width",
]


@dataclass(frozen=True)
class Range:
    """A number from ``low`` to ``high`` (None: unbounded); ``low_open`` / ``high_open``
    exclude the bound itself. ``limit`` names a limit in error messages."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    limit: str = ""

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self, integer: bool) -> str:
        """The accepted values in words: "a positive integer", "a number in [0, 1)"."""
        kind = "an integer" if integer else "a number"
        low, high = self.low, self.high
        if integer and low == 1 and not self.low_open:
            text = "a positive integer" + ("" if high is None
                                           else f" no larger than {_number(high)}")
        elif integer and low == 0 and high is None and not self.low_open:
            text = "a non-negative integer"
        elif low is not None and high is not None:
            if integer and not (self.low_open or self.high_open):
                text = f"an integer from {_number(low)} to {_number(high)}"
            else:
                text = (f"{kind} in {'(' if self.low_open else '['}{_number(low)}, "
                        f"{_number(high)}{')' if self.high_open else ']'}")
        elif low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_number(low)}"
        elif high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {_number(high)}"
        else:
            text = kind
        return f"{text} ({self.limit})" if self.limit else text


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and math.isfinite(x) else repr(x)


class OneOf:
    """One of the given strings; ``choices`` may be a live mapping (e.g. the presets),
    read when a value is checked."""

    def __init__(self, choices: Collection[str]) -> None:
        self.choices = choices

    def __contains__(self, value: object) -> bool:
        return value in self.choices

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def __repr__(self) -> str:
        return f"OneOf({list(self.choices)!r})"


@dataclass(frozen=True)
class ConfigPath:
    """A path field. In a config file a relative path is relative to the file's folder;
    absolute paths, ``~`` (the home folder) and URLs (``scheme://...``) are kept.

    Attributes:
        is_name: values that name something instead of a path (a bundled model, a
            packaged text encoder) and are kept when no such file is next to the config.
        separator: the value is a list of paths joined by it (tar shards).
    """

    is_name: Callable[[str], bool] | None = None
    separator: str | None = None


def _is_bundled_model(name: str) -> bool:
    return name in BUNDLED_MODELS


def _is_packaged_text_encoder(name: str) -> bool:
    try:
        return packaged_text_encoder_path(name) is not None
    except TextEncoderError:  # a packaged encoder whose package is missing: still a name
        return True


# -- named limits ---------------------------------------------------------------------------

SAMPLE_RATES = Range(8000, 192000, limit="Hz, the audio rates longplay supports")
AUDIO_CHANNELS = Range(1, 8, limit="mono to 7.1")
MAX_SAMPLE_SIZE = 2**25
"""Audio samples in one window: 12.7 minutes at 44.1 kHz (the paper's window is 6144
latent frames, 12.6M samples)."""
MAX_LATENT_FRAMES = 16384
"""Latent frames in one window: 12.7 minutes at 21.5 Hz."""
MAX_HOP_LENGTH = 65536
"""Audio samples per latent frame (the product of a VAE's strides; 2048 in the public
models)."""
MAX_WIDTH = 65536
"""Channels, widths and embedding sizes."""
MAX_LAYERS = 1024
MAX_TOKENS = 65536
"""Text tokens per prompt."""

# -- the declarations the configs use -------------------------------------------------------

PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
PositiveFloat = Annotated[float, Range(0, low_open=True)]
NonNegativeFloat = Annotated[float, Range(0)]
Fraction = Annotated[float, Range(0, 1, high_open=True)]
"""A number in [0, 1): dropout rates, decays, warm-up factors."""
Probability = Annotated[float, Range(0, 1)]
SampleRate = Annotated[int, SAMPLE_RATES]
AudioChannels = Annotated[int, AUDIO_CHANNELS]
SampleCount = Annotated[int, Range(1, MAX_SAMPLE_SIZE,
                                   limit="MAX_SAMPLE_SIZE, 12.7 minutes at 44.1 kHz")]
FrameCount = Annotated[int, Range(1, MAX_LATENT_FRAMES,
                                  limit="MAX_LATENT_FRAMES, 12.7 minutes at 21.5 Hz")]
Width = Annotated[int, Range(1, MAX_WIDTH, limit="MAX_WIDTH")]
OptionalWidth = Annotated[int, Range(0, MAX_WIDTH, limit="0: none; MAX_WIDTH")]
Depth = Annotated[int, Range(1, MAX_LAYERS, limit="MAX_LAYERS")]
TokenCount = Annotated[int, Range(1, MAX_TOKENS, limit="MAX_TOKENS")]
Seed = Annotated[int, Range(0, 2**32 - 1)]

FilePath = Annotated[str, ConfigPath()]
ModelPath = Annotated[str, ConfigPath(is_name=_is_bundled_model)]
"""A model folder, or the name of a bundled model ("demo")."""
TextEncoderPath = Annotated[str, ConfigPath(is_name=_is_packaged_text_encoder)]
"""A local Hugging Face folder, or the name of a packaged text encoder."""
TrainingDataPath = Annotated[str, ConfigPath(separator=",")]
"""A folder, or tar shards (paths or URLs) separated by commas."""

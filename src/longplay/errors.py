"""The exceptions longplay raises for problems that are the user's to fix.

One leaf module (it imports nothing of longplay), so that every package can raise the
error that fits without importing the package that usually raises it. Each error is a
``ValueError`` whose message names the problem and the fix; the command line reports
them in one line, the HTTP API as a 4xx.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "AudioFileError",
    "CheckpointError",
    "ConfigError",
    "GenerationError",
    "SettingsError",
    "TextEncoderError",
]


class ConfigError(ValueError):
    """A configuration that longplay can't use; the message names the field."""


class AdapterError(ValueError):
    """An adapter (LoRA) file that can't be used with this model; the message says why."""


class CheckpointError(ValueError):
    """A model file or folder longplay can't use; the message names the file and the fix."""


class TextEncoderError(ValueError):
    """A text encoder that can't be loaded; the message says which path was tried."""


class AudioFileError(ValueError):
    """An input file cannot be used as audio; the message names the file and the fix."""


class SettingsError(ValueError):
    """A generation setting that the model can't run with.

    Attributes:
        field: the argument at fault, named as in the pipeline call and the HTTP request
            (``duration_s``, ``sampler``, ``init_noise_level``...), so that a caller can
            point at it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class GenerationError(RuntimeError):
    """A generation that produced unusable output (NaN or silence); the message says why."""

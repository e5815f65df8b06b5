"""User-facing pipelines."""

from longplay.pipelines.text_to_music import (
    DEFAULTS,
    GenerationError,
    GenerationSettings,
    TextToMusicOutput,
    TextToMusicPipeline,
)

__all__ = [
    "DEFAULTS",
    "GenerationError",
    "GenerationSettings",
    "TextToMusicOutput",
    "TextToMusicPipeline",
]

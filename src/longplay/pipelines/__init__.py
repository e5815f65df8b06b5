"""User-facing pipelines and the settings record they run."""

from longplay.errors import GenerationError, SettingsError
from longplay.pipelines.settings import (
    DEFAULT_SIGMA_MAX,
    DEFAULT_SIGMA_MIN,
    DRAWN_SEED_BOUND,
    MAX_SEED,
    PRECISIONS,
    GenerationSettings,
    draw_seed,
    resolve_settings,
    sampling_defaults,
)
from longplay.pipelines.text_to_music import (
    TextToMusicOutput,
    TextToMusicPipeline,
    bf16_supported,
)

__all__ = [
    "DEFAULT_SIGMA_MAX",
    "DEFAULT_SIGMA_MIN",
    "DRAWN_SEED_BOUND",
    "MAX_SEED",
    "PRECISIONS",
    "GenerationError",
    "GenerationSettings",
    "SettingsError",
    "TextToMusicOutput",
    "TextToMusicPipeline",
    "bf16_supported",
    "draw_seed",
    "resolve_settings",
    "sampling_defaults",
]

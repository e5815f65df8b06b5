"""User-facing pipelines and the settings record they run."""

from longplay.errors import GenerationError, SettingsError
from longplay.pipelines.settings import (
    DEFAULT_CONTEXT_FRACTION,
    DEFAULT_EDGE_S,
    DEFAULT_JUMP_LENGTH,
    DEFAULT_SIGMA_MAX,
    DEFAULT_SIGMA_MIN,
    DRAWN_SEED_BOUND,
    MAX_BATCH_SIZE,
    MAX_DURATION_S,
    MAX_INFERENCE_STEPS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    PRECISIONS,
    GenerationSettings,
    check_text,
    draw_seed,
    resolve_settings,
    sampling_defaults,
)
from longplay.pipelines.text_to_music import (
    TextToMusicOutput,
    TextToMusicPipeline,
    bf16_supported,
    resolve_device,
    resolve_precision,
)
from longplay.pipelines.windows import loop_duration_s

__all__ = [
    "DEFAULT_CONTEXT_FRACTION",
    "DEFAULT_EDGE_S",
    "DEFAULT_JUMP_LENGTH",
    "DEFAULT_SIGMA_MAX",
    "DEFAULT_SIGMA_MIN",
    "DRAWN_SEED_BOUND",
    "MAX_BATCH_SIZE",
    "MAX_DURATION_S",
    "MAX_INFERENCE_STEPS",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "PRECISIONS",
    "GenerationError",
    "GenerationSettings",
    "SettingsError",
    "TextToMusicOutput",
    "TextToMusicPipeline",
    "bf16_supported",
    "check_text",
    "draw_seed",
    "loop_duration_s",
    "resolve_device",
    "resolve_precision",
    "resolve_settings",
    "sampling_defaults",
]

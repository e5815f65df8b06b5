"""Typed, frozen configurations: the models (:mod:`.model`), the training runs
(:mod:`.training`) and the strict loader that builds them from dicts and files
(:mod:`.loader`). Parsing is strict: a field longplay does not know is an error that
names it, and so is a known field with a value longplay does not implement."""

from longplay.config.loader import (
    ConfigError,
    check_keys,
    dataclass_from_dict,
    dataclass_to_dict,
    expect_value,
    load_config_file,
    require_field,
)
from longplay.config.model import (
    CLAP_FORMAT_VERSION,
    MODEL_PRESETS,
    VAE_PRESETS,
    WINDOWS,
    CLAPAudioEncoderConfig,
    CLAPConfig,
    ConditioningConfig,
    DiffusionModelConfig,
    DiTConfig,
    TextConditionerConfig,
    TimingConditionerConfig,
    VAEConfig,
    model_preset,
    vae_preset,
)
from longplay.config.training import (
    CLAPTrainConfig,
    DataConfig,
    DemoConfig,
    DiTTrainConfig,
    EMAConfig,
    OptimizerConfig,
    TrainerConfig,
    VAETrainConfig,
)

__all__ = [
    "CLAP_FORMAT_VERSION",
    "MODEL_PRESETS",
    "VAE_PRESETS",
    "WINDOWS",
    "CLAPAudioEncoderConfig",
    "CLAPConfig",
    "CLAPTrainConfig",
    "ConditioningConfig",
    "ConfigError",
    "DataConfig",
    "DemoConfig",
    "DiTConfig",
    "DiTTrainConfig",
    "DiffusionModelConfig",
    "EMAConfig",
    "OptimizerConfig",
    "TextConditionerConfig",
    "TimingConditionerConfig",
    "TrainerConfig",
    "VAEConfig",
    "VAETrainConfig",
    "check_keys",
    "dataclass_from_dict",
    "dataclass_to_dict",
    "expect_value",
    "load_config_file",
    "model_preset",
    "require_field",
    "vae_preset",
]

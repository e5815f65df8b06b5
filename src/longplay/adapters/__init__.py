"""Adapters of the diffusion transformer: LoRA and DoRA through peft, in peft's file
format, applied for a generation (several at once, each with its strength) or merged
into a model. Trained by ``longplay train lora`` (:mod:`longplay.training.lora`)."""

from longplay.adapters.library import AdapterLibrary
from longplay.adapters.lora import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    TARGET_PRESETS,
    BaseIdentity,
    LoRAAdapter,
    adapter_state,
    adapters_applied,
    base_identity,
    is_adapter_key,
    load_adapter,
    lora_config,
    merge_adapters,
    parse_adapter_argument,
    resolve_targets,
    save_adapter,
    target_pattern,
)

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "TARGET_PRESETS",
    "AdapterLibrary",
    "BaseIdentity",
    "LoRAAdapter",
    "adapter_state",
    "adapters_applied",
    "base_identity",
    "is_adapter_key",
    "load_adapter",
    "lora_config",
    "merge_adapters",
    "parse_adapter_argument",
    "resolve_targets",
    "save_adapter",
    "target_pattern",
]

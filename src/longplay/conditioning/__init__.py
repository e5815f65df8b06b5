"""Conditioning: text encoders, timing embedders and their assembly."""

from longplay.conditioning.clap import (
    CLAPAudioEncoder,
    CLAPModel,
    CLAPOutput,
    clap_contrastive_loss,
    clap_text_encoder_for_conditioning,
    load_clap,
    save_clap,
)
from longplay.conditioning.conditioner import TEXT, Conditioner
from longplay.conditioning.packaged import (
    PACKAGED_TEXT_ENCODERS,
    packaged_encoder_name,
    packaged_text_encoder_path,
    resolve_text_encoder_path,
)
from longplay.conditioning.text import (
    HFTextEncoder,
    TextEncoder,
    TextEncoderError,
    clap_text_encoder,
    t5_encoder,
)
from longplay.conditioning.timing import TimingEmbedder
from longplay.conditioning.types import Conditioning, ConditioningTokens, TokenBatch

__all__ = [
    "PACKAGED_TEXT_ENCODERS",
    "TEXT",
    "CLAPAudioEncoder",
    "CLAPModel",
    "CLAPOutput",
    "Conditioner",
    "Conditioning",
    "ConditioningTokens",
    "HFTextEncoder",
    "TextEncoder",
    "TextEncoderError",
    "TimingEmbedder",
    "TokenBatch",
    "clap_contrastive_loss",
    "clap_text_encoder",
    "clap_text_encoder_for_conditioning",
    "load_clap",
    "packaged_encoder_name",
    "packaged_text_encoder_path",
    "resolve_text_encoder_path",
    "save_clap",
    "t5_encoder",
]

"""Conditioning: text encoders, timing embedders and their assembly."""

from longplay.conditioning.conditioner import TEXT, Conditioner
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
    "TEXT",
    "Conditioner",
    "Conditioning",
    "ConditioningTokens",
    "HFTextEncoder",
    "TextEncoder",
    "TextEncoderError",
    "TimingEmbedder",
    "TokenBatch",
    "clap_text_encoder",
    "t5_encoder",
]

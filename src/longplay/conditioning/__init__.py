"""Conditioning: text encoders, timing embedders, the CLAP model and their assembly.

Model folders (the CLAP's included) are read and written by :mod:`longplay.checkpoints`.
"""

from longplay.conditioning.clap import (
    TEXT_MODEL_PREFIX,
    CLAPAudioEncoder,
    CLAPModel,
    CLAPOutput,
    clap_contrastive_loss,
)
from longplay.conditioning.conditioner import TEXT, Conditioner
from longplay.conditioning.packaged import (
    PACKAGED_TEXT_ENCODERS,
    ResolvedTextEncoder,
    packaged_encoder_name,
    packaged_text_encoder_path,
    resolve_text_encoder,
)
from longplay.conditioning.text import (
    HFTextEncoder,
    TextEncoder,
    clap_text_encoder,
    t5_encoder,
    tokenize_prompts,
)
from longplay.conditioning.timing import TimingEmbedder
from longplay.conditioning.types import Conditioning, ConditioningTokens, TokenBatch
from longplay.errors import TextEncoderError

__all__ = [
    "PACKAGED_TEXT_ENCODERS",
    "TEXT",
    "TEXT_MODEL_PREFIX",
    "CLAPAudioEncoder",
    "CLAPModel",
    "CLAPOutput",
    "Conditioner",
    "Conditioning",
    "ConditioningTokens",
    "HFTextEncoder",
    "ResolvedTextEncoder",
    "TextEncoder",
    "TextEncoderError",
    "TimingEmbedder",
    "TokenBatch",
    "clap_contrastive_loss",
    "clap_text_encoder",
    "packaged_encoder_name",
    "packaged_text_encoder_path",
    "resolve_text_encoder",
    "t5_encoder",
    "tokenize_prompts",
]

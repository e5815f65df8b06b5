"""The audio VAE (the "Oobleck" autoencoder of Stable Audio)."""

from longplay.autoencoder.blocks import (
    DecoderBlock,
    EncoderBlock,
    OobleckDecoder,
    OobleckEncoder,
    ResidualUnit,
)
from longplay.autoencoder.distribution import LatentDistribution
from longplay.autoencoder.model import (
    DEFAULT_CHUNK_FRAMES,
    DEFAULT_CONTEXT_FRAMES,
    AudioVAE,
)

__all__ = [
    "DEFAULT_CHUNK_FRAMES",
    "DEFAULT_CONTEXT_FRAMES",
    "AudioVAE",
    "DecoderBlock",
    "EncoderBlock",
    "LatentDistribution",
    "OobleckDecoder",
    "OobleckEncoder",
    "ResidualUnit",
]

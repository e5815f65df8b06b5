"""The audio VAE (the "Oobleck" autoencoder of Stable Audio)."""

from longplay.autoencoder.blocks import (
    DecoderBlock,
    EncoderBlock,
    OobleckDecoder,
    OobleckEncoder,
    ResidualUnit,
)
from longplay.autoencoder.discriminators import (
    DiscriminatorOutput,
    MultiScaleSTFTDiscriminator,
    STFTDiscriminator,
)
from longplay.autoencoder.distribution import LatentDistribution
from longplay.autoencoder.losses import (
    AWeighting,
    DiscriminatorLosses,
    GeneratorLosses,
    LowBandLoss,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    ReconstructionLoss,
    VAELosses,
    VAELossWeights,
    VAEReconstructionLoss,
    a_weighting_fir,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from longplay.autoencoder.model import (
    DEFAULT_CHUNK_FRAMES,
    DEFAULT_CONTEXT_FRAMES,
    AudioVAE,
    DecodePlan,
)

__all__ = [
    "DEFAULT_CHUNK_FRAMES",
    "DEFAULT_CONTEXT_FRAMES",
    "AWeighting",
    "AudioVAE",
    "DecodePlan",
    "DecoderBlock",
    "DiscriminatorLosses",
    "DiscriminatorOutput",
    "EncoderBlock",
    "GeneratorLosses",
    "LatentDistribution",
    "LowBandLoss",
    "MultiResolutionSTFTLoss",
    "MultiScaleMelLoss",
    "MultiScaleSTFTDiscriminator",
    "OobleckDecoder",
    "OobleckEncoder",
    "ReconstructionLoss",
    "ResidualUnit",
    "STFTDiscriminator",
    "VAELossWeights",
    "VAELosses",
    "VAEReconstructionLoss",
    "a_weighting_fir",
    "discriminator_hinge_loss",
    "feature_matching_loss",
    "generator_hinge_loss",
]

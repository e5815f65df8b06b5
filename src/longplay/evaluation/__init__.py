"""Evaluation metrics."""

from longplay.evaluation.autoencoder_metrics import (
    ReconstructionMetrics,
    ReconstructionScores,
    compare_audio,
    mel_distance,
    si_sdr,
    stft_distance,
)
from longplay.evaluation.fidelity import (
    FidelityScores,
    PitchTrack,
    added_tone_db,
    chroma_correlation,
    dc_offset,
    fidelity_scores,
    harmonic_detail_correlation,
    yin_pitch,
)

__all__ = [
    "FidelityScores",
    "PitchTrack",
    "ReconstructionMetrics",
    "ReconstructionScores",
    "added_tone_db",
    "chroma_correlation",
    "compare_audio",
    "dc_offset",
    "fidelity_scores",
    "harmonic_detail_correlation",
    "mel_distance",
    "si_sdr",
    "stft_distance",
    "yin_pitch",
]

from longplay.evaluation.distribution_metrics import (
    CLAPScore,
    FrechetDistance,
    KLDivergence,
    clap_embedders,
    frechet_distance,
)
from longplay.evaluation.pitch import (
    PitchedContent,
    PitchedContentScores,
    PitchedContentSummary,
    pitched_content,
)
from longplay.evaluation.prompts import PromptItem, read_prompts
from longplay.evaluation.structure import (
    StructureScore,
    chroma_features,
    mfcc_features,
    novelty_curve,
    save_ssm_png,
    self_similarity,
    structure_score,
)
from longplay.evaluation.timing import TimingAdherence, TimingResult, timing_adherence

__all__ += [
    "CLAPScore",
    "FrechetDistance",
    "KLDivergence",
    "PitchedContent",
    "PitchedContentScores",
    "PitchedContentSummary",
    "PromptItem",
    "StructureScore",
    "TimingAdherence",
    "TimingResult",
    "chroma_features",
    "clap_embedders",
    "frechet_distance",
    "mfcc_features",
    "novelty_curve",
    "pitched_content",
    "read_prompts",
    "save_ssm_png",
    "self_similarity",
    "structure_score",
    "timing_adherence",
]

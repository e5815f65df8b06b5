"""Evaluation metrics."""

from longplay.evaluation.autoencoder_metrics import (
    ReconstructionMetrics,
    ReconstructionScores,
    compare_audio,
    mel_distance,
    si_sdr,
    stft_distance,
)

__all__ = [
    "ReconstructionMetrics",
    "ReconstructionScores",
    "compare_audio",
    "mel_distance",
    "si_sdr",
    "stft_distance",
]

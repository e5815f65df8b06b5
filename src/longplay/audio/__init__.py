"""Audio input/output, resampling, cropping and spectral helpers."""

from longplay.audio.io import (
    MAX_INPUT_CHANNELS,
    MAX_INPUT_SAMPLE_RATE,
    MAX_LOAD_DURATION_S,
    MIN_INPUT_SAMPLE_RATE,
    OUTPUT_FORMATS,
    SUPPORTED_OUTPUT_SUBTYPES,
    AudioFileError,
    AudioInfo,
    AudioLimitError,
    Waveform,
    audio_info,
    convert_channels,
    load_audio,
    output_format,
    resample,
    save_audio,
)
from longplay.audio.mastering import (
    DC_CUTOFF_HZ,
    PEAK_DBFS,
    OutputProcessing,
    normalize_output,
)
from longplay.audio.segment import Segment, crop, pad_or_trim, random_crop
from longplay.audio.spectral import hz_to_mel, mel_filterbank, mel_to_hz, stft_magnitude

__all__ = [
    "DC_CUTOFF_HZ",
    "MAX_INPUT_CHANNELS",
    "MAX_INPUT_SAMPLE_RATE",
    "MAX_LOAD_DURATION_S",
    "MIN_INPUT_SAMPLE_RATE",
    "OUTPUT_FORMATS",
    "PEAK_DBFS",
    "SUPPORTED_OUTPUT_SUBTYPES",
    "AudioFileError",
    "AudioInfo",
    "AudioLimitError",
    "OutputProcessing",
    "Segment",
    "Waveform",
    "audio_info",
    "convert_channels",
    "crop",
    "hz_to_mel",
    "load_audio",
    "mel_filterbank",
    "mel_to_hz",
    "normalize_output",
    "output_format",
    "pad_or_trim",
    "random_crop",
    "resample",
    "save_audio",
    "stft_magnitude",
]

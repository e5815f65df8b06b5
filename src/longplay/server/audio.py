"""Audio in and out of the API: base64 files in requests, encoded files in responses.

Shape legend: C audio channels, S samples.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import math
from typing import Literal

import numpy as np
import soundfile as sf
import torch

from longplay.audio import (
    MAX_INPUT_CHANNELS,
    MAX_INPUT_SAMPLE_RATE,
    MIN_INPUT_SAMPLE_RATE,
    convert_channels,
    resample,
)

logger = logging.getLogger(__name__)

AudioFormat = Literal["wav", "flac"]

MEDIA_TYPES: dict[str, str] = {"wav": "audio/wav", "flac": "audio/flac"}
_SOUNDFILE_FORMATS: dict[str, str] = {"wav": "WAV", "flac": "FLAC"}
INPUT_FORMATS = ("WAV", "FLAC")
PCM16_SCALE = 32767


def decode_audio_b64(data_b64: str, *, sample_rate: int, channels: int,
                     max_duration_s: float) -> torch.Tensor:
    """A base64 WAV or FLAC file -> float32 [channels, S] at ``sample_rate``.

    Only the first ``max_duration_s`` seconds are decoded (the pipeline uses no more than
    its window), so a small, highly compressed file cannot expand into a huge buffer.

    Line breaks and spaces in the base64 text (as ``base64`` wraps it) are ignored.

    Raises:
        ValueError: not base64, not a WAV/FLAC file, too many channels or too high a rate,
            no samples, NaN/inf samples, or a channel layout that cannot be converted. The
            message is phrased to follow the field's name ("init_audio_b64: is not ...").
    """
    try:
        raw = base64.b64decode("".join(data_b64.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    try:
        with sf.SoundFile(io.BytesIO(raw)) as file:
            if file.format not in INPUT_FORMATS:
                raise ValueError(f"must be a WAV or FLAC file, got {file.format}")
            file_rate = int(file.samplerate)
            # The limits of every audio input (longplay.audio): beyond them a file is not
            # music for this model, and refusing it bounds the decoded size.
            if not (1 <= file.channels <= MAX_INPUT_CHANNELS
                    and MIN_INPUT_SAMPLE_RATE <= file_rate <= MAX_INPUT_SAMPLE_RATE):
                raise ValueError(f"has {file.channels} channels at {file_rate} Hz; "
                                 f"{MIN_INPUT_SAMPLE_RATE}-{MAX_INPUT_SAMPLE_RATE} Hz with at "
                                 f"most {MAX_INPUT_CHANNELS} channels are accepted")
            num_frames = min(file.frames, math.ceil(max_duration_s * file_rate))
            data = file.read(num_frames, dtype="float32", always_2d=True)  # [S, C]
    except (sf.LibsndfileError, RuntimeError) as error:
        # libsndfile's own words; str(error) would also show the in-memory file's repr.
        reason = error.error_string if isinstance(error, sf.LibsndfileError) else str(error)
        raise ValueError(f"is not a readable WAV or FLAC file ({reason})") from None
    if data.shape[0] == 0:
        raise ValueError("holds no samples")
    if not np.isfinite(data).all():
        raise ValueError("contains NaN or infinite samples")
    audio = convert_channels(torch.from_numpy(np.ascontiguousarray(data.T)), channels)  # [C, S]
    return resample(audio, file_rate, sample_rate).contiguous()


def encode_audio(audio: torch.Tensor, sample_rate: int, audio_format: AudioFormat) -> bytes:
    """[C, S] float audio -> the bytes of a 16-bit WAV or FLAC file (peaks beyond 1 clipped).

    The samples are quantised here, not by libsndfile, so both formats hold the same ones.
    """
    data = audio.detach().to("cpu", torch.float32).numpy().T  # [S, C]
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > 1.0:
        logger.debug("clipping a peak of %.3f to 1.0 for 16-bit %s", peak, audio_format)
    pcm = np.round(np.clip(data, -1.0, 1.0) * PCM16_SCALE).astype(np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, np.ascontiguousarray(pcm), sample_rate, subtype="PCM_16",
             format=_SOUNDFILE_FORMATS[audio_format])
    return buffer.getvalue()

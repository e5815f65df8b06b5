"""Reading, writing, resampling and channel conversion of audio files.

Decoding goes through ``soundfile`` (libsndfile: wav, flac, ogg/vorbis, mp3 and the
other formats it knows) and resampling through ``soxr``. Every tensor that leaves
this module is float32 in [C, S] layout unless stated otherwise.

Audio files are written through :func:`longplay.atomic.atomic_output_path`, so a
crash or an exception while writing never leaves a partial file under the final
name, and an existing file is only replaced once the new one is complete.

Limits on reading. A file whose header gives a sample rate outside
[:data:`MIN_INPUT_SAMPLE_RATE`, :data:`MAX_INPUT_SAMPLE_RATE`] or more than
:data:`MAX_INPUT_CHANNELS` channels is refused (:class:`AudioLimitError`, which names
the file, the value and the limit) before any sample is decoded: such a header is
corrupt or not music, and resampling it could need more memory than the machine has.
:func:`load_audio` also refuses files longer than ``max_duration_s`` (default
:data:`MAX_LOAD_DURATION_S`), since it decodes the whole file into memory.

Truncated files. A WAV or AIFF file whose data ends before the length its header
declares (an interrupted copy or download), or a compressed file that decodes to fewer
samples than its header says, is read as the samples that are there, with a warning
naming the file and both lengths: the audio present is intact, and refusing it would
throw away the rest of a dataset's run.

Shape legend: C audio channels, S samples.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from longplay.atomic import atomic_output_path
from longplay.errors import AudioFileError

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_INPUT_CHANNELS",
    "MAX_INPUT_SAMPLE_RATE",
    "MAX_LOAD_DURATION_S",
    "MIN_INPUT_SAMPLE_RATE",
    "SUPPORTED_OUTPUT_SUBTYPES",
    "AudioFileError",
    "AudioInfo",
    "AudioLimitError",
    "Waveform",
    "audio_info",
    "convert_channels",
    "load_audio",
    "resample",
    "save_audio",
]

RESAMPLE_QUALITIES = ("VHQ", "HQ", "MQ", "LQ", "QQ")

# What an input audio file may be. Beyond these a header is corrupt or the file is not
# music for these models, and decoding or resampling it could exhaust memory.
MIN_INPUT_SAMPLE_RATE = 8_000
"""Lowest sample rate (Hz) of a file longplay reads (telephone audio)."""
MAX_INPUT_SAMPLE_RATE = 384_000
"""Highest sample rate (Hz) of a file longplay reads (the highest studio rate)."""
MAX_INPUT_CHANNELS = 8
"""Most channels of a file longplay reads (7.1 surround); the models use one or two."""
MAX_LOAD_DURATION_S = 7200.0
"""Longest file :func:`load_audio` decodes into memory by default: twice the longest
generation (``longplay.pipelines.MAX_DURATION_S``, one hour), about 2.5 GB of float32
stereo at 44.1 kHz. Longer recordings are split into files first."""


class AudioLimitError(AudioFileError):
    """An audio file outside the limits longplay reads (sample rate, channels, duration);
    the message names the file, the value and the limit."""

# Extension -> (libsndfile format, allowed subtypes). The first subtype is the default.
_OUTPUT_FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    ".wav": ("WAV", ("PCM_16", "PCM_24", "FLOAT")),
    ".flac": ("FLAC", ("PCM_16", "PCM_24")),
    ".ogg": ("OGG", ("VORBIS",)),  # lossy and small: examples for the web
    ".mp3": ("MP3", ("MPEG_LAYER_III",)),  # lossy; libsndfile >= 1.1 writes it
}
OUTPUT_FORMATS: dict[str, tuple[str, str]] = {
    "wav": (".wav", "PCM_16"),
    "wav24": (".wav", "PCM_24"),
    "wav-float": (".wav", "FLOAT"),
    "flac": (".flac", "PCM_16"),
    "flac24": (".flac", "PCM_24"),
    "ogg": (".ogg", "VORBIS"),
    "mp3": (".mp3", "MPEG_LAYER_III"),
}
"""The named output formats of the command line's ``--format`` (and the studio's and the
HTTP API's downloads): name -> (extension, libsndfile subtype). The default for a file
is the first name with its extension (16-bit PCM for .wav and .flac)."""


def output_format(path: str | os.PathLike[str], name: str | None = None) -> tuple[str, str]:
    """(name, subtype) of the format ``path`` is written in: ``name`` checked against the
    file's extension, or the extension's default.

    Raises:
        ValueError: an unknown name, an extension no format writes, or a name that does
            not fit the extension.
    """
    suffix = Path(path).suffix.lower()
    fitting = [n for n, (ext, _) in OUTPUT_FORMATS.items() if ext == suffix]
    if not fitting:
        raise ValueError(f"cannot write {path}: unsupported extension {Path(path).suffix!r}; "
                         f"use one of {', '.join(_OUTPUT_FORMATS)}")
    if name is None:
        name = fitting[0]
    elif name not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {name!r}; choose one of "
                         f"{', '.join(OUTPUT_FORMATS)}")
    elif name not in fitting:
        raise ValueError(f"format {name!r} writes {OUTPUT_FORMATS[name][0]} files, but the "
                         f"output is {path}; use {', '.join(fitting)} or change the extension")
    return name, OUTPUT_FORMATS[name][1]
SUPPORTED_OUTPUT_SUBTYPES: dict[str, tuple[str, ...]] = {
    ext: subtypes for ext, (_, subtypes) in _OUTPUT_FORMATS.items()
}


@dataclass(frozen=True)
class Waveform:
    """Decoded audio.

    Attributes:
        audio: [C, S] float32 samples, nominally in [-1, 1].
        sample_rate: samples per second per channel.
    """

    audio: torch.Tensor
    sample_rate: int

    @property
    def num_channels(self) -> int:
        """C, the number of channels."""
        return int(self.audio.shape[0])

    @property
    def num_samples(self) -> int:
        """S, the number of samples per channel."""
        return int(self.audio.shape[-1])

    @property
    def duration_s(self) -> float:
        """Duration in seconds (S / sample_rate)."""
        return self.num_samples / self.sample_rate


@dataclass(frozen=True)
class AudioInfo:
    """Header information of an audio file (read without decoding the samples)."""

    path: Path
    sample_rate: int
    channels: int
    num_samples: int
    duration_s: float
    format: str


def _check_input_file(path: Path) -> None:
    """Raise AudioFileError when ``path`` is not an existing, non-empty regular file."""
    if not path.exists():
        raise AudioFileError(
            f"{path}: file not found. Check the path (relative paths are resolved against "
            f"the current directory {Path.cwd()})."
        )
    if path.is_dir():
        raise AudioFileError(
            f"{path}: is a directory, not an audio file. Pass the path of a single audio "
            "file (wav, flac, ogg or mp3)."
        )
    if path.stat().st_size == 0:
        raise AudioFileError(
            f"{path}: file is empty (0 bytes), probably an interrupted copy or download. "
            "Replace it with a complete audio file or remove it from the input."
        )


def _unreadable(path: Path, error: Exception) -> AudioFileError:
    return AudioFileError(
        f"{path}: not a readable audio file or unknown format ({error}). Supported inputs "
        "are wav, flac, ogg/vorbis and mp3; convert the file (e.g. with ffmpeg) or remove "
        "it from the input."
    )


def _zero_length(path: Path) -> AudioFileError:
    return AudioFileError(
        f"{path}: the file holds no audio (0 samples). Replace it with a non-empty "
        "recording or remove it from the input."
    )


def _open_sound(path: Path) -> sf.SoundFile:
    """``path`` opened by libsndfile, by its bytes name: a file name that is not valid
    UTF-8 opens too (soundfile would encode a str name strictly)."""
    try:
        return sf.SoundFile(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise _unreadable(path, error) from error


def _check_format_limits(path: Path, sample_rate: int, channels: int) -> None:
    """Raise AudioLimitError when the header's rate or channel count is out of range."""
    if not MIN_INPUT_SAMPLE_RATE <= sample_rate <= MAX_INPUT_SAMPLE_RATE:
        raise AudioLimitError(
            f"{path}: sample rate {sample_rate} Hz is outside the {MIN_INPUT_SAMPLE_RATE}.."
            f"{MAX_INPUT_SAMPLE_RATE} Hz longplay reads (a corrupt header?). Convert the file "
            "to a usual rate (e.g. ffmpeg -i IN -ar 44100 OUT.wav) or remove it from the input."
        )
    if channels > MAX_INPUT_CHANNELS:
        raise AudioLimitError(
            f"{path}: {channels} channels are more than the {MAX_INPUT_CHANNELS} longplay "
            "reads. Mix the file down to stereo (e.g. ffmpeg -i IN -ac 2 OUT.wav) or remove it "
            "from the input."
        )


def _declared_frames(sound: sf.SoundFile) -> int | None:
    """The length a WAV or AIFF header declares, when libsndfile found less data than that.

    libsndfile sizes such a file by the data actually present and only notes the
    mismatch in its log ("data : <declared bytes> (should be <present bytes>)" for WAV,
    "Frame count read from 'COMM' chunk (<frames>)" for AIFF). None when it noted none.
    """
    log = sound.extra_info
    aiff = re.search(r"Frame count read from 'COMM' chunk \((\d+)\)", log)
    if aiff:
        return int(aiff.group(1))
    wav = re.search(r"^data : (\d+) \(should be \d+\)", log, flags=re.MULTILINE)
    block = re.search(r"Block Align\s*:\s*(\d+)", log)
    if wav and block and int(block.group(1)) > 0:
        return int(wav.group(1)) // int(block.group(1))
    return None


def _warn_if_truncated(path: Path, num_samples: int, declared: int | None,
                       sample_rate: int) -> None:
    if declared is not None and declared > num_samples:
        logger.warning(
            "%s: holds %d samples (%.2f s) but its header declares %d (%.2f s); the file is "
            "truncated (an interrupted copy or download?). Using the %d samples present; "
            "replace it with a complete copy to use all of it.",
            path, num_samples, num_samples / sample_rate, declared, declared / sample_rate,
            num_samples,
        )


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read the header of an audio file without decoding its samples.

    A WAV or AIFF file whose data is shorter than its header declares is described by
    the data present, with a warning (see the module docstring).

    Raises:
        AudioFileError: the file is missing, a directory, empty, holds zero samples or
            cannot be parsed as audio.
        AudioLimitError: its sample rate or channel count is outside the limits
            (:data:`MIN_INPUT_SAMPLE_RATE`, :data:`MAX_INPUT_SAMPLE_RATE`,
            :data:`MAX_INPUT_CHANNELS`).
    """
    path = Path(path)
    _check_input_file(path)
    with _open_sound(path) as sound:
        sample_rate, channels, frames = int(sound.samplerate), int(sound.channels), sound.frames
        file_format = str(sound.format)
        declared = _declared_frames(sound)
    if frames <= 0:
        raise _zero_length(path)
    _check_format_limits(path, sample_rate, channels)
    _warn_if_truncated(path, frames, declared, sample_rate)
    return AudioInfo(
        path=path,
        sample_rate=sample_rate,
        channels=channels,
        num_samples=int(frames),
        duration_s=frames / sample_rate,
        format=file_format,
    )


def load_audio(
    path: str | os.PathLike[str],
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
    max_duration_s: float | None = MAX_LOAD_DURATION_S,
) -> Waveform:
    """Decode an audio file into a float32 [C, S] waveform.

    The header is checked before any sample is decoded: its rate and channel count
    against the module's limits, its length against ``max_duration_s``. A file that
    holds less data than its header declares is read as what it holds, with a warning
    naming the file and both lengths (see the module docstring).

    Args:
        path: wav, flac, ogg or mp3 file (anything libsndfile decodes).
        sample_rate: resample to this rate (soxr, very high quality) when given and
            different from the file's rate.
        channels: convert to this many channels when given (see :func:`convert_channels`).
        max_duration_s: refuse files longer than this many seconds (the whole file is
            decoded into memory); None for no limit.

    Returns:
        Waveform whose ``audio`` is [C, S] float32 (C = ``channels`` when given).

    Raises:
        AudioFileError: the file is missing, a directory, empty, holds zero samples,
            cannot be decoded, or contains NaN/inf samples.
        AudioLimitError: its sample rate, channel count or duration is beyond the limits.
        ValueError: ``sample_rate``, ``channels`` or ``max_duration_s`` is not positive,
            or the channel conversion is not defined.
    """
    if sample_rate is not None and sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}.")
    if channels is not None and channels <= 0:
        raise ValueError(f"channels must be a positive integer, got {channels}.")
    if max_duration_s is not None and not max_duration_s > 0:
        raise ValueError(f"max_duration_s must be > 0 or None, got {max_duration_s}.")
    path = Path(path)
    _check_input_file(path)
    with _open_sound(path) as sound:
        file_rate, header_frames = int(sound.samplerate), int(sound.frames)
        if header_frames <= 0:
            raise _zero_length(path)
        _check_format_limits(path, file_rate, int(sound.channels))
        if max_duration_s is not None and header_frames > max_duration_s * file_rate:
            raise AudioLimitError(
                f"{path}: {header_frames / file_rate:.1f} s of audio is longer than the "
                f"{max_duration_s:g} s that are decoded into memory at once. Split it into "
                "shorter files (e.g. ffmpeg -i IN -f segment -segment_time 600 OUT%03d.wav) "
                "or remove it from the input."
            )
        declared = _declared_frames(sound) or header_frames
        try:
            data = sound.read(dtype="float32", always_2d=True)  # [S, C]
        except (sf.LibsndfileError, RuntimeError) as error:
            raise _unreadable(path, error) from error
    if data.shape[0] == 0:
        raise _zero_length(path)
    _warn_if_truncated(path, int(data.shape[0]), declared, file_rate)
    if not np.isfinite(data).all():
        raise AudioFileError(
            f"{path}: contains NaN or infinite samples (a corrupt float file). Re-export it "
            "from the source or remove it from the input."
        )
    audio = torch.from_numpy(np.ascontiguousarray(data.T))  # [C, S]
    if channels is not None:
        audio = convert_channels(audio, channels)
    if sample_rate is not None and sample_rate != file_rate:
        audio = resample(audio, file_rate, sample_rate)
        file_rate = sample_rate
    return Waveform(audio=audio.contiguous(), sample_rate=file_rate)


def resample(
    audio: torch.Tensor,
    orig_sample_rate: int,
    target_sample_rate: int,
    quality: str = "VHQ",
) -> torch.Tensor:
    """Band-limited resampling with soxr along the last dimension.

    The computation runs on CPU in float32 (float64 for float64 input) and is not
    differentiable.

    Args:
        audio: [..., S] floating tensor, any leading dimensions.
        orig_sample_rate: rate of ``audio`` in Hz.
        target_sample_rate: wanted rate in Hz.
        quality: soxr quality, one of "VHQ", "HQ", "MQ", "LQ", "QQ".

    Returns:
        [..., S'] with S' = round(S * target / orig), same dtype and device as ``audio``.
        The input itself is returned when the rates are equal.
    """
    if orig_sample_rate <= 0 or target_sample_rate <= 0:
        raise ValueError(
            "sample rates must be positive integers, got "
            f"orig_sample_rate={orig_sample_rate}, target_sample_rate={target_sample_rate}."
        )
    if quality not in RESAMPLE_QUALITIES:
        raise ValueError(f"quality must be one of {RESAMPLE_QUALITIES}, got {quality!r}.")
    if not audio.is_floating_point():
        raise TypeError(
            f"resample needs a floating-point tensor, got {audio.dtype}; convert it with "
            ".float() first."
        )
    if audio.dim() == 0:
        raise ValueError("resample needs a tensor with a time dimension [..., S], got a scalar.")
    if orig_sample_rate == target_sample_rate:
        return audio
    np_dtype = np.float64 if audio.dtype == torch.float64 else np.float32
    lead = audio.shape[:-1]
    flat = audio.detach().reshape(-1, audio.shape[-1]).cpu().numpy().astype(np_dtype)  # [N, S]
    out = soxr.resample(
        np.ascontiguousarray(flat.T), orig_sample_rate, target_sample_rate, quality
    )  # [S', N]
    result = torch.from_numpy(np.ascontiguousarray(out.T))  # [N, S']
    return result.reshape(*lead, result.shape[-1]).to(device=audio.device, dtype=audio.dtype)


def convert_channels(audio: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert [C, S] audio to ``channels`` channels.

    Rules:
        * same count: returned unchanged;
        * mono (C = 1): the channel is duplicated to every output channel;
        * to mono: mean of all channels;
        * C > 2 to stereo: the mean of all C channels, duplicated to both outputs.
          This deliberately ignores surround layouts (no ITU downmix matrix): the
          channel order of multichannel files is not reliable enough to weight
          front/centre/surround channels, and an equal-weight mix keeps every source.
        * anything else (e.g. stereo to 3 channels) is undefined and raises ValueError.

    Args:
        audio: [C, S].
        channels: wanted number of output channels.

    Returns:
        [channels, S] (a new tensor unless the channel count is unchanged).
    """
    if audio.dim() != 2:
        raise ValueError(
            f"convert_channels expects audio of shape [C, S], got {tuple(audio.shape)}."
        )
    if channels <= 0:
        raise ValueError(f"channels must be a positive integer, got {channels}.")
    num_in = audio.shape[0]
    if num_in == channels:
        return audio
    if num_in == 1:
        return audio.repeat(channels, 1)
    if channels == 1:
        return audio.mean(dim=0, keepdim=True)
    if num_in > 2 and channels == 2:
        return audio.mean(dim=0, keepdim=True).repeat(2, 1)
    raise ValueError(
        f"cannot convert {num_in}-channel audio to {channels} channels: only mono to any "
        "count, any count to mono, and more than 2 channels to stereo are defined. Convert "
        "the file to mono or stereo first."
    )


def save_audio(
    path: str | os.PathLike[str],
    audio: torch.Tensor,
    sample_rate: int,
    *,
    subtype: str | None = None,
    atomic: bool = True,
) -> Path:
    """Write [C, S] audio to a .wav, .flac, .ogg or .mp3 file, atomically, as it is (the
    command line first applies :func:`longplay.audio.normalize_output`).

    Args:
        path: output file; the extension picks the format (.wav, .flac, or .ogg for
            Ogg Vorbis, lossy).
        audio: [C, S] floating samples, nominally in [-1, 1].
        sample_rate: samples per second.
        subtype: "PCM_16" (default), "PCM_24", or "FLOAT" (wav only); "VORBIS" for .ogg,
            "MPEG_LAYER_III" for .mp3 (see :data:`OUTPUT_FORMATS`).
        atomic: False writes ``path`` directly: for a temporary path the caller moves
            into place itself.

    Returns:
        The output path.

    Raises:
        ValueError: unsupported extension or subtype, wrong shape, empty audio, or
            NaN/inf samples (nothing is written in all these cases).
        FileNotFoundError: the output directory does not exist.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _OUTPUT_FORMATS:
        raise ValueError(
            f"cannot write {path}: unsupported extension {path.suffix!r}; supported output "
            f"formats are {', '.join(_OUTPUT_FORMATS)}."
        )
    file_format, subtypes = _OUTPUT_FORMATS[suffix]
    subtype = subtypes[0] if subtype is None else subtype.upper()
    if subtype not in subtypes:
        raise ValueError(
            f"cannot write {path}: subtype {subtype!r} is not supported for {suffix} files; "
            f"use one of {', '.join(subtypes)}."
        )
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}.")
    if audio.dim() != 2:
        raise ValueError(
            f"cannot write {path}: audio must have shape [C, S], got {tuple(audio.shape)}; "
            "remove the batch dimension or add a channel dimension."
        )
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(
            f"cannot write {path}: audio is empty (shape {tuple(audio.shape)}); there is "
            "nothing to save."
        )
    data = audio.detach().to(device="cpu", dtype=torch.float32).numpy().T  # [S, C]
    if not np.isfinite(data).all():
        raise ValueError(
            f"cannot write {path}: audio contains NaN or infinite samples; the model output "
            "diverged or was not decoded correctly. Nothing was written."
        )
    peak = float(np.abs(data).max())
    if subtype != "FLOAT" and peak > 1.0:
        logger.warning(
            "%s: peak amplitude %.3f exceeds 1.0; samples are clipped to [-1, 1] in %s. "
            "Normalise the audio (longplay.audio.normalize_output; the command line does "
            "unless --no-normalize) or write float WAV (--format wav-float, "
            "subtype='FLOAT') to keep them.",
            path,
            peak,
            subtype,
        )
        data = np.clip(data, -1.0, 1.0)
    if not atomic:  # the caller's own temporary file (longplay.atomic.atomic_output_paths)
        sf.write(str(path), np.ascontiguousarray(data), sample_rate, subtype=subtype,
                 format=file_format)
        return path
    with atomic_output_path(path) as tmp:
        sf.write(
            str(tmp), np.ascontiguousarray(data), sample_rate, subtype=subtype, format=file_format
        )
    return path

"""Rendering MIDI to audio with fluidsynth, and the finishing of a track's audio.

fluidsynth runs single-threaded with every setting that affects the sound given
explicitly and writes 32-bit float samples (no dither), so the same MIDI file and
sound font give the same samples on every run; the corpus tests check this. The
finished audio is cut where the piece was cropped (with a fade-out), trimmed of
leading and trailing silence, and peak-normalised.

Shape legend: S samples, C audio channels (2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from longplay.data.corpus.tools import Toolchain, run_tool

__all__ = [
    "FLUIDSYNTH_SETTINGS",
    "PEAK_DBFS",
    "SAMPLE_RATE",
    "SILENCE_DB",
    "finish_audio",
    "render_midi",
]

SAMPLE_RATE = 44100
PEAK_DBFS = -1.0
SILENCE_DB = -60.0
"""Samples more than this far below the track's peak count as silence when trimming."""

FLUIDSYNTH_SETTINGS: tuple[tuple[str, str], ...] = (
    ("synth.sample-rate", str(SAMPLE_RATE)),
    ("synth.cpu-cores", "1"),
    ("synth.gain", "0.2"),
    ("synth.polyphony", "256"),
    ("synth.reverb.active", "1"),
    ("synth.chorus.active", "1"),
    ("synth.lock-memory", "0"),
    ("synth.dynamic-sample-loading", "0"),
    ("player.timing-source", "sample"),
    ("player.reset-synth", "1"),
    ("audio.file.type", "wav"),
    ("audio.file.format", "float"),
    ("audio.file.endian", "little"),
)
"""Every fluidsynth setting the builder relies on, fixed (one CPU core: no thread
scheduling in the output; float samples: no dither)."""


def render_midi(tools: Toolchain, midi_path: Path, wav_path: Path) -> np.ndarray:
    """Render a MIDI file with fluidsynth and the toolchain's sound font.

    Returns:
        [S, 2] float32 samples at :data:`SAMPLE_RATE`.
    """
    options = [part for name, value in FLUIDSYNTH_SETTINGS for part in ("-o", f"{name}={value}")]
    run_tool([tools.fluidsynth, "-n", "-i", "-q", "-r", str(SAMPLE_RATE), *options,
              "-F", wav_path, tools.soundfont, midi_path],
             what=f"fluidsynth on {midi_path.name}", cwd=midi_path.parent)
    audio, rate = sf.read(str(wav_path), dtype="float32", always_2d=True)  # [S, C]
    if rate != SAMPLE_RATE or audio.shape[1] != 2:
        raise RuntimeError(f"fluidsynth wrote {audio.shape[1]} channel(s) at {rate} Hz; "
                           f"expected stereo at {SAMPLE_RATE} Hz.")
    return audio


def finish_audio(audio: np.ndarray, *, cut_s: float | None, fade_s: float) -> np.ndarray:
    """Cut, fade, trim and normalise a rendered track.

    Args:
        audio: [S, 2] rendered samples.
        cut_s: where the piece was cropped: the audio ends there, after a fade-out of
            ``fade_s`` seconds; None keeps the natural ending with its release tail.
        fade_s: fade-out length (ignored without ``cut_s``).

    Returns:
        [S', 2] float32 peaking at :data:`PEAK_DBFS`; empty when the input is silent.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if cut_s is not None:
        cut = min(len(audio), round(cut_s * SAMPLE_RATE))
        audio = audio[:cut].copy()
        fade = min(cut, round(fade_s * SAMPLE_RATE))
        if fade > 0:
            ramp = 0.5 * (1 + np.cos(np.linspace(0, np.pi, fade, dtype=np.float64)))
            audio[cut - fade:] *= ramp[:, None].astype(np.float32)
    level = np.abs(audio).max(axis=1) if len(audio) else np.zeros(0, np.float32)
    peak = float(level.max()) if len(level) else 0.0
    if peak <= 0.0:
        return audio[:0]
    loud = np.flatnonzero(level > peak * 10 ** (SILENCE_DB / 20))
    start = max(0, int(loud[0]) - round(0.01 * SAMPLE_RATE))
    end = min(len(audio), int(loud[-1]) + round(0.05 * SAMPLE_RATE))
    audio = audio[start:end] * np.float32(10 ** (PEAK_DBFS / 20) / peak)
    tail = min(len(audio), round(0.005 * SAMPLE_RATE))  # no click at the very end
    audio[len(audio) - tail:] *= np.linspace(1, 0, tail, dtype=np.float32)[:, None]
    return audio

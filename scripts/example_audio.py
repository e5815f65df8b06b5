"""Write a short synthetic stereo example (an arpeggio over a bass line) to try the VAE on."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from longplay.audio import save_audio

SAMPLE_RATE = 44100


def arpeggio(duration_s: float = 8.0, bpm: float = 120.0) -> torch.Tensor:
    """Stereo audio [2, S]: plucked notes of an A-minor arpeggio, panned, over a bass."""
    num_samples = int(duration_s * SAMPLE_RATE)
    t = torch.arange(num_samples) / SAMPLE_RATE
    audio = torch.zeros(2, num_samples)
    note_s = 60.0 / bpm / 2
    notes = [57, 60, 64, 69, 72, 69, 64, 60]  # MIDI numbers
    for i in range(int(duration_s / note_s)):
        midi = notes[i % len(notes)]
        freq = 440.0 * 2 ** ((midi - 69) / 12)
        start = int(i * note_s * SAMPLE_RATE)
        tt = t[: num_samples - start]
        tone = (torch.sin(2 * math.pi * freq * tt) + 0.3 * torch.sin(4 * math.pi * freq * tt))
        tone = tone * torch.exp(-tt * 6.0)
        pan = 0.5 + 0.4 * math.sin(i)
        audio[0, start:] += (1 - pan) * 0.3 * tone
        audio[1, start:] += pan * 0.3 * tone
    pulse = 0.6 + 0.4 * torch.sin(2 * math.pi * t * bpm / 60)
    bass = 0.2 * torch.sin(2 * math.pi * 55.0 * t) * pulse
    return audio + bass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds (default 8)")
    args = parser.parse_args()
    audio = arpeggio(args.duration)
    save_audio(args.output, audio / audio.abs().max() * 0.9, SAMPLE_RATE)
    print(f"wrote {args.output} ({args.duration:.1f} s, {SAMPLE_RATE} Hz stereo)")


if __name__ == "__main__":
    main()

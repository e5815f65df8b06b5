"""What SI-SDR a VAE can reach from what its latent carries: the ceiling of a latent of
STFT magnitudes, and how much of the input's phase it would take to reach 0 dB.

    python benchmarks/phase_ceiling.py --corpus CORPUS/test [--clips 7] [--seconds 6]

SI-SDR compares waveforms, so it needs the input's phases, not only its spectrum. The
spectral demo VAE's encoder reads STFT magnitudes alone (``longplay.autoencoder.spectral``);
its decoder must invent phases. This script measures, on the same held-out clips as
``vae_quality.py``, with the STFT of the spectral VAE (window and size 2048, hop 512), what
perfect knowledge of each part would give:

- **magnitudes only**: the input's exact magnitudes everywhere, phases found by
  Griffin-Lim (``--iters`` iterations from random phases; Griffin & Lim 1984): the best a
  decoder of exact magnitudes does without the input's phases;
- **+ phases below F**: the same, with the input's exact complex STFT below F Hz kept
  at every iteration;
- **only below F**: the input's exact complex STFT below F Hz, nothing above (how much of
  the waveform's energy lies below F).

The last column counts the phase values per latent frame (2048 samples: 4 STFT frames,
both channels) that the band below F holds: what a latent would have to carry, beside the
magnitudes, for that row's SI-SDR. The table goes to stdout and ``--out`` (markdown, plus
the per-clip scores as JSON next to it).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from _report import save_report
from longplay.evaluation import si_sdr

RESULTS = Path(__file__).resolve().parent / "results"
N_FFT = 2048
HOP = 512
SAMPLES_PER_LATENT_FRAME = 2048


def stft(x: torch.Tensor) -> torch.Tensor:
    """[C, S] float64 -> [C, F, N] complex, the spectral VAE's analysis (centred, Hann)."""
    return torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT, dtype=x.dtype),
                      center=True, return_complex=True)


def istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    return torch.istft(spec, N_FFT, HOP, window=torch.hann_window(N_FFT, dtype=spec.real.dtype),
                       center=True, length=length)


def griffin_lim(magnitude: torch.Tensor, length: int, iters: int,
                keep: torch.Tensor | None = None, keep_mask: torch.Tensor | None = None,
                seed: int = 0) -> torch.Tensor:
    """Audio whose STFT magnitudes approach ``magnitude`` [C, F, N]: phases from random
    (seeded), then ``iters`` rounds of inverse STFT and STFT keeping the phases. Where
    ``keep_mask`` is true the complex STFT is ``keep`` throughout."""
    generator = torch.Generator().manual_seed(seed)
    phase = torch.rand(magnitude.shape, generator=generator, dtype=magnitude.dtype)
    spec = torch.polar(magnitude, phase * 2 * math.pi)
    for _ in range(iters + 1):
        if keep is not None:
            spec = torch.where(keep_mask, keep, spec)
        audio = istft(spec, length)
        spec = torch.polar(magnitude, stft(audio).angle())
    return audio


def si_sdr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    return si_sdr(reference.float(), estimate.float())


MAGNITUDES_ONLY = "magnitudes only"


def kept_name(cutoff: float) -> str:
    """The row of exact magnitudes with the input's phases kept below ``cutoff``."""
    return f"+ phases below {cutoff:g} Hz"


def band_name(cutoff: float) -> str:
    """The row of the input's exact STFT below ``cutoff``, nothing above."""
    return f"only below {cutoff:g} Hz"


def ceilings(clip: torch.Tensor, sample_rate: int, cutoffs: list[float],
             iters: int) -> dict[str, float]:
    """SI-SDR (dB) of each reconstruction of ``clip`` [C, S] (module docstring)."""
    x = clip.to(torch.float64)
    length = x.shape[-1]
    spec = stft(x)
    magnitude = spec.abs()
    freqs = torch.arange(spec.shape[-2], dtype=torch.float64) * sample_rate / N_FFT
    scores = {MAGNITUDES_ONLY: si_sdr_db(x, griffin_lim(magnitude, length, iters))}
    for cutoff in cutoffs:
        mask = (freqs < cutoff)[None, :, None].expand_as(spec)
        rebuilt = griffin_lim(magnitude, length, iters, keep=spec, keep_mask=mask)
        scores[kept_name(cutoff)] = si_sdr_db(x, rebuilt)
        scores[band_name(cutoff)] = si_sdr_db(
            x, istft(torch.where(mask, spec, torch.zeros_like(spec)), length))
    return scores


def phase_values(cutoff: float, sample_rate: int, channels: int) -> int:
    """Phase values per latent frame in the band below ``cutoff`` (bins 0 .. below it)."""
    bins = math.ceil(cutoff * N_FFT / sample_rate)
    return bins * (SAMPLES_PER_LATENT_FRAME // HOP) * channels


def report(per_clip: list[dict], cutoffs: list[float], args, sample_rate: int,
           channels: int) -> str:
    lines = [
        "# SI-SDR ceilings of a latent of magnitudes",
        "",
        f"`python benchmarks/phase_ceiling.py --clips {args.clips} --seconds {args.seconds:g} "
        f"--iters {args.iters}` on {len(per_clip)} held-out clips "
        f"({', '.join(c['clip'] for c in per_clip)}); "
        f"STFT {N_FFT} / hop {HOP}, Griffin-Lim {args.iters} iterations. Target: SI-SDR >= 0 dB.",
        "",
        "| reconstruction | SI-SDR mean (dB) | per clip (dB) | phase values per latent frame |",
        "|---|---:|---|---:|",
    ]
    rows = [(MAGNITUDES_ONLY, "0")]
    rows += [(kept_name(c), str(phase_values(c, sample_rate, channels))) for c in cutoffs]
    rows += [(band_name(c), "(all of the band, no magnitudes above)") for c in cutoffs]
    for name, extra in rows:
        values = [c["scores"][name] for c in per_clip]
        lines.append(f"| {name} | {sum(values) / len(values):.1f} | "
                     f"{' / '.join(f'{v:.1f}' for v in values)} | {extra} |")
    return "\n".join(lines) + "\n"


def _cutoffs(text: str) -> list[float]:
    try:
        values = [float(c) for c in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 < v < 1e6 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive frequencies in Hz, comma-"
                                         f"separated (e.g. 200,800), got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="folder of held-out audio")
    parser.add_argument("--clips", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--iters", type=int, default=64)
    parser.add_argument("--cutoffs", type=_cutoffs, default=_cutoffs("100,200,400,800,1600"),
                        help="band edges in Hz, comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS / "phase_ceiling.md")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.iters < 0 or not args.seconds * 44100 > N_FFT:
        parser.error(f"--clips must be at least 1, --iters at least 0 and --seconds longer "
                     f"than one STFT window ({N_FFT / 44100:.3f} s); got {args.clips}, "
                     f"{args.iters} and {args.seconds:g}")
    from vae_quality import _clips

    cutoffs = args.cutoffs
    sample_rate, channels = 44100, 2
    clips = _clips(args.corpus, args.clips, args.seconds, sample_rate, channels)
    per_clip = []
    for name, clip in clips:
        scores = ceilings(clip, sample_rate, cutoffs, args.iters)
        per_clip.append({"clip": name, "scores": scores})
        print(name, {k: round(v, 1) for k, v in scores.items()}, flush=True)
    save_report(report(per_clip, cutoffs, args, sample_rate, channels), args.out, per_clip)
    return 0


if __name__ == "__main__":
    sys.exit(main())

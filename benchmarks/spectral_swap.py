"""Which half of a spectral VAE's output limits each measure: its magnitudes or its phases.

    python benchmarks/spectral_swap.py --corpus CORPUS/test [--model demo] [--clips 7] \
        [--seconds 6]

The spectral decoder (``longplay.autoencoder.spectral``) writes an STFT, magnitudes and
phases, that one inverse STFT turns into audio. On the held-out clips of
``vae_quality.py`` (``--clips`` files of the folder, sorted, each cut to ``--seconds``
from its start), this script rebuilds each clip from the decoder's magnitudes or the
input's exact ones, each with three kinds of phases: the decoder's, the input's exact
ones (the input's STFT on the decoder's grid: the same window, hop and frames), and
phases derived from those magnitudes alone (:func:`phases_from_magnitudes`: each
spectral peak a steady partial at its interpolated frequency). Each rebuild is scored
against the input by ``longplay.evaluation.ReconstructionMetrics``, as
``vae_quality.py`` scores a VAE.

How to read it: the input's magnitudes with the input's phases is the STFT round trip
(near perfect). The phases derived from the input's magnitudes show what phases that
follow the magnitudes' peaks can do when the peaks are right; derived from the
decoder's magnitudes, what they do with the decoder's peaks. The decoder's magnitudes
with the input's phases show how much the input's phases, which the latent does not
carry (``phase_ceiling.py``), would mend. The table goes to stdout and ``--out``
(markdown, plus the rows as JSON next to it).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from _report import save_report
from longplay.assets import model_or_demo
from longplay.autoencoder.spectral import SpectralDecoder
from longplay.checkpoints import load_vae
from longplay.evaluation import ReconstructionMetrics
from vae_quality import _clips

RESULTS = Path(__file__).resolve().parent / "results"
MAGNITUDES = ("decoder", "input")
PHASES = ("decoder", "input", "magnitudes")
COLUMNS = (("mel_distance", "MEL distance", "{:.2f}"), ("si_sdr", "SI-SDR (dB)", "{:.1f}"),
           ("added_tone_db", "added tone, mean (dB)", "{:.1f}"),
           ("worst_added_tone_db", "added tone, worst (dB)", "{:.1f}"),
           ("chroma_correlation", "chroma correlation", "{:.3f}"),
           ("pitch_agreement", "pitch agreement (%)", "{:.1%}"))


def row_name(magnitudes: str, phases: str) -> str:
    if phases == "magnitudes":
        return f"{magnitudes}'s magnitudes, phases derived from them"
    return f"{magnitudes}'s magnitudes, {phases}'s phases"


def phases_from_magnitudes(magnitude: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Phases [..., F, N] for STFT magnitudes [..., F, N] (centred frames, a periodic Hann
    window of ``n_fft``, hop ``hop``) that make every spectral peak a steady partial.

    In each frame the peaks are the bins louder than the bin below and at least as loud as
    the bin above; a peak's frequency is refined by a parabola through the log-magnitudes
    of its bin and its two neighbours (``p + delta`` bins, ``|delta| <= 1/2``). Every bin
    follows its nearest peak (the lower one on a tie): its phase advances from frame to
    frame by that peak's frequency times the hop (the mean of the two frames'), summed
    from the first frame, and a bin ``k`` is offset by ``-pi (k - p - delta)``, plus ``pi``
    on the window's sidelobes where its spectrum is negative: the phase that the Hann
    window's spectrum gives a sinusoid of frequency ``p + delta`` bins in bin ``k``,
    measured from the frame's start. With
    exact magnitudes this rebuilds partials at their own frequencies (no line at the bin
    centres); with a decoder's magnitudes, each of its peaks, right or wrong, becomes a
    partial too."""
    logm = torch.log(magnitude.double() + 1e-12)
    bins = logm.shape[-2]
    below, centre, above = logm[..., :-2, :], logm[..., 1:-1, :], logm[..., 2:, :]
    peak = torch.zeros_like(logm, dtype=torch.bool)
    peak[..., 1:-1, :] = (centre > below) & (centre >= above)
    curvature = below - 2 * centre + above
    delta = torch.zeros_like(logm)
    delta[..., 1:-1, :] = (0.5 * (below - above) / torch.where(
        curvature < 0, curvature, torch.full_like(curvature, -1.0))).clamp(-0.5, 0.5)
    k = torch.arange(bins, dtype=torch.float64, device=logm.device)
    k = k.view(bins, 1).expand_as(logm)
    far = torch.full_like(k, -math.inf)
    lower = torch.cummax(torch.where(peak, k, far), dim=-2).values  # nearest peak at or below
    upper = -torch.cummax(torch.where(peak, -k, far).flip(-2), dim=-2).values.flip(-2)
    owner = torch.where((k - lower) <= (upper - k), lower, upper)
    owner = torch.where(torch.isfinite(owner), owner, k).long()  # a frame without peaks
    frequency = owner.double() + torch.gather(delta, -2, owner)  # in bins
    step = 2 * math.pi * frequency * hop / n_fft
    advance = torch.zeros_like(step)
    advance[..., 1:] = 0.5 * (step[..., 1:] + step[..., :-1])
    accumulated = torch.gather(torch.cumsum(advance, dim=-1), -2, owner)
    # The window's spectrum changes sign at each of its zeros beyond the main lobe
    # (|x| = 2, 3, ... bins from the partial): negative for 2 < |x| < 3, and so on.
    distance = (k - frequency).abs().floor()
    sidelobe = ((distance >= 2) & (distance.remainder(2) == 0)).double()
    return (accumulated - math.pi * (k - frequency) + math.pi * sidelobe).to(magnitude.dtype)


def swaps(vae, clip: torch.Tensor) -> dict[str, torch.Tensor]:
    """The six rebuilds of one clip [C, S], by row name: the decoder's inverse STFT of
    each pair of magnitudes and phases. The input's STFT is the encoder's (the decoder's
    grid) of the clip zero-padded to the decoder's length."""
    decoder = vae.decoder
    with torch.inference_mode():
        latents = vae.encode(clip[None]).mode()
        mine = decoder.spectrum(latents)
        padded = torch.nn.functional.pad(clip.float(), (0, latents.shape[-1] * vae.hop_length
                                                        - clip.shape[-1]))
        theirs = vae.encoder.stft(padded[None])
        magnitudes = {"decoder": mine.abs(), "input": theirs.abs()}
        phases = {"decoder": mine.angle(), "input": theirs.angle()}
        rows = {}
        for m in MAGNITUDES:
            phases["magnitudes"] = phases_from_magnitudes(magnitudes[m], decoder.n_fft,
                                                          decoder.frame_hop)
            for p in PHASES:
                audio = decoder.synthesize(torch.polar(magnitudes[m], phases[p]))
                rows[row_name(m, p)] = audio[0, :, :clip.shape[-1]]
        return rows


def report(rows: list[dict], args, num_clips: int) -> str:
    lines = ["# Magnitudes or phases: the spectral VAE's reconstructions with either half "
             "swapped for the input's", "",
             f"Model: `{args.model}`; {num_clips} clips of `{args.corpus}`, the first "
             f"{args.seconds:g} s of each; metrics of longplay.evaluation.ReconstructionMetrics "
             "(means over clips; the worst added tone is the largest of any clip).", "",
             "| rebuilt from | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for row in rows:
        lines.append(f"| {row['name']} | "
                     + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="folder of held-out audio")
    parser.add_argument("--model", default="demo",
                        help="a spectral VAE or a model folder with one (default: the "
                             "bundled demo model)")
    parser.add_argument("--clips", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "spectral_swap.md")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error(f"--clips must be at least 1, got {args.clips}")
    if not args.corpus.is_dir():
        parser.error(f"--corpus {args.corpus} is not a folder: give the held-out audio folder")
    vae = load_vae(model_or_demo(args.model))
    if not isinstance(vae.decoder, SpectralDecoder):
        parser.error(f"--model {args.model}: its VAE's decoder is "
                     f"{type(vae.decoder).__name__}, not a spectral one (architecture "
                     "\"spectral\"): there is no STFT to swap halves of")
    if args.seconds * vae.sample_rate <= vae.decoder.n_fft:
        parser.error(f"--seconds {args.seconds:g} is shorter than one STFT window "
                     f"({vae.decoder.n_fft} samples): give a few seconds")
    clips = _clips(args.corpus, args.clips, args.seconds, vae.sample_rate, vae.audio_channels)
    metrics = {row_name(m, p): ReconstructionMetrics() for m in MAGNITUDES for p in PHASES}
    for name, clip in clips:
        for row, audio in swaps(vae, clip).items():
            metrics[row].update(clip, audio, vae.sample_rate)
        print(f"scored {name}", flush=True)
    rows = [{"name": row, **metric.compute().as_dict()} for row, metric in metrics.items()]
    save_report(report(rows, args, len(clips)), args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

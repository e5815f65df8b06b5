"""Reconstruction quality of VAEs on held-out tracks, with the checks that hear what a
small VAE breaks: DC, added tonal lines, chroma and pitch.

    python benchmarks/vae_quality.py --corpus CORPUS/test \
        --model first=MODEL_A --model new=MODEL_B [--clips 8] [--seconds 10]

Each MODEL is anything ``longplay.checkpoints.load_vae`` reads (a VAE or model folder,
a weight file, or a bundled model's name). The same clips (``--clips`` files of the
folder, sorted, each cut to ``--seconds`` from its start, at the VAE's rate) go through
every model: encode, posterior mean, decode, scored against the original by
``longplay.evaluation.ReconstructionMetrics`` (STFT and mel distances, SI-SDR, DC,
added tone, chroma and harmonic detail correlations, pitch agreement; definitions in
``longplay.evaluation.fidelity``). A second pass decodes the encoding of 5 s of digital
silence and reports its DC and level. The table goes to stdout and ``--out`` (markdown,
plus the same rows as JSON next to it).

The issue's targets are in the table's header: MEL <= 1.3, SI-SDR >= 0 dB, |DC| < 1e-3
on silence and music, no added tone above -40 dB, chroma correlation >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

from _report import save_report

RESULTS = Path(__file__).resolve().parent / "results"


def _model_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def _clips(folder: Path, count: int, seconds: float, sample_rate: int,
           channels: int) -> list[tuple[str, torch.Tensor]]:
    from longplay.audio import load_audio

    files = sorted(p for p in folder.rglob("*")
                   if p.suffix.lower() in {".wav", ".flac", ".ogg", ".mp3"})
    if not files:
        raise SystemExit(f"no audio files in {folder}")
    clips = []
    for path in files[:count]:
        wave = load_audio(path, sample_rate=sample_rate, channels=channels)
        clips.append((path.name, wave.audio[:, : round(seconds * sample_rate)]))
    return clips


def own_input_nearest(inputs: list[torch.Tensor], estimates: list[torch.Tensor]) -> float:
    """Share of reconstructions whose average log spectrum is nearer to their own input's
    than to any other input's: 1 for a VAE that follows its input, about 1 / len for one
    that has collapsed to an average output (what a small VAE can settle in early)."""
    from longplay.audio import stft_magnitude

    def spectrum(x: torch.Tensor) -> torch.Tensor:
        return stft_magnitude(x.mean(0), 2048, 512).mean(-1).clamp(min=1e-5).log()

    distances = torch.cdist(torch.stack([spectrum(e) for e in estimates]),
                            torch.stack([spectrum(x) for x in inputs]))
    own = distances.argmin(dim=1) == torch.arange(len(inputs))
    return float(own.float().mean())


def score_model(vae, clips: list[tuple[str, torch.Tensor]]) -> dict:
    from longplay.evaluation import ReconstructionMetrics

    metrics = ReconstructionMetrics()
    start = time.perf_counter()
    estimates = []
    with torch.inference_mode():
        for _, audio in clips:
            estimate = vae.reconstruct(audio[None])[0]
            metrics.update(audio, estimate, vae.sample_rate)
            estimates.append(estimate)
        silence = torch.zeros(1, vae.audio_channels, 5 * vae.sample_rate)
        decoded = vae.reconstruct(silence)[0]
    scores = metrics.compute().as_dict()
    scores["own_input_nearest"] = own_input_nearest([a for _, a in clips], estimates)
    scores["silence_dc"] = float(decoded.mean(dim=-1).abs().max())
    scores["silence_dbfs"] = 20 * math.log10(max(float(decoded.pow(2).mean().sqrt()), 1e-10))
    scores["parameters"] = sum(p.numel() for p in vae.parameters())
    scores["seconds"] = time.perf_counter() - start
    return scores


def report(rows: list[dict], args, num_clips: int) -> str:
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"torch {torch.__version__}")

    def pct(x):
        return "—" if x is None else f"{100 * x:.0f} %"

    def num(x, fmt):
        return "—" if x is None else format(x, fmt)

    lines = [
        "# VAE reconstruction on held-out tracks", "",
        f"`python benchmarks/vae_quality.py` on {machine}: the first {num_clips} files of "
        f"`{args.corpus.name}/`, {args.seconds:g} s each from the start, posterior mean; "
        "silence: 5 s of digital silence through the VAE. Targets: MEL <= 1.3, SI-SDR >= 0 "
        "dB, |DC| < 1e-3, no added tone above -40 dB, chroma correlation >= 0.8. Nearest own "
        "input: share of reconstructions whose spectrum is nearest their own input's "
        "(1/N for a VAE collapsed to one output).", "",
        "| VAE | parameters | STFT | MEL | SI-SDR (dB) | DC (music) | DC (silence) | "
        "silence level (dBFS) | added tone, mean / worst (dB) | chroma correlation | "
        "harmonic detail correlation | pitched frames, input -> output | pitch agreement | "
        "nearest own input |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['parameters'] / 1e6:.1f}M | {r['stft_distance']:.2f} | "
            f"{r['mel_distance']:.2f} | {r['si_sdr']:.2f} | {r['dc_offset']:.1e} | "
            f"{r['silence_dc']:.1e} | {r['silence_dbfs']:.1f} | "
            f"{r['added_tone_db']:.1f} / {r['worst_added_tone_db']:.1f} | "
            f"{num(r['chroma_correlation'], '.2f')} | "
            f"{num(r['harmonic_detail_correlation'], '.2f')} | "
            f"{pct(r['pitched_share_reference'])} -> {pct(r['pitched_share_estimate'])} | "
            f"{pct(r['pitch_agreement'])} | {pct(r['own_input_nearest'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="folder of held-out audio")
    parser.add_argument("--model", type=_model_arg, action="append", required=True,
                        metavar="NAME=PATH", help="a VAE to score (repeatable)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "vae_quality.md")
    args = parser.parse_args()

    from longplay.assets import model_or_demo
    from longplay.checkpoints import load_vae

    rows = []
    clips = None
    for name, path in args.model:
        vae = load_vae(model_or_demo(path))
        if clips is None:
            clips = _clips(args.corpus, args.clips, args.seconds, vae.sample_rate,
                           vae.audio_channels)
        row = {"name": name, "path": path, **score_model(vae, clips)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    text = report(rows, args, len(clips))
    save_report(text, args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: full-size VAE decode time and peak memory, longplay against diffusers.

Both implementations decode the same random latents with the same random weights of
the Stable Audio Open 1.0 VAE (156M parameters): diffusers' ``AutoencoderOobleck``
(the reference; stable-audio-tools gives identical outputs) is built with seed 0 and
saved, and longplay loads that folder. Time and memory don't depend on the weight
values. Each row runs in a fresh Python process, so its peak RSS is that decode's own.

Rows:
- reference, fp32, the whole latent at once (it has no chunking);
- longplay fp32 and bf16 convolutions (``AudioVAE.set_conv_dtype``), with the
  memory-aware chunk size the pipeline uses (``AudioVAE.auto_chunk_frames``);
- for 10 s also longplay fp32 unchunked, the same computation as the reference.

Decode times are medians of ``--repeats`` decodes after a warm-up (10 s only; longer
ones are timed once). The ratio compares seconds per audio-second with the reference's
10 s decode. Outputs of 10 s decodes are compared with the reference (SI-SDR, max
difference). The reference is not run beyond 60 s: it needs about 9 GB for 60 s and
does not fit 4m45s in 24 GiB.

    pip install -e ".[bench]"
    python benchmarks/vae_decode.py                 # 10 s, 60 s, 285 s
    python benchmarks/vae_decode.py --seconds 10    # one duration

Prints a table and writes benchmarks/results/vae_decode.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
REFERENCE_MAX_SECONDS = 60.0
LATENT_RATE = 44100 / 2048


def save_reference(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderOobleck

    torch.manual_seed(0)
    AutoencoderOobleck().eval().save_pretrained(folder)


def _latents(seconds: float):
    import torch

    generator = torch.Generator().manual_seed(1)
    return torch.randn(1, 64, round(seconds * LATENT_RATE), generator=generator)


def worker(args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    latents = _latents(args.seconds)
    if args.impl == "reference":
        from diffusers import AutoencoderOobleck

        model = AutoencoderOobleck.from_pretrained(args.weights).eval()

        def decode():
            return model.decode(latents).sample
        chunk = None
    else:
        from longplay.checkpoints import load_vae

        vae = load_vae(args.weights).eval()
        if args.precision == "bf16":
            vae.set_conv_dtype(torch.bfloat16)
        chunk = (None if args.chunk == "none" else
                 vae.auto_chunk_frames(latents.shape[-1]) if args.chunk == "auto"
                 else int(args.chunk))

        def decode():
            return vae.decode(latents, chunk_frames=chunk)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    with torch.inference_mode():
        runs = args.repeats + 1 if args.repeats > 1 else 1
        for _ in range(runs):
            start = time.perf_counter()
            audio = decode()
            times.append(time.perf_counter() - start)
    if args.repeats > 1:
        times = times[1:]  # the first run warms up allocators and oneDNN kernels
    if args.save:
        import numpy as np

        np.save(args.save, audio[0].float().numpy())
    seconds = statistics.median(times)
    return {"impl": args.impl, "precision": args.precision, "seconds": args.seconds,
            "chunk_frames": chunk, "decode_s": seconds, "runs": len(times),
            "s_per_audio_s": seconds / args.seconds,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "rss_after_model_bytes": rss_model, "threads": torch.get_num_threads()}


def run_one(weights: Path, impl: str, precision: str, seconds: float, chunk: str,
            repeats: int, threads: int | None, save: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--weights", str(weights), "--impl", impl,
           "--precision", precision, "--seconds", str(seconds), "--chunk", chunk,
           "--repeats", str(repeats)]
    if threads:
        cmd += ["--threads", str(threads)]
    if save is not None:
        cmd += ["--save", str(save)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"impl": impl, "precision": precision, "seconds": seconds, "chunk": chunk,
                "error": lines[-1] if lines else f"exit code {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(reference: Path, other: Path) -> dict:
    import numpy as np
    import torch

    from longplay.evaluation import si_sdr

    a, b = torch.from_numpy(np.load(reference)), torch.from_numpy(np.load(other))
    return {"si_sdr_db": si_sdr(a, b), "max_abs_diff": float((a - b).abs().max())}


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def _mode(r: dict) -> str:
    if r["impl"] == "reference":
        return "whole"
    chunk = r.get("chunk_frames", r.get("chunk"))
    return "whole" if chunk in (None, "none") else f"chunks of {chunk}"


def table(rows: list[dict]) -> str:
    lines = ["| audio | implementation | precision | mode | decode (s) | s per audio-s "
             "| vs reference 10 s | peak RSS (GiB) | SI-SDR vs reference (dB) |",
             "|---:|---|---|---|---:|---:|---:|---:|---:|"]
    base = next((r for r in rows if r["impl"] == "reference" and r["seconds"] == 10
                 and "error" not in r), None)
    for r in rows:
        name = "diffusers (reference)" if r["impl"] == "reference" else "longplay"
        head = f"| {r['seconds']:.0f} s | {name} | {r['precision']} | {_mode(r)} |"
        if "error" in r:
            lines.append(f"{head} failed: {r['error']} | | | | |")
            continue
        ratio = f"{base['s_per_audio_s'] / r['s_per_audio_s']:.2f}x" if base else "-"
        quality = f"{r['si_sdr_db']:.1f}" if "si_sdr_db" in r else ""
        lines.append(f"{head} {r['decode_s']:.1f} | {r['s_per_audio_s']:.2f} | {ratio} | "
                     f"{gib(r['peak_rss_bytes'])} | {quality} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="*", default=[10.0, 60.0, 285.0])
    parser.add_argument("--repeats", type=int, default=3, help="timed decodes of 10 s")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="longplay", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--chunk", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        args.seconds = args.seconds[0]
        print(json.dumps(worker(args)))
        return 0

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vae"
        save_reference(weights)
        for seconds in args.seconds:
            short = seconds <= 10
            repeats = args.repeats if short else 1
            plan = []
            if seconds <= REFERENCE_MAX_SECONDS:
                plan.append(("reference", "fp32", "none"))
            if short:
                plan.append(("longplay", "fp32", "none"))
            plan += [("longplay", "fp32", "auto"), ("longplay", "bf16", "auto")]
            outputs = {}
            for impl, precision, chunk in plan:
                save = Path(tmp) / f"{impl}-{precision}-{chunk}.npy" if short else None
                row = run_one(weights, impl, precision, seconds, chunk, repeats, args.threads,
                              save)
                if save is not None and "error" not in row:
                    outputs[(impl, precision, chunk)] = save
                    if impl != "reference" and ("reference", "fp32", "none") in outputs:
                        row |= compare(outputs[("reference", "fp32", "none")], save)
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    text = (f"# VAE decode, full-size Stable Audio Open 1.0 VAE (random weights)\n\n"
            f"Machine: {machine}. Each row a fresh process; 10 s rows are medians of "
            f"{args.repeats} decodes after a warm-up, longer rows one decode. The reference "
            f"is diffusers' AutoencoderOobleck on the same weights, whole-signal fp32 (not "
            f"run beyond {REFERENCE_MAX_SECONDS:.0f} s: it does not fit 4m45s in 24 GiB). "
            f"longplay's chunks are the memory-aware default (`auto_chunk_frames`); bf16 = "
            f"the convolutions in bfloat16 through oneDNN, activations in fp32.\n\n"
            f"{table(rows)}\n")
    print()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vae_decode.md").write_text(text)
    (RESULTS / "vae_decode.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

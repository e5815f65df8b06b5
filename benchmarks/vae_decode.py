"""Benchmark: full-size VAE decode time and peak memory, chunked and unchunked.

Each measurement runs in a fresh Python process (so peak RSS is that decode's own),
with random weights of the Stable Audio Open 1.0 VAE (156M parameters) and random
latents: time and memory don't depend on the weight values.

    python benchmarks/vae_decode.py                # 10 s, 60 s, 285 s
    python benchmarks/vae_decode.py --seconds 10   # just one duration

Prints a table and writes benchmarks/results/vae_decode.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
# Unchunked decodes need memory in proportion to the duration: about 9 GB for 60 s in
# the reference implementation. Beyond this duration it does not fit in 24 GiB.
UNCHUNKED_MAX_SECONDS = 60.0


def worker(seconds: float, chunk_frames: int | None, threads: int | None) -> dict:
    import torch

    from longplay.checkpoints import build_vae
    from longplay.config import vae_preset

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = vae_preset("stable-audio-open-1.0")
    vae = build_vae(config).eval()
    num_frames = round(seconds * config.latent_rate)
    latents = torch.randn(1, config.latent_dim, num_frames)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    with torch.inference_mode():
        audio = vae.decode(latents, chunk_frames=chunk_frames)
    elapsed = time.perf_counter() - start
    assert audio.shape[-1] == num_frames * config.hop_length
    return {
        "seconds": seconds,
        "num_frames": num_frames,
        "chunk_frames": chunk_frames,
        "decode_s": elapsed,
        "s_per_audio_s": elapsed / seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_after_model_bytes": rss_model,
        "threads": torch.get_num_threads(),
    }


def run_one(seconds: float, chunk_frames: int | None, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--seconds", str(seconds),
           "--chunk-frames", str(chunk_frames or 0)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"seconds": seconds, "chunk_frames": chunk_frames,
                "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def table(rows: list[dict]) -> str:
    lines = ["| audio | mode | decode time (s) | s per audio-s | vs unchunked 10 s "
             "| peak RSS (GiB) |", "|---:|---|---:|---:|---:|---:|"]
    base = next((r for r in rows if r.get("chunk_frames") is None and r["seconds"] == 10
                 and "error" not in r), None)
    for r in rows:
        mode = "unchunked" if r.get("chunk_frames") is None else f"chunks of {r['chunk_frames']}"
        if "error" in r:
            lines.append(f"| {r['seconds']:.0f} s | {mode} | failed: {r['error']} | | | |")
            continue
        ratio = (f"{base['s_per_audio_s'] / r['s_per_audio_s']:.2f}x" if base else "-")
        lines.append(f"| {r['seconds']:.0f} s | {mode} | {r['decode_s']:.1f} | "
                     f"{r['s_per_audio_s']:.2f} | {ratio} | {gib(r['peak_rss_bytes'])} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="*", default=[10.0, 60.0, 285.0])
    parser.add_argument("--chunk-frames", type=int, default=None,
                        help="chunk size in latent frames (default: the library default)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = worker(args.seconds[0], args.chunk_frames or None, args.threads)
        print(json.dumps(result))
        return 0

    from longplay.autoencoder import DEFAULT_CHUNK_FRAMES

    chunk = args.chunk_frames or DEFAULT_CHUNK_FRAMES
    rows = []
    for seconds in args.seconds:
        for chunk_frames in ([None, chunk] if seconds <= UNCHUNKED_MAX_SECONDS else [chunk]):
            row = run_one(seconds, chunk_frames, args.threads)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    text = (f"# VAE decode, full-size Stable Audio Open 1.0 architecture (random weights)\n\n"
            f"Machine: {machine}; fp32; each row a fresh process. Unchunked decodes are run "
            f"only up to {UNCHUNKED_MAX_SECONDS:.0f} s (longer ones do not fit in memory).\n\n"
            f"{table(rows)}\n")
    print()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vae_decode.md").write_text(text)
    (RESULTS / "vae_decode.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

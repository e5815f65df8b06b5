"""Benchmark: full-size VAE decode time and peak memory, longplay against diffusers.

Both implementations decode the same random latents with the same random weights of
the Stable Audio Open 1.0 VAE (156M parameters): diffusers' ``AutoencoderOobleck``
(the reference; stable-audio-tools gives identical outputs) is built with seed 0 and
saved, and longplay loads that folder. Time and memory don't depend on the weight
values. Each row runs in a fresh Python process, so its peak RSS is that decode's own.

Rows:
- reference, fp32, the whole latent at once (it has no chunking), and cast to bf16
  (``.to(torch.bfloat16)``, as a diffusers user would);
- longplay fp32, longplay cast to bf16 the same way (the same-precision comparison), and
  bf16 convolutions with fp32 activations (``AudioVAE.set_conv_dtype``, the pipeline's
  bf16), with the memory-aware chunk size the pipeline uses
  (``AudioVAE.auto_chunk_frames``).

Speed (the ratios): one process holds the reference and longplay and decodes 10 s
with each in turn, ``--repeats`` rounds after a warm-up round; a round's ratio is the
reference's time over longplay's, and the table gives the median ratio. Interleaving
matters on shared machines, whose speed drifts by 2x within minutes. Outputs are
compared with the reference's (SI-SDR, max difference).

Memory (peak RSS) and the long decodes: each row a fresh process with one decode
(its time is shown too, but compare those across rows with care). The reference is
not run beyond 60 s: it needs about 9 GB for 60 s and does not fit 4m45s in 24 GiB.

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

from _report import save_report
from _report import seconds as fmt_s

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
    with torch.inference_mode():  # one decode: this row is about peak memory
        start = time.perf_counter()
        decode()
        seconds = time.perf_counter() - start
    return {"impl": args.impl, "precision": args.precision, "seconds": args.seconds,
            "chunk_frames": chunk, "decode_s": seconds,
            "s_per_audio_s": seconds / args.seconds,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "rss_after_model_bytes": rss_model, "threads": torch.get_num_threads()}


SPEED_RUNS = {  # name -> (implementation, precision, what it is, same-precision reference)
    "reference": ("diffusers (reference)", "fp32", "", None),
    "reference_bf16": ("diffusers (reference)", "bf16", "cast: `.to(torch.bfloat16)`", None),
    "fp32": ("longplay", "fp32", "", "reference"),
    "bf16_cast": ("longplay", "bf16", "cast: `.to(torch.bfloat16)`, as the reference",
                  "reference_bf16"),
    "bf16": ("longplay", "bf16 convolutions", "activations in fp32 (the pipeline's bf16)",
             "reference_bf16"),
}


def interleaved(args) -> dict:
    """Rounds of 10 s decodes by each of SPEED_RUNS in one process."""
    import torch
    from diffusers import AutoencoderOobleck

    from longplay.checkpoints import load_vae
    from longplay.evaluation import si_sdr

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    latents = _latents(args.seconds).to(device)
    reference = AutoencoderOobleck.from_pretrained(args.weights).eval().to(device)
    reference_bf16 = AutoencoderOobleck.from_pretrained(args.weights).eval().to(
        device, torch.bfloat16)
    fp32 = load_vae(args.weights, device=device).eval()
    cast = load_vae(args.weights, device=device).eval().to(torch.bfloat16)
    bf16 = load_vae(args.weights, device=device).eval().set_conv_dtype(torch.bfloat16)
    frames = latents.shape[-1]
    runs = {"reference": lambda: reference.decode(latents).sample,
            "reference_bf16": lambda: reference_bf16.decode(latents.bfloat16()).sample,
            "fp32": lambda: fp32.decode(latents, chunk_frames=fp32.auto_chunk_frames(frames)),
            "bf16_cast": lambda: cast.decode(latents.bfloat16(),
                                             chunk_frames=cast.auto_chunk_frames(frames)),
            "bf16": lambda: bf16.decode(latents, chunk_frames=bf16.auto_chunk_frames(frames))}
    times: dict[str, list[float]] = {k: [] for k in runs}
    outputs = {}
    with torch.inference_mode():
        for round_ in range(args.repeats + 1):
            for name, fn in runs.items():
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                outputs[name] = fn().float().cpu()
                if round_:  # round 0 warms up
                    times[name].append(time.perf_counter() - start)
    result = {"seconds": args.seconds, "rounds": args.repeats, "times": times}
    for name, (_, _, _, same) in SPEED_RUNS.items():
        ratios = [r / t for r, t in zip(times["reference"], times[name], strict=True)]
        entry = {"median_ratio": statistics.median(ratios), "ratios": ratios,
                 "median_s": statistics.median(times[name])}
        if same is not None:
            same_ratios = [r / t for r, t in zip(times[same], times[name], strict=True)]
            entry.update(same_ratios=same_ratios,
                         median_same_ratio=statistics.median(same_ratios))
        if name != "reference":
            entry.update(si_sdr_db=si_sdr(outputs["reference"][0], outputs[name][0]),
                         max_abs_diff=float((outputs["reference"] - outputs[name]).abs().max()))
        result[name] = entry
    result["reference_median_s"] = statistics.median(times["reference"])
    return result


def run_one(weights: Path, impl: str, precision: str, seconds: float, chunk: str,
            repeats: int, threads: int | None, device: str = "cpu") -> dict:
    cmd = [sys.executable, __file__, "--worker", "--weights", str(weights), "--impl", impl,
           "--precision", precision, "--seconds", str(seconds), "--chunk", chunk,
           "--repeats", str(repeats), "--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"impl": impl, "precision": precision, "seconds": seconds, "chunk": chunk,
                "error": lines[-1] if lines else f"exit code {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def _mode(r: dict) -> str:
    if r["impl"] == "reference":
        return "whole"
    chunk = r.get("chunk_frames", r.get("chunk"))
    return "whole" if chunk in (None, "none") else f"chunks of {chunk}"


def speed_table(result: dict) -> str:
    seconds = result["seconds"]
    lines = [f"| implementation | precision | notes | median {seconds:g} s decode (s) | "
             "s per audio-s | vs reference, same precision (rounds) | vs reference fp32 | "
             "SI-SDR vs reference fp32 (dB) | max abs diff |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, (impl, precision, notes, same) in SPEED_RUNS.items():
        r = result[name]
        same_text = ("" if same is None else f"**{r['median_same_ratio']:.2f}x** "
                     f"({', '.join(f'{x:.2f}' for x in r['same_ratios'])})")
        quality = ("| | |" if name == "reference"
                   else f"| {r['si_sdr_db']:.1f} | {r['max_abs_diff']:.1e} |")
        lines.append(f"| {impl} | {precision} | {notes} | {fmt_s(r['median_s'])} | "
                     f"{fmt_s(r['median_s'] / seconds)} | {same_text} | {r['median_ratio']:.2f}x "
                     f"{quality}")
    return "\n".join(lines)


def memory_table(rows: list[dict]) -> str:
    lines = ["| audio | implementation | precision | mode | decode (s) | s per audio-s "
             "| peak RSS (GiB) |", "|---:|---|---|---|---:|---:|---:|"]
    for r in rows:
        name = "diffusers (reference)" if r["impl"] == "reference" else "longplay"
        head = f"| {r['seconds']:.0f} s | {name} | {r['precision']} | {_mode(r)} |"
        if "error" in r:
            lines.append(f"{head} failed: {r['error']} | | |")
            continue
        lines.append(f"{head} {fmt_s(r['decode_s'])} | {fmt_s(r['s_per_audio_s'])} | "
                     f"{gib(r['peak_rss_bytes'])} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="*", default=[10.0, 60.0, 285.0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved rounds of 10 s decodes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the interleaved 10 s decodes (no memory rows)")
    parser.add_argument("--out", type=Path, default=RESULTS / "vae_decode.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="longplay", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--chunk", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        args.seconds = args.seconds[0]
        print(json.dumps(interleaved(args) if args.impl == "interleaved" else worker(args)))
        return 0

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vae"
        save_reference(weights)
        speed = run_one(weights, "interleaved", "fp32", 10.0, "auto", args.repeats,
                        args.threads, args.device)
        if "error" in speed:
            raise SystemExit(f"the interleaved 10 s decodes failed: {speed['error']}")
        print(speed_table(speed), flush=True)
        for seconds in [] if args.speed_only else args.seconds:
            plan = [("reference", "fp32", "none")] if seconds <= REFERENCE_MAX_SECONDS else []
            plan += [("longplay", "fp32", "auto"), ("longplay", "bf16", "auto")]
            for impl, precision, chunk in plan:
                row = run_one(weights, impl, precision, seconds, chunk, 1, args.threads)
                rows.append(row)
                print(memory_table([row]).splitlines()[-1], flush=True)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    if args.device != "cpu":
        import torch

        machine = f"{torch.cuda.get_device_name(args.device)}, {machine}"
    text = (f"# VAE decode, full-size Stable Audio Open 1.0 VAE (random weights)\n\n"
            f"Machine: {machine}. The reference is diffusers' AutoencoderOobleck on the same "
            f"weights, whole-signal fp32. longplay's chunks are the memory-aware default "
            f"(`auto_chunk_frames`; a 10 s decode fits whole). The headline is the "
            f"same-precision ratio (bold): both cast to bf16 as a diffusers user would, or "
            f"both in fp32. The pipeline's bf16 runs the convolutions in bf16 and keeps the "
            f"activations in fp32: more accurate than the cast, compared with the cast "
            f"reference. The memory table's bf16 is the pipeline's.\n\n"
            f"## Speed: 10 s, interleaved in one process ({speed['rounds']} rounds after a "
            f"warm-up)\n\n{speed_table(speed)}\n\n"
            f"## Peak memory and long decodes: one decode per fresh process\n\n"
            f"Times in this table come from different moments of a shared machine; use the "
            f"table above for speed. The reference is not run beyond "
            f"{REFERENCE_MAX_SECONDS:.0f} s (it does not fit 4m45s in 24 GiB).\n\n"
            f"{memory_table(rows)}\n")
    save_report(text, args.out, {"speed": speed, "memory": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

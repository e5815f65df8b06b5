"""Quality at equal cost: the demo model's full generation (50 DPM-Solver++ steps, guidance
at every one) against cheaper ones: guidance in an interval of noise levels, guidance off for
the last steps, and the few-step distilled model (``longplay train distill``).

    python benchmarks/few_step.py --student models/demo-fast [--prompts 16] [--long]

For each configuration, a fixed set of prompts (``PROMPTS``, in the corpus's caption
style; the first ``--prompts``), each generated for ``--duration`` seconds inside a
window of ``--window-frames`` latent frames (the noise is given, so every configuration
samples the same window from the same seed), reports:

- wall time per generation (median) and network evaluations per generation (items the
  DiT was run on, counted by a hook: a guided step costs 2);
- FD to the reference set: the Fréchet distance between own-CLAP window embeddings
  (10 s windows, 5 s hop) of the generations and those of the reference set, which is
  the full-guidance configuration with seeds 0..N-1. The row "reference, other seeds" is the
  same configuration with seeds 1000..1000+N-1: the distance two draws of the reference
  itself lie apart, the bar a cheaper configuration has to meet;
- CLAP score: mean own-CLAP cosine between each generation and its prompt;
- timing adherence: the level after ``duration`` relative to the content, in dB, on the
  untrimmed window (``longplay.evaluation.timing``; lower is better).

FD is a noisy estimate at a few dozen embeddings: ``--draws K`` generates every prompt K
times (other seeds each draw) and pools the draws into one set per row, and
``--prompt-set validation`` runs a second set of prompts, on which to choose a setting
before reporting it on the first.

Rows with the reference's settings and deterministic solvers (euler, dpmpp-2m) measure
how far the teacher's probability-flow ODE, which a distilled student learns, lies from
the reference. ``--refine LEVEL:STEPS`` rows refine the student's draft with the
teacher's sampler and guidance from noise level LEVEL in STEPS steps (``init_latents``);
``LEVEL:STEPS:GUIDANCE:FLOOR`` guides only above noise level FLOOR (one pass below it),
and ``--draft-steps N`` drafts in N student steps. The drafts are not decoded.
``--cache DIR`` keeps every row's measurements and reuses them when the model files,
settings, prompts and seeds are the same (the table marks such rows and their times are
the earlier run's).

With ``--long``, the reference, the guidance interval (0.5, 20], the distilled model's
default and the refined drafts also generate 4m45s (285 s, the full window) once each:
the time that matters for a whole piece.

Prints a table and writes benchmarks/results/few_step.{md,json}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from _report import save_report
from longplay.pipelines.drafts import REFINE_SEED_OFFSET

RESULTS = Path(__file__).parent / "results"
DEMO = Path(__file__).resolve().parents[1] / "src" / "longplay" / "assets" / "demo"

PROMPTS = [
    "string quartet, classical, 3/4, 122 BPM, Eb major",
    "organ chorale, baroque, 4/4, 80 BPM, G major",
    "bossa nova, nylon guitar and flute, 4/4, 120 BPM",
    "jazz swing, piano, upright bass and drums, 4/4, 160 BPM",
    "folk reel, fiddle and accordion, 4/4, 110 BPM, D major",
    "piano sonata, classical, 4/4, 100 BPM, C major",
    "waltz, strings and harp, 3/4, 90 BPM, F major",
    "rock ballad, electric guitar, bass and drums, 4/4, 72 BPM",
    "march, brass band, 2/4, 116 BPM, Bb major",
    "blues shuffle, piano and bass, 12/8, 96 BPM, E major",
    "choral hymn, four voices, 4/4, 70 BPM, A major",
    "latin, marimba and congas, 4/4, 105 BPM",
    "flute solo, baroque, 3/4, 84 BPM, D minor",
    "country, acoustic guitar and harmonica, 4/4, 100 BPM, G major",
    "funk, clavinet, bass and drums, 4/4, 108 BPM",
    "lullaby, celesta and strings, 6/8, 60 BPM, F major",
]

VALIDATION_PROMPTS = [
    "mazurka, romantic, piano, 3/4, 130 BPM, B minor",
    "trio sonata, baroque, violins and harpsichord, 4/4, 92 BPM, F major",
    "Irish jig, tin whistle and fiddle, 6/8, 118 BPM, G major",
    "madrigal, renaissance, five voices, 4/4, 66 BPM",
    "tango, bandoneon and strings, 4/4, 112 BPM, A minor",
    "reggae, electric guitar, bass and drums, 4/4, 80 BPM",
    "polka, accordion and tuba, 2/4, 126 BPM, C major",
    "motet, medieval, voices, 3/4, 60 BPM",
    "big band swing, trumpets, saxophones and drums, 4/4, 140 BPM",
    "string quartet, classical, 2/4, 132 BPM, D major",
    "chorale, baroque, organ, 4/4, 72 BPM, E minor",
    "slow blues, electric guitar and organ, 12/8, 64 BPM",
    "samba, nylon guitar and percussion, 2/4, 100 BPM",
    "minuet, classical, strings, 3/4, 112 BPM, G major",
    "ragtime, piano, 2/4, 92 BPM, C major",
    "hornpipe, fiddle and guitar, 4/4, 96 BPM, A major",
]
"""A second prompt set, for choosing a setting (``--prompt-set validation``) without
choosing it on the prompts that report it."""


DEFAULT_REFINE = ("4:10",)
"""The refined drafts the benchmark runs by default (LEVEL:STEPS)."""


def parse_refine(value: str) -> tuple[float, int, float | None, float | None]:
    """"LEVEL:STEPS[:GUIDANCE[:FLOOR]]" -> (level, steps, guidance or None: the
    reference's, floor or None: guidance at every level). With FLOOR the refinement is
    guided only above that noise level (its guidance interval is (FLOOR, inf)); GUIDANCE
    may be left empty ("4:10::0.5") for the reference's."""
    try:
        level, steps, *rest = value.split(":")
        if len(rest) > 2:
            raise ValueError
        guidance = float(rest[0]) if rest and rest[0] else None
        floor = float(rest[1]) if len(rest) == 2 else None
        if floor is not None and not (math.isfinite(floor) and floor >= 0):
            raise ValueError
        return float(level), int(steps), guidance, floor
    except ValueError:
        raise SystemExit(f"--refine takes LEVEL:STEPS[:GUIDANCE[:FLOOR]] such as 4:10, "
                         f"4:10:1 or 4:10::0.5 (guided only above sigma 0.5), got "
                         f"{value!r}") from None


DRAW_SEED_STRIDE = 10_000
"""Seed offset between draws (``--draws``): above any row's own offset."""

EVERYWHERE = {"guidance_interval": (0.0, math.inf)}
"""Guidance at every level (a model's default interval off)."""
LONG = ("reference (full guidance)", "guidance for sigma in (0.5, 20]",
        "distilled, 4 steps (its default)")
"""The configurations ``--long`` also times at 4m45s."""


def configurations(steps: int, student: Path | None, student_sigma_min: list[float] = (),
                   student_guidance: list[float] = (),
                   refine: list[tuple[float, int, float | None, float | None]] = (),
                   refiner: str | None = None, draft_steps: int | None = None) -> list[dict]:
    """(name, model, settings): the reference, its other seeds, the training-free
    cheaper guidance and the distilled model (and its default sampling on the grid that
    ends at each of ``student_sigma_min``, and with each of ``student_guidance``; and its
    draft refined from each (level, steps, guidance, floor) of ``refine`` by the teacher's
    sampler, run by the teacher or by the model named ``refiner``; the draft in the
    student's default steps or ``draft_steps``)."""
    rows = [
        {"name": "reference (full guidance)", "model": "teacher", "kwargs": EVERYWHERE},
        {"name": "reference, other seeds", "model": "teacher", "kwargs": EVERYWHERE,
         "seed": 1000},
        {"name": "guidance for sigma in (0.5, 500]", "model": "teacher",
         "kwargs": {"guidance_interval": (0.5, 500.0)}},
        {"name": "guidance for sigma in (0.5, 20]", "model": "teacher",
         "kwargs": {"guidance_interval": (0.5, 20.0)}},
        {"name": f"guidance off for the last {steps // 2} steps", "model": "teacher",
         "kwargs": {**EVERYWHERE, "unguided_final_steps": steps // 2}},
        # The reference's settings with deterministic solvers: "euler" is the guided
        # trajectory the distilled student learns (one Euler step per level of the
        # teacher's grid), so the student cannot be nearer the reference than this row
        # except by chance.
        {"name": "reference settings, euler (the student's teacher)", "model": "teacher",
         "kwargs": {**EVERYWHERE, "sampler": "euler"}},
        {"name": "reference settings, dpmpp-2m", "model": "teacher",
         "kwargs": {**EVERYWHERE, "sampler": "dpmpp-2m"}},
    ]
    if student is not None:
        rows += [{"name": "distilled, 4 steps (its default)", "model": "student",
                  "kwargs": {}},
                 # The same from noise the reference set was not drawn from: a student
                 # started from the reference's own noise may sit nearer to it.
                 {"name": "distilled, 4 steps, other seeds", "model": "student",
                  "kwargs": {}, "seed": 2000},
                 {"name": "distilled, 8 steps", "model": "student",
                  "kwargs": {"num_inference_steps": 8}},
                 {"name": "distilled, 2 steps", "model": "student",
                  "kwargs": {"num_inference_steps": 2}},
                 # The student's x0 estimates with deterministic solvers instead of the
                 # consistency sampler's fresh noise at each level.
                 {"name": "distilled, 4 steps, euler", "model": "student",
                  "kwargs": {"sampler": "euler", "num_inference_steps": 4}},
                 {"name": "distilled, 4 steps, dpmpp-2m", "model": "student",
                  "kwargs": {"sampler": "dpmpp-2m", "num_inference_steps": 4}}]
        rows += [{"name": f"distilled, its default, sigma_min {value:g}", "model": "student",
                  "kwargs": {"sigma_min": value}} for value in student_sigma_min]
        rows += [{"name": f"distilled, its default, guidance {value:g}", "model": "student",
                  "kwargs": {"guidance_scale": value}} for value in student_guidance]
        # The student's draft refined by the reference's sampler and guidance from a low
        # noise level (init_latents): the teacher's guided SDE steps where the detail is.
        rows += [{"name": refine_name(level, count, guidance, refiner, floor, draft_steps),
                  "model": "student",
                  "kwargs": {} if draft_steps is None else {"num_inference_steps": draft_steps},
                  "refine": {"guidance_interval": (0.0 if floor is None else floor, math.inf),
                             "init_noise_level": level, "num_inference_steps": count,
                             **({} if guidance is None else {"guidance_scale": guidance})}}
                 for level, count, guidance, floor in refine]
    return rows


def refine_name(level: float, steps: int, guidance: float | None = None,
                refiner: str | None = None, floor: float | None = None,
                draft_steps: int | None = None) -> str:
    name = "distilled draft" + ("" if draft_steps is None else f" in {draft_steps} steps")
    name += f", refined from sigma {level:g} in {steps} steps"
    if guidance is not None:
        name += f", guidance {guidance:g}"
    if floor is not None:
        name += f", guided above sigma {floor:g}"
    return name if refiner is None else f"{name}, by {refiner}"


class Counter:
    """Items the DiT is run on (a guided step's doubled batch counts 2)."""

    def __init__(self, pipe) -> None:
        self.items = 0
        pipe.model.dit.register_forward_hook(self._hook)

    def _hook(self, module, args, out) -> None:
        self.items += int(args[0].shape[0])


def run_config(pipe, counter: Counter, config: dict, prompts: list[str], duration: float,
               frames: int, seed_offset: int = 0, refiner=None) -> dict:
    """Generate each prompt; returns times, evaluations, trimmed audio and full windows.
    A row with "refine" passes each output's latents to ``refiner`` (pipeline, counter)
    as its init_latents; its time and evaluations count both."""
    seed0 = config.get("seed", 0) + seed_offset
    times, evaluations, trimmed, full = [], [], [], []
    counters = [counter] + ([refiner[1]] if refiner is not None else [])
    for i, prompt in enumerate(prompts):
        generator = torch.Generator().manual_seed(seed0 + i)
        noise = torch.randn(1, pipe.config.vae.latent_dim, frames, generator=generator)
        before = sum(c.items for c in counters)
        start = time.perf_counter()
        # A draft that is refined is not decoded (its latents are what the refiner takes).
        out = pipe(prompt, duration_s=duration, seconds_total=duration, seed=seed0 + i,
                   latents=noise, output_type="audio" if refiner is None else "latent",
                   **config["kwargs"])
        draft = out.settings
        if refiner is not None:
            seed = seed0 + i + REFINE_SEED_OFFSET
            again = torch.randn(noise.shape, generator=torch.Generator().manual_seed(seed))
            out = refiner[0](prompt, duration_s=duration, seconds_total=duration, seed=seed,
                             latents=again, init_latents=out.latents, **config["refine"])
        times.append(time.perf_counter() - start)
        evaluations.append(sum(c.items for c in counters) - before)
        with torch.inference_mode():
            whole = pipe.model.vae.decode(out.latents.to(pipe.device, pipe.vae_dtype))
        trimmed.append(out.audio[0])
        full.append(whole[0].float().cpu())
    return {"times": times, "evaluations": evaluations, "trimmed": trimmed, "full": full,
            "settings": out.settings, "draft": draft if refiner is not None else None}


def settings_fields(settings, draft=None) -> dict:
    """The fields of a generation's settings that a row reports (a refined draft's:
    both samplers and step counts, the refinement's guidance and grid)."""
    fields = {"sampler": settings.sampler, "steps": settings.num_inference_steps,
              "guidance_scale": settings.guidance_scale,
              "guidance_interval": settings.guidance_interval,
              "unguided_final_steps": settings.unguided_final_steps,
              "sigma_min": settings.sigma_min, "sigma_max": settings.sigma_max}
    if draft is not None:
        fields.update(sampler=f"{draft.sampler} + {settings.sampler}",
                      steps=f"{draft.num_inference_steps} + {settings.num_inference_steps}",
                      init_noise_level=settings.init_noise_level)
    return fields


def cache_path(folder: Path, fingerprint: str, config: dict, prompts: list[str], args,
               seed_offset: int) -> Path:
    """Where one draw of a row is kept: named by a digest of everything its generations
    and measurements depend on (the model's and the CLAP's files through the model
    fingerprint, the row's settings and seeds, the prompts, the lengths and the
    precision)."""
    key = {"model": fingerprint, "kwargs": config["kwargs"], "seed": config.get("seed", 0),
           "seed_offset": seed_offset, "prompts": prompts, "duration": args.duration,
           "window_frames": args.window_frames, "precision": args.precision,
           "torch": torch.__version__, "version": 1}
    if "refine" in config:  # version 2: the draft is no longer decoded (its times); 3: the
        # refinement's seeds are longplay generate --draft's (offset 1000, earlier 500)
        key.update(refine=config["refine"], refine_seed_offset=REFINE_SEED_OFFSET, version=3)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
    return folder / f"{digest.hexdigest()[:32]}.pt"


def save_measured(measured: dict, path: Path) -> None:
    """Write one draw's measurements atomically (longplay.atomic)."""
    from longplay.atomic import atomic_output_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output_path(path) as tmp:
        torch.save(measured, tmp)


def long_run(pipe, counter: Counter, config: dict, refiner=None) -> dict:
    counters = [counter] + ([refiner[1]] if refiner is not None else [])
    before = sum(c.items for c in counters)
    start = time.perf_counter()
    out = pipe(PROMPTS[0], duration_s=285.0, seed=0, window="full",
               output_type="audio" if refiner is None else "latent", **config["kwargs"])
    if refiner is not None:
        refiner[0](PROMPTS[0], duration_s=285.0, seed=REFINE_SEED_OFFSET, window="full",
                   init_latents=out.latents, **config["refine"])
    return {"seconds": time.perf_counter() - start,
            "evaluations": sum(c.items for c in counters) - before}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, default=DEMO)
    parser.add_argument("--student", type=Path, default=None,
                        help="the distilled model folder (default: the bundled demo-fast "
                             "where installed)")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--prompt-set", choices=("benchmark", "validation"),
                        default="benchmark",
                        help="validation: a second set of 16 prompts, to choose a setting on")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="added to every row's seeds (other draws of the same rows)")
    parser.add_argument("--draws", type=int, default=1,
                        help="generate every prompt this many times (seeds offset by "
                             f"{DRAW_SEED_STRIDE} each draw), pooled into one FD per row")
    parser.add_argument("--student-sigma-min", type=float, nargs="*", default=[],
                        help="also the student's default on the grid ending at each value")
    parser.add_argument("--student-guidance", type=float, nargs="*", default=[],
                        help="also the student's default with each guidance scale")
    parser.add_argument("--refine", nargs="*", default=list(DEFAULT_REFINE),
                        metavar="LEVEL:STEPS",
                        help="rows of the student's draft refined by the teacher's sampler "
                             "from noise level LEVEL in STEPS steps, with the reference's "
                             "guidance, or LEVEL:STEPS:GUIDANCE, or "
                             "LEVEL:STEPS:[GUIDANCE]:FLOOR to guide only above noise level "
                             f"FLOOR (default: {' '.join(DEFAULT_REFINE)})")
    parser.add_argument("--draft-steps", type=int, default=None, metavar="N",
                        help="the --refine rows' drafts in N steps (default: the student's "
                             "own)")
    parser.add_argument("--refiner", type=Path, default=None, metavar="MODEL",
                        help="the model that refines the drafts (default: the teacher), e.g. "
                             "the teacher fine-tuned on its own generations, without "
                             "guidance (docs/speed.md)")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--window-frames", type=int, default=1024)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--long", action="store_true", help="also one 4m45s generation each")
    parser.add_argument("--only", nargs="*", default=None, help="configuration names to run")
    parser.add_argument("--out", type=Path, default=RESULTS / "few_step.md")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep each row's measurements (embeddings, times) in this folder "
                             "and reuse them when the model files, settings, prompts and "
                             "seeds are the same; the table marks reused rows, whose times "
                             "come from the run that made them")
    args = parser.parse_args()

    from longplay.checkpoints.files import model_fingerprint
    from longplay.evaluation import CLAPScore, FrechetDistance, timing_adherence
    from longplay.evaluation.embedders import own_clap
    from longplay.pipelines import TextToMusicPipeline

    student = args.student
    if student is None and (DEMO.parent / "demo-fast").is_dir():
        student = DEMO.parent / "demo-fast"
    prompt_set = PROMPTS if args.prompt_set == "benchmark" else VALIDATION_PROMPTS
    prompts = prompt_set[:args.prompts]
    pipes = {"teacher": TextToMusicPipeline.from_pretrained(args.teacher,
                                                            precision=args.precision)}
    if student is not None:
        pipes["student"] = TextToMusicPipeline.from_pretrained(student, precision=args.precision)
    if args.refiner is not None:
        pipes["refiner"] = TextToMusicPipeline.from_pretrained(args.refiner,
                                                               precision=args.precision)
    counters = {name: Counter(pipe) for name, pipe in pipes.items()}
    clap = own_clap(args.teacher / "clap")
    steps = pipes["teacher"].defaults.num_inference_steps
    refine = [parse_refine(value) for value in args.refine]
    configs = configurations(steps, student, args.student_sigma_min, args.student_guidance,
                             refine, None if args.refiner is None else args.refiner.name,
                             args.draft_steps)
    if args.only:
        configs = [c for c in configs if c["name"] in args.only or c["name"].startswith(
            ("reference (", "distilled, its default, ", "distilled draft"))]
    sr = pipes["teacher"].sample_rate
    text_embeddings = clap.embed_text(prompts)

    # What a row's measurements depend on (for --cache): its model and the CLAP that
    # embeds them. Fingerprints read every byte of the models, so only when caching.
    fingerprints = {}
    if args.cache is not None:
        embedder = model_fingerprint(args.teacher / "clap")
        fingerprints = {name: model_fingerprint(folder) + embedder for name, folder in
                        (("teacher", args.teacher), ("student", student),
                                         ("refiner", args.refiner)) if folder is not None}
    results, reference_windows, cached = [], None, set()
    refining = "refiner" if args.refiner is not None else "teacher"
    for config in configs:
        pipe = pipes[config["model"]]
        refiner = (pipes[refining], counters[refining]) if "refine" in config else None
        times, evaluations, windows, clips, timing = [], [], [], [], []
        for draw in range(args.draws):  # each draw: every prompt once more, other seeds
            offset = args.seed_offset + draw * DRAW_SEED_STRIDE
            path = None
            if args.cache is not None:
                fingerprint = fingerprints[config["model"]] + (
                    fingerprints[refining] if refiner is not None else "")
                path = cache_path(args.cache, fingerprint, config, prompts, args, offset)
            measured = torch.load(path) if path is not None and path.is_file() else None
            if measured is None:
                run = run_config(pipe, counters[config["model"]], config, prompts,
                                 args.duration, args.window_frames, offset, refiner)
                audio = torch.stack(run["trimmed"])
                measured = {
                    "times": run["times"], "evaluations": run["evaluations"],
                    "windows": clap.embed_windows(audio, sr).flatten(0, 1),
                    "clips": clap.embed_audio(audio, sr),
                    "timing": [timing_adherence(full, sr, args.duration,
                                                guard_s=1.0).relative_db
                               for full in run["full"]],
                    "settings": settings_fields(run["settings"], run["draft"])}
                del run, audio
                if path is not None:
                    save_measured(measured, path)
            else:
                cached.add(config["name"])
            times += measured["times"]
            evaluations += measured["evaluations"]
            windows.append(measured["windows"])
            clips.append(measured["clips"])
            timing += measured["timing"]
            s = measured["settings"]
        window_embeddings = torch.cat(windows)
        if reference_windows is None:
            reference_windows = window_embeddings
        fd = FrechetDistance()
        fd.update_reference(reference_windows)
        fd.update_generated(window_embeddings)
        score = CLAPScore()
        score.update_embeddings(torch.cat(clips), text_embeddings.repeat(args.draws, 1))
        row = {"name": config["name"], "model": config["model"], **s,
               "cached": config["name"] in cached,
               "median_s": statistics.median(times),
               "evaluations": statistics.median(evaluations),
               "fd_own_clap": None if config is configs[0] else fd.compute(),
               "clap_score": score.compute(), "timing_db": statistics.mean(timing)}
        if args.long and (config["name"] in LONG or refiner is not None):
            row["long"] = long_run(pipe, counters[config["model"]], config, refiner)
        results.append(row)
        print(json.dumps(row), flush=True)

    text = report(results, args, sr)
    save_report(text, args.out, results)
    return 0


def report(rows: list[dict], args, sample_rate: int) -> str:
    base = rows[0]
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    window_s = args.window_frames * 2048 / sample_rate
    lines = [
        "# Quality at equal cost: the demo model's cheaper generations", "",
        f"Machine: {machine}; precision {args.precision} for every row. "
        f"{args.prompts} prompts of the {args.prompt_set} set (benchmarks/few_step.py)"
        + (f", seeds offset by {args.seed_offset}" if args.seed_offset else "") + ", "
        f"{args.duration:g} s each in a {window_s:.1f} s window from the same noise per "
        "seed" + (f", {args.draws} draws of every prompt pooled" if args.draws > 1 else "")
        + ". FD: own-CLAP Fréchet distance of the 10 s window embeddings to the reference "
        "set (the full-guidance run's first row); the 'other seeds' row is the bar. "
        "CLAP: mean cosine to the prompt (higher is better). Timing: level after the "
        "requested end relative to the content (dB, "
        "lower is better). Speed-up: the reference's median time over the row's"
        + ("; rows marked (reused) were measured by an earlier run with the same model "
           "files, settings and seeds (--cache), and their times are that run's"
           if any(r.get("cached") for r in rows) else "") + ".", "",
        "| configuration | sampler | steps | guidance | network evaluations | s / generation "
        "| speed-up | FD to reference | CLAP score | timing (dB) |"
        + (" 4m45s (s) | 4m45s speed-up |" if args.long else ""),
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.long else ""),
    ]
    for r in rows:
        guidance = f"{r['guidance_scale']:g}"
        if r["guidance_interval"] is not None and r["guidance_scale"] != 1:
            lo, hi = r["guidance_interval"]
            guidance += f" for sigma in ({lo:g}, {hi:g}]"
        if r["unguided_final_steps"]:
            guidance += f", off for the last {r['unguided_final_steps']}"
        fd = "—" if r["fd_own_clap"] is None else f"{r['fd_own_clap']:.3f}"
        name = r["name"] + (" (reused)" if r.get("cached") else "")
        line = (f"| {name} | {r['sampler']} | {r['steps']} | {guidance} | "
                f"{r['evaluations']:g} | {r['median_s']:.2f} | "
                f"{base['median_s'] / r['median_s']:.2f}x | {fd} | {r['clap_score']:.3f} | "
                f"{r['timing_db']:.1f} |")
        if args.long and "long" in r:
            line += (f" {r['long']['seconds']:.1f} | "
                     f"{base['long']['seconds'] / r['long']['seconds']:.2f}x |")
        elif args.long:
            line += " | |"
        lines.append(line)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

"""Produce docs/demo.md and docs/evaluation.md: examples and measurements of the bundled
demo model.

    python scripts/demo_figures.py --corpus CORPUS [--out docs] [--work demo-eval]
        [--compare OLD_MODEL --compare-name NAME]

CORPUS is a folder written by ``longplay data build-corpus`` (its ``test/`` split is
held out from training). The script writes

- ``OUT/evaluation/prompts.jsonl``: the committed prompt set, drawn from the held-out
  tracks' metadata (``--per-prompt`` seeds of each);
- ``OUT/evaluation.md`` and ``OUT/evaluation/``: the report of ``longplay evaluate`` on
  that prompt set (own-CLAP score vs prompts and vs the other prompts, pitched frames,
  FD of own-CLAP windows against the held-out real renders, timing adherence, structure
  plots, VAE reconstruction of the held-out tracks with the fidelity checks), the same
  run that the command line gives (but for the timing prompt, which the command takes
  from the prompt set);
- ``OUT/demo.md`` and ``OUT/demo/``: examples (spectrogram PNGs, Ogg Vorbis excerpts)
  in different styles, instruments, tempos and durations (10 s to 4m45s), and the
  summary table of the evaluation next to the paper's VAE numbers.

``--compare OLD_MODEL`` (a model folder in the Stable Audio Open layout, e.g. an earlier
bundled model taken out of git with ``git show REV:src/longplay/assets/demo/model.safetensors``
and the same for ``model_config.json``) puts that model next to the current one: its
examples go to ``OUT/demo/previous/``, its evaluation (same prompts, seeds and CLAP) to
``WORK/previous``, and both pages give each table a row (or column) for each model and
the figures of both, naming which is which (``--compare-name``). The previous model's
examples are made once: a later run keeps them while results.json names the same folder
and their files are there (``--skip-examples`` keeps the current model's too).

A request longer than the model's window (an example's duration, ``--text-duration``,
a ``--timing-durations`` entry) is generated at the longest duration the window holds;
the pages and ``OUT/demo/results.json`` give the duration actually generated.

The generations and the evaluation's intermediate files go to ``--work``; a rerun
continues where it stopped. Every generation is seeded, so a rerun on the same machine
gives the same numbers. It takes about 30 minutes on 2 CPU cores (twice that with
``--compare``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from longplay.assets import demo_clap_path, model_or_demo
from longplay.atomic import atomic_output_path
from longplay.audio import load_audio, normalize_output, save_audio
from longplay.audio.images import save_spectrogram_png
from longplay.data import PromptBuilder
from longplay.evaluation.runner import (
    PLOTS_SECTION,
    Evaluation,
    EvaluationConfig,
    clap_difference,
)
from longplay.pipelines import TextToMusicPipeline

PAPER_VAE = {"stft": 1.19, "mel": 0.71, "si_sdr": 7.14}
EXCERPT_S = 15.0
TIMING_PROMPT = "rock, electric guitar, bass and drums, 130 BPM"
METRICS = ("clap", "pitch", "fd_clap", "timing", "structure", "autoencoder")
CURRENT, PREVIOUS = "current", "previous"
"""The row labels of the two models with --compare; the previous model's files go to
folders of that name (OUT/demo/previous, OUT/evaluation/previous, WORK/previous)."""


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


def save_excerpt(path: Path, audio: torch.Tensor, sample_rate: int) -> None:
    """Write an Ogg excerpt, keeping an existing file that decodes to the same samples: an
    Ogg stream carries a random serial number, so rewriting the same audio would change
    the file's bytes, and the repository's history, for nothing."""
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        fresh = Path(tmp) / path.name
        save_audio(fresh, audio, sample_rate)
        if path.is_file():
            old, new = load_audio(path).audio, load_audio(fresh).audio
            if old.shape == new.shape and torch.equal(old, new):
                return
        os.replace(fresh, path)


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
        # Written as `longplay generate` writes a file: DC blocked and peak-normalised.
        written, _ = normalize_output(audio, result.sample_rate)
        excerpt = written[:, : round(min(EXCERPT_S, duration) * result.sample_rate)]
        save_excerpt(out / f"{ex.name}.ogg", excerpt, result.sample_rate)
        rows.append({"name": ex.name, "prompt": ex.prompt, "requested_s": ex.duration_s,
                     "duration_s": duration, "seed": seed + i, "seconds": round(seconds, 1),
                     "window_frames": result.settings.window_frames})
        print(f"example {ex.name}: {seconds:.1f} s", flush=True)
    return rows


def evaluate(args, prompts: Path, model: Path | None, run: Path) -> dict:
    """The ``longplay evaluate`` run of ``model`` (None: the bundled one) on the held-out
    prompt set into ``run``; its metrics."""
    return Evaluation(EvaluationConfig(
        prompts=prompts, model=model, clap=args.clap, reference=args.corpus / "test",
        metrics=METRICS, steps=args.steps, seed=args.seed, timing_prompt=TIMING_PROMPT,
        timing_durations=args.timing_durations), run).run().metrics


def evaluate_real(args, work: Path) -> dict:
    """The own-CLAP score and the pitched frames of the real held-out tracks against
    the same prompts (what the CLAP can separate, how pitched the music is)."""
    test = args.corpus / "test"
    real_prompts = work / "real_prompts.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    with atomic_output_path(real_prompts) as tmp:
        tmp.write_text("".join(json.dumps({"id": track, "prompt": prompt}) + "\n"
                               for track, prompt in held_out_prompts(test)))
    return Evaluation(EvaluationConfig(prompts=real_prompts, audio=test, clap=args.clap,
                                       metrics=("clap", "pitch")), work / "real").run().metrics


def _copy_figures(run: Path, report: dict, assets: Path, sets: dict[str, list[str]],
                  examples_per_set: int) -> list[str]:
    """Copy the timing spectrograms of ``run`` and the structure plots (chroma and MFCC)
    of the first items of each set into ``assets``; the chroma PNG names copied."""
    for folder in ("timing", "structure"):
        (assets / folder).mkdir(parents=True, exist_ok=True)
    for row in report["metrics"]["timing"]["items"]:
        png = run / row["spectrogram"]
        shutil.copyfile(png, assets / "timing" / png.name)
    shown = []
    for kind, ids in sets.items():
        pngs = [run / "structure" / f"{kind}_{item_id}_chroma.png" for item_id in ids]
        for png in [p for p in pngs if p.is_file()][:examples_per_set]:
            for name in (png.name, png.name.replace("_chroma", "_mfcc")):
                shutil.copyfile(run / "structure" / name, assets / "structure" / name)
            shown.append(png.name)
    return shown


def _structure_lines(shown: list[str], folder: str) -> list[str]:
    lines = []
    for name in shown:
        mfcc = name.replace("_chroma", "_mfcc")
        lines.append(f"![{name}]({folder}/{name}) ![{mfcc}]({folder}/{mfcc})")
    return lines


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}"


def _comparison_rows(current: dict, previous: dict) -> list[str]:
    """Rows "| measure | current | previous |" of the two runs' metrics."""
    def row(measure: str, value) -> str:
        return f"| {measure} | {value(current)} | {value(previous)} |"

    rows = [
        row("CLAP score vs prompts", lambda m: _f(m["clap"]["vs_prompts"], 3)),
        row("CLAP score vs other prompts", lambda m: _f(m["clap"]["vs_other_prompts"], 3)),
        row("CLAP difference (prompts - other prompts)",
            lambda m: _f(clap_difference(m["clap"]), 3)),
        row("sounding frames of the generations (%)",
            lambda m: _percent(m["pitch"]["mean_sounding_share"])),
        row("pitched frames of the generations (%)",
            lambda m: _percent(m["pitch"]["mean_pitched_share"])),
        row("top note of the generations (%)",
            lambda m: _percent(m["pitch"]["mean_top_note_share"])),
        row("FD of own-CLAP windows", lambda m: _f(m["fd_clap"]["value"], 3)),
        row("VAE STFT distance", lambda m: _f(m["autoencoder"]["stft_distance"])),
        row("VAE MEL distance", lambda m: _f(m["autoencoder"]["mel_distance"])),
        row("VAE SI-SDR (dB)", lambda m: _f(m["autoencoder"]["si_sdr"])),
        row("VAE DC offset", lambda m: _e(m["autoencoder"]["dc_offset"])),
        row("VAE added tone, worst (dB)",
            lambda m: _f(m["autoencoder"]["worst_added_tone_db"], 1)),
        row("VAE chroma correlation", lambda m: _f(m["autoencoder"]["chroma_correlation"], 3)),
        row("VAE pitched frames, input / reconstruction (%)",
            lambda m: f"{_percent(m['autoencoder']['pitched_share_reference'])} / "
                      f"{_percent(m['autoencoder']['pitched_share_estimate'])}"),
        row("VAE pitch agreement (%)", lambda m: _percent(m["autoencoder"]["pitch_agreement"])),
    ]
    for i, timing in enumerate(current["timing"]["items"]):
        rows.append(row(f"timing: relative level at {timing['duration_s']:g} s (dB)",
                        lambda m, i=i: _f(m["timing"]["items"][i]["relative_db"], 1)))
    return rows


def _which_is_which(current_name: str, previous: dict) -> str:
    return (f"**current**: {current_name}; **previous**: {previous['name']} (model folder "
            f"`{previous['folder']}`). Both are generated and measured with the same prompts, "
            "seeds, sampler steps and CLAP.")


def comparison_section(args: argparse.Namespace, current: dict, previous: dict,
                       names: tuple[str, dict]) -> list[str]:
    """evaluation.md's section on both models: the measures side by side and the timing
    spectrograms of both."""
    lines = ["## Current and previous model", "", _which_is_which(*names) + " The sections "
             "after this one are the current model's report; the previous model's full "
             f"report is `{args.work.name}/previous/report.md` of the run.", "",
             "| measure | current | previous |", "|---|---|---|",
             *_comparison_rows(current, previous), "",
             "Timing adherence spectrograms, full window, the requested end marked:", "",
             "| requested | current | previous |", "|---|---|---|"]
    for now, before in zip(current["timing"]["items"], previous["timing"]["items"],
                           strict=True):
        asked = f"{now['duration_s']:g} s"
        if before["duration_s"] != now["duration_s"]:
            asked += f" / {before['duration_s']:g} s"
        lines.append(f"| {asked} | ![current {now['duration_s']:g} s](evaluation/"
                     f"{now['spectrogram']}) | ![previous {before['duration_s']:g} s]"
                     f"(evaluation/previous/{before['spectrogram']}) |")
    return [*lines, ""]


def write_evaluation_page(args: argparse.Namespace, reference_ids: list[str],
                          examples_per_set: int = 2, previous: dict | None = None,
                          model_name: str = "the bundled demo model") -> None:
    """docs/evaluation.md: the run's report with its plots copied next to it (the timing
    spectrograms of this run's requests, the structure plots of the first items of each
    set; a work folder reused with other settings may hold others). With ``previous``
    (results.json's entry of the ``--compare`` model), a section comparing both models
    comes first, with the figures of both."""
    run = args.work / "generated"
    report = json.loads((run / "report.json").read_text())
    assets = args.out / "evaluation"
    ids = [item["id"] for item in report["items"]]
    shown = _copy_figures(run, report, assets, {"generated": ids, "reference": reference_ids},
                          examples_per_set)
    text = (run / "report.md").read_text().replace("](timing/", "](evaluation/timing/")
    text = text.split(f"\n{PLOTS_SECTION}\n")[0]  # every clip's: this page shows a few
    text = text.replace("# Evaluation report", "# Evaluation of the bundled demo model", 1)
    plots = ["## Structure plots", "",
             "Chroma (left) and MFCC (right) self-similarity of the first items of each set "
             "(the full set is in the run folder).", "",
             *_structure_lines(shown, "evaluation/structure")]
    if previous is not None:
        before_run = args.work / PREVIOUS
        before = json.loads((before_run / "report.json").read_text())
        shown_before = _copy_figures(before_run, before, assets / PREVIOUS,
                                     {"generated": ids}, examples_per_set)
        head, rest = text.split("\n## ", 1)
        text = "\n".join([head.rstrip(), "", *comparison_section(
            args, report["metrics"], before["metrics"], (model_name, previous)), "## " + rest])
        plots += ["", "The previous model's generations of the same prompts and seeds:", "",
                  *_structure_lines(shown_before, "evaluation/previous/structure")]
    durations = ",".join(f"{d:g}" for d in args.timing_durations)
    lines = [text.rstrip(), "", *plots]
    lines += ["", "Produced by `python scripts/demo_figures.py --corpus CORPUS"
              + (" --compare PREVIOUS_MODEL" if previous is not None else "") + "` with the "
              "prompt set `evaluation/prompts.jsonl`; the same generations and numbers come "
              "from the command below"
              + (" (the previous model's with `--model PREVIOUS_MODEL --clap "
                 "src/longplay/assets/demo/clap` added)" if previous is not None else "")
              + ", except for timing adherence, which the script "
              f"measures on the prompt \"{TIMING_PROMPT}\" and the command on the first "
              "prompt of the set.", "",
              "```sh", "longplay evaluate --prompts docs/evaluation/prompts.jsonl "
              "--reference CORPUS/test \\", f"    --metrics {','.join(METRICS)} "
              f"--steps {args.steps} --seed {args.seed} \\",
              f"    --timing-durations {durations} -o REPORT_DIR", "```", ""]
    with atomic_output_path(args.out / "evaluation.md") as tmp:
        tmp.write_text("\n".join(lines))


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _e(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1e}"


def _minutes(seconds: float) -> str:
    """285.3 -> "4m45s", 2.972 -> "2.97 s"."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _millions(count: int) -> str:
    return f"{count / 1e6:.2g}M"


def _models(results: dict) -> list[tuple[str, dict]]:
    """(row label suffix, results of the model): the current model alone, or with
    --compare the current and the previous one, labelled."""
    if "previous" not in results:
        return [("", results)]
    return [(f", {CURRENT}", results), (f", {PREVIOUS}", results["previous"])]


def _pitch_per_prompt(models: list[tuple[str, dict]], real: dict) -> list[str]:
    """The pitched frames of each prompt's generations beside those of the real track it
    was built from (the pitch metric's per-prompt means, matched by prompt text)."""
    def shares(metrics: dict) -> dict[str, float | None]:
        return {row["prompt"]: row["mean_pitched_share"] for row in metrics["pitch"]["prompts"]}

    generated = [shares(model["generated"]) for _, model in models]
    lines = ["Per prompt: the pitched frames of its generations and of the real track it was "
             "built from (a solo line pitched in nearly every frame, dense polyphony in few: "
             "YIN follows one pitch at a time).", "",
             "| prompt | " + " | ".join(f"generated{label} (%)" for label, _ in models)
             + " | real track (%) |",
             "|---|" + "---|" * (len(models) + 1)]
    for prompt, share in shares(real).items():
        values = [_percent(g.get(prompt)) for g in generated] + [_percent(share)]
        lines.append(f"| {prompt} | " + " | ".join(values) + " |")
    return lines


def write_markdown(path: Path, results: dict) -> None:
    ex, real = results["examples"], results["real"]
    previous = results.get("previous")
    models = _models(results)
    tim = results["generated"]["timing"]
    window = _minutes(results["window_s"])
    compared = [] if previous is None else [
        "", "Tables and figures show two models, " + _which_is_which(results["model"], previous)
        + f" The previous model's sampler settings: {previous['sampler']}; its window: "
        f"{_minutes(previous['window_s'])}."]
    example_columns = "| | prompt | duration | generation time | spectrogram | excerpt |"
    if previous is not None:
        example_columns += " previous: spectrogram | previous: excerpt |"
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
        *compared,
        "",
        "## Examples",
        "",
        example_columns,
        "|---|---|---|---|---|---|" + ("---|---|" if previous is not None else ""),
    ]
    for row in ex:
        clipped = (f" (asked {row['requested_s']:g} s)"
                   if row.get("requested_s", row["duration_s"]) != row["duration_s"] else "")
        line = (f"| {row['name']} | {row['prompt']} | {row['duration_s']:g} s{clipped} | "
                f"{row['seconds']:.0f} s | ![{row['name']}](demo/{row['name']}.png) | "
                f"[{row['name']}.ogg](demo/{row['name']}.ogg) |")
        if previous is not None:
            name = row["name"]
            line += (f" ![previous {name}](demo/previous/{name}.png) | "
                     f"[{name}.ogg](demo/previous/{name}.ogg) |")
        lines.append(line)
    lines += [
        "",
        f"Excerpts are the first {EXCERPT_S:g} s (Ogg Vorbis) of the audio as "
        "`longplay generate` writes it (DC blocked, peak-normalised). Seeds are in "
        f"`demo/results.json`. The model's window is {window}: a longer request is "
        "generated at the window's length.",
        "",
        "## VAE reconstruction (held-out corpus tracks)",
        "",
        f"The {results['generated']['autoencoder']['items']} whole tracks of the corpus's test "
        "split; metrics as in SYSTEM.md section 6 (lower STFT and MEL distance and higher "
        "SI-SDR are better).",
        "",
        "| autoencoder | STFT distance | MEL distance | SI-SDR (dB) |",
        "|---|---|---|---|",
    ]
    for label, model in models:
        vae = model["generated"]["autoencoder"]
        lines.append(f"| demo VAE{label} ({_millions(model['vae']['parameters'])} parameters, "
                     f"{model['vae']['latent_dim']} channels) | {_f(vae['stft_distance'])} | "
                     f"{_f(vae['mel_distance'])} | {_f(vae['si_sdr'])} |")
    lines += [
        f"| paper (Stable Audio 2.0 VAE, 156M) | {PAPER_VAE['stft']} | {PAPER_VAE['mel']} | "
        f"{PAPER_VAE['si_sdr']} |",
        "",
        "SI-SDR compares waveforms, so it needs the input's phases: a VAE whose latent "
        "carries STFT magnitudes only (the spectral demo VAE's encoder reads no phase) "
        "stays far below 0 dB whatever its decoder; `benchmarks/phase_ceiling.py` measures "
        "that ceiling and what 0 dB would take (`benchmarks/results/vae_recipe.md`).",
        "",
        "Fidelity checks of the same reconstructions (`longplay.evaluation.fidelity`): the "
        "DC offset of the reconstruction (of the input in brackets); the strongest tonal "
        "line that the reconstruction adds, in dB relative to its strongest bin (mean over "
        "tracks / worst; -120: none); the chroma correlation with the input (1: the same "
        "harmony); the frames where the YIN pitch tracker finds a pitch in the input and in "
        "the reconstruction; the share of the input's pitched frames that the "
        "reconstruction plays at the same pitch (within 50 cents).",
        "",
        "| autoencoder | DC offset (input) | added tone, mean / worst (dB) | chroma correlation "
        "| pitched frames, input / reconstruction (%) | pitch agreement (%) |",
        "|---|---|---|---|---|---|",
    ]
    for label, model in models:
        vae = model["generated"]["autoencoder"]
        lines.append(f"| demo VAE{label} | {_e(vae['dc_offset'])} "
                     f"({_e(vae['reference_dc_offset'])}) | {_f(vae['added_tone_db'], 1)} / "
                     f"{_f(vae['worst_added_tone_db'], 1)} | "
                     f"{_f(vae['chroma_correlation'], 3)} | "
                     f"{_percent(vae['pitched_share_reference'])} / "
                     f"{_percent(vae['pitched_share_estimate'])} | "
                     f"{_percent(vae['pitch_agreement'])} |")
    clips = results["prompts"] * results["per_prompt"]
    lines += [
        "",
        "## Text adherence (the demo CLAP)",
        "",
        f"{results['prompts']} prompts built from the held-out tracks' metadata (every field; "
        f"`evaluation/prompts.jsonl`), {results['per_prompt']} generations of "
        f"{results['text_duration_s']:g} s each. CLAP score = mean cosine between the audio "
        "embedding and the prompt's text embedding; \"other prompts\": its mean cosine to "
        "every other prompt of the set (chance level). The real tracks show what the CLAP "
        "itself can separate.",
        "",
        "| audio | clips | CLAP score vs prompts | vs other prompts | difference |",
        "|---|---|---|---|---|",
    ]
    rows = [(f"generated{label}", model["generated"], clips) for label, model in models]
    for name, metrics, count in [*rows, ("real held-out tracks", real, results["prompts"])]:
        t = metrics["clap"]
        lines.append(f"| {name} | {count} | {_f(t['vs_prompts'], 3)} | "
                     f"{_f(t['vs_other_prompts'], 3)} | {_f(clap_difference(t), 3)} |")
    lines.append("")
    for label, model in models:
        lines.append(f"Fréchet distance of the generations' own-CLAP windows to the held-out "
                     f"tracks'{f' ({label[2:]})' if label else ''}: "
                     f"{_f(model['generated']['fd_clap']['value'], 3)}.")
    lines += [
        "",
        "## Pitched content",
        "",
        "The same generations: the share of each clip's sounding frames in which the YIN "
        "pitch tracker finds a pitch (`longplay.evaluation.pitch`; near 100 % for notes, "
        "near 0 for noise or unpitched drums), and of its pitched frames on its most common "
        "semitone (top note; near 100 %: one drone rather than notes), means over the clips. "
        "Sounding frames: the share of each clip that plays at all (within 40 dB of its "
        "loudest frame); a generation that ends before the requested duration, or leaves "
        "gaps, scores well below 100 %. The real held-out tracks show how pitched, and how "
        "continuous, the corpus's music is; per-prompt shares are in "
        "[evaluation.md](evaluation.md).",
        "",
        "| audio | clips | silent clips | sounding frames (%) | pitched frames (%) | "
        "top note (%) |",
        "|---|---|---|---|---|---|",
    ]
    for name, metrics, _ in [*rows, ("real held-out tracks", real, 0)]:
        x = metrics["pitch"]
        lines.append(f"| {name} | {x['items']} | {x['silent_items']} | "
                     f"{_percent(x['mean_sounding_share'])} | "
                     f"{_percent(x['mean_pitched_share'])} | "
                     f"{_percent(x['mean_top_note_share'])} |")
    lines += ["", *_pitch_per_prompt(models, real)]
    model_column = previous is not None
    lines += [
        "",
        "## Timing adherence",
        "",
        f"Requests for \"{tim['prompt']}\" generated in the model's full window ({window}) and "
        "decoded untrimmed; a request that the window does not hold is shortened to fit it. "
        "Level = RMS in dBFS; the tail starts `guard` seconds after the requested end (see "
        "`longplay.evaluation.timing`). Relative level = tail - content: strongly negative "
        "means the music ends where asked."
        + (" The spectrograms of both models are in [evaluation.md](evaluation.md)."
           if model_column else ""),
        "",
        "| requested |" + (" model |" if model_column else "")
        + " content level (dB) | tail level (dB) | relative (dB) | guard (s) |",
        "|---|" + ("---|" if model_column else "") + "---|---|---|---|",
    ]
    for i in range(len(tim["items"])):  # each request, the models' rows together
        for label, model in models:
            row = model["generated"]["timing"]["items"][i]
            lines.append(f"| {row['duration_s']:g} s |"
                         + (f" {label[2:]} |" if model_column else "")
                         + f" {_f(row['content_db'], 1)} | {_f(row['tail_db'], 1)} | "
                         f"{_f(row['relative_db'], 1)} | {round(row['guard_s'], 2):g} |")
    lines += ["", "## How it was trained", "", results["recipe"], ""]
    with atomic_output_path(path) as tmp:
        tmp.write_text("\n".join(lines))


RECIPE = """The configs are in `configs/demo/`; each stage is one `longplay` command
(CPU times on 2 cores; on a GPU add `--devices 1`, the configs pick the accelerator).

```sh
longplay data build-corpus -o corpus --hours 3 --seed 0 --workers 2        # ~3 min
longplay train vae configs/demo/vae.yaml --data corpus/train -o runs/demo-vae
longplay export runs/demo-vae -o models/demo-vae
longplay train vae configs/demo/vae-adversarial.yaml --data corpus/train -o runs/demo-vae-decoder
longplay export runs/demo-vae-decoder -o models/demo-vae-decoder   # same encoder
longplay data encode corpus/train --model models/demo-vae-decoder -o latents
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
    parser.add_argument("--compare", type=Path, default=None, metavar="PREVIOUS_MODEL",
                        help="a previous model folder (Stable Audio Open layout) to show next "
                             "to the current model: its examples, evaluation and figures")
    parser.add_argument("--compare-name", default=None, metavar="TEXT",
                        help="what the pages call the --compare model, e.g. \"the demo model "
                             "of release 0.3\" (default: the model in its folder)")
    args = parser.parse_args(argv)
    if args.compare_name is not None and args.compare is None:
        parser.error("--compare-name names the --compare model: pass --compare FOLDER too")
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


def _vae_summary(pipe: TextToMusicPipeline) -> dict:
    return {"parameters": sum(p.numel() for p in pipe.model.vae.parameters()),
            "latent_dim": pipe.config.vae.latent_dim}


def _sampler(pipe: TextToMusicPipeline, steps: int) -> str:
    return f"{pipe.defaults.sampler}, {steps} steps, guidance {pipe.defaults.guidance_scale:g}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    test = args.corpus / "test"
    if not test.is_dir():
        raise SystemExit(f"{test} does not exist: pass a corpus from longplay data build-corpus")
    held_out = held_out_prompts(test)
    if not held_out:
        raise SystemExit(f"{test} holds no tracks (<id>.flac with its <id>.json sidecar)")
    if args.compare is not None and not (args.compare / "model_config.json").is_file():
        raise SystemExit(
            f"--compare {args.compare} is not a model folder (no model_config.json); to compare "
            "with an earlier bundled model, write its files into a folder with git show "
            "REV:src/longplay/assets/demo/model_config.json > FOLDER/model_config.json (and "
            "the same for model.safetensors)")
    # --model None stays None for the evaluation: its report then names the bundled model
    # instead of a path of this machine.
    args.clap = args.clap or demo_clap_path()
    assets = args.out / "demo"
    assets.mkdir(parents=True, exist_ok=True)
    previous_results = assets / "results.json"
    saved = json.loads(previous_results.read_text()) if previous_results.exists() else None
    earlier = saved if args.skip_examples else None
    pipe = TextToMusicPipeline.from_pretrained(model_or_demo(args.model))
    window_s = pipe.max_duration_s
    results: dict = {"machine": machine(), "sampler": _sampler(pipe, args.steps),
                     "model": ("the bundled demo model" if args.model is None
                               else f"the model in `{args.model.name}`"),
                     "recipe": RECIPE, "window_s": window_s, "vae": _vae_summary(pipe),
                     "per_prompt": args.per_prompt,
                     "timing_durations": list(args.timing_durations)}
    if earlier is not None:
        results["examples"] = earlier["examples"]
        results["machine"] = earlier.get("machine", results["machine"])  # of their timings
    else:
        results["examples"] = examples(pipe, assets, args.steps, args.seed)
    del pipe
    previous = None
    if args.compare is not None:
        old = TextToMusicPipeline.from_pretrained(args.compare)
        previous = {"name": args.compare_name or f"the model in `{args.compare.name}`",
                    "folder": args.compare.name, "sampler": _sampler(old, args.steps),
                    "window_s": old.max_duration_s, "vae": _vae_summary(old)}
        kept = (saved or {}).get("previous", {})
        if (kept.get("folder") == args.compare.name and "examples" in kept
                and all((assets / PREVIOUS / f"{row['name']}.{ext}").is_file()
                        for row in kept["examples"] for ext in ("png", "ogg"))):
            previous["examples"] = kept["examples"]  # an earlier model's do not change
        else:
            (assets / PREVIOUS).mkdir(exist_ok=True)
            previous["examples"] = examples(old, assets / PREVIOUS, args.steps, args.seed)
        window_s = min(window_s, old.max_duration_s)
        del old
    args.text_duration = fitting_duration(args.text_duration, window_s)
    results["text_duration_s"] = args.text_duration
    results["prompts"] = len(held_out)
    prompts = args.out / "evaluation" / "prompts.jsonl"
    write_prompt_file(prompts, held_out, args.per_prompt, args.text_duration)
    results["generated"] = evaluate(args, prompts, args.model, args.work / "generated")
    results["real"] = evaluate_real(args, args.work)
    if previous is not None:
        previous["generated"] = evaluate(args, prompts, args.compare, args.work / PREVIOUS)
        results["previous"] = previous
    write_evaluation_page(args, [track for track, _ in held_out], previous=previous,
                          model_name=results["model"])
    with atomic_output_path(previous_results) as tmp:
        tmp.write_text(json.dumps({k: v for k, v in results.items() if k != "recipe"},
                                  indent=2, default=str) + "\n")
    write_markdown(args.out / "demo.md", results)
    print(f"wrote {args.out / 'demo.md'} and {args.out / 'evaluation.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

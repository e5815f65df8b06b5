"""Produce the examples of docs/editing.md (between its examples markers) and
docs/editing/: editing beyond one window by the bundled demo model, with spectrograms
(joins marked), short Ogg Vorbis excerpts around the joins and the join scores of each
example.

    python scripts/editing_figures.py [--out docs] [--inpaint-model models/demo-inpaint]

Examples: an extension of 10 s by 20 s; a region regenerated in the middle of 30 s; a
piece with two sections; a 4-bar loop; a 10-minute piece in windows. With
``--inpaint-model``, the extension and the region again with a model fine-tuned to
inpaint. Every generation is seeded; it takes about 15 minutes on 2 CPU cores (the
10-minute piece most of it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from longplay.assets import demo_model_path
from longplay.atomic import write_json_atomic, write_text_atomic
from longplay.audio import save_audio
from longplay.audio.images import spectrogram_image, write_png
from longplay.evaluation.joins import join_scores
from longplay.pipelines import TextToMusicOutput, TextToMusicPipeline, loop_duration_s

EXCERPT_S = 4.0  # around each join
EXAMPLES_START = "<!-- examples: scripts/editing_figures.py -->"
EXAMPLES_END = "<!-- /examples -->"
MARK = np.array([255, 255, 255], dtype=np.uint8)


def picture(audio: torch.Tensor, sample_rate: int, joins_s: list[float]) -> np.ndarray:
    """The spectrogram with a white line at each join."""
    rgb = spectrogram_image(audio, sample_rate)
    duration = audio.shape[-1] / sample_rate
    for at in joins_s:
        column = min(rgb.shape[1] - 1, round(at / duration * rgb.shape[1]))
        rgb[::3, column] = MARK  # dotted, so the music under it stays visible
    return rgb


def excerpt(audio: torch.Tensor, sample_rate: int, at_s: float) -> torch.Tensor:
    start = max(0, round((at_s - EXCERPT_S / 2) * sample_rate))
    return audio[:, start:start + round(EXCERPT_S * sample_rate)]


def record(name: str, title: str, out: TextToMusicOutput, folder: Path, notes: str,
           seconds: float, media: bool = True) -> dict:
    """The example's join scores, and with ``media`` its spectrogram and excerpt."""
    audio, rate = out.audio[0], out.sample_rate
    joins = list(out.joins_s)
    circular = out.settings.loop
    scores = join_scores(audio, rate, joins, circular=circular) if joins else []
    if media:
        write_png(folder / f"{name}.png", picture(audio, rate, joins))
        at = joins[0] if joins and not circular else audio.shape[-1] / rate
        clip = excerpt(torch.cat([audio, audio], dim=-1) if circular else audio, rate, at)
        save_audio(folder / f"{name}.ogg", clip, rate)
    return {"name": name, "title": title, "notes": notes, "duration_s": audio.shape[-1] / rate,
            "windows": out.settings.num_windows, "seconds": seconds, "media": media,
            "joins": [{"at_s": s.position_s, "mel_jump": s.mel_jump, "flux": s.flux,
                       "click": s.click} for s in scores]}


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--inpaint-model", type=Path, default=None)
    parser.add_argument("--long-minutes", type=float, default=10.0)
    args = parser.parse_args()
    folder = args.out / "editing"
    folder.mkdir(parents=True, exist_ok=True)
    pipe = TextToMusicPipeline.from_pretrained(demo_model_path(), precision="auto")
    results = []

    prompt = "bossa nova, nylon guitar and flute, 120 BPM"
    source = pipe(prompt, duration_s=10.0, seed=1).audio[0]
    out, seconds = timed(lambda: pipe.extend(source, 20.0, prompt, seed=2))
    results.append(record("extend", "Extension: 10 s continued by 20 s", out, folder,
                          "`pipe.extend(audio, 20, prompt)`: the 10 s are kept sample for "
                          "sample; the join is at 10 s.", seconds))
    piece = pipe("solo piano, slow and calm", duration_s=30.0, seed=3).audio[0]
    out, seconds = timed(lambda: pipe.inpaint(piece, 12.0, 18.0,
                                              "solo piano, fast arpeggios", seed=4))
    results.append(record("inpaint", "A region regenerated: 12-18 s of 30 s", out, folder,
                          "`pipe.inpaint(audio, 12, 18, prompt)` with another prompt; "
                          "joins at 12 and 18 s.", seconds))
    out, seconds = timed(lambda: pipe(sections=[(0.0, "solo piano, slow and calm"),
                                                (30.0, "swing band with brass, 160 BPM")],
                                      duration_s=60.0, seed=5))
    results.append(record("sections", "Two sections in one minute", out, folder,
                          "`sections=[(0, piano), (30, swing band)]`: the second section "
                          "starts a window of its own at 30 s, keeping the piano's end as "
                          "context; the join is there.", seconds))
    duration = loop_duration_s(100, 4)
    out, seconds = timed(lambda: pipe("funk drum loop with bass, 100 BPM", duration_s=duration,
                                      loop=True, seed=6))
    results.append(record("loop", f"A 4-bar loop at 100 BPM ({duration:.1f} s)", out, folder,
                          "`loop=True`: the excerpt plays the loop twice; its wrap-around is "
                          "the join.", seconds))
    out, seconds = timed(lambda: pipe("fiddle reel, Irish folk", seed=7,
                                      duration_s=args.long_minutes * 60))
    results.append(record("long", f"{args.long_minutes:g} minutes in windows", out, folder,
                          f"{out.settings.num_windows} windows of 4m45s, each keeping "
                          f"{out.settings.context_s:.0f} s of the one before.", seconds))
    if args.inpaint_model is not None:
        inpainter = TextToMusicPipeline.from_pretrained(args.inpaint_model, precision="auto")
        out, seconds = timed(lambda: inpainter.extend(source, 20.0, prompt, seed=2))
        results.append(record("extend_trained", "Extension by the model trained to inpaint",
                              out, folder, "The same extension with the fine-tuned "
                              "inpainting model (configs/demo/dit-inpaint.yaml).", seconds,
                              media=False))
        out, seconds = timed(lambda: inpainter.inpaint(piece, 12.0, 18.0,
                                                       "solo piano, fast arpeggios", seed=4))
        results.append(record("inpaint_trained", "The region by the model trained to inpaint",
                              out, folder, "The same region with the fine-tuned model.",
                              seconds, media=False))
    write_json_atomic(folder / "results.json", results)
    lines = []
    for r in results:
        lines += [f"### {r['title']}", "", r["notes"], ""]
        if r["media"]:
            lines += [f"![{r['name']}](editing/{r['name']}.png)", "",
                      f"Excerpt around the join: [editing/{r['name']}.ogg]"
                      f"(editing/{r['name']}.ogg). "]
        lines[-1] += (f"{r['duration_s']:.1f} s of audio in {r['windows']} window(s), "
                      f"{r['seconds']:.0f} s on 2 CPU cores.")
        lines.append("")
        if r["joins"]:
            lines += ["| join at (s) | mel jump | flux | click |", "|---:|---:|---:|---:|"]
            lines += [f"| {j['at_s']:.2f} | {j['mel_jump']:.2f} | {j['flux']:.2f} | "
                      f"{j['click']:.2f} |" for j in r["joins"]]
            lines.append("")
    page = args.out / "editing.md"
    text = page.read_text()
    start, end = text.index(EXAMPLES_START), text.index(EXAMPLES_END)
    write_text_atomic(page, text[:start + len(EXAMPLES_START)] + "\n\n" + "\n".join(lines)
                      + "\n" + text[end:])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

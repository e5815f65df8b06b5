"""Measure what a LoRA adapter does to the bundled demo model, for docs/lora.md: on
held-out prompts, generations with and without the adapter (same seeds), and how close
each lands to the adapter's style in the demo model's own CLAP space.

    python scripts/lora_figures.py --adapter adapters/piano --style STYLE_AUDIO/ \
        --others OTHER_AUDIO/ [--out docs]

STYLE_AUDIO holds the tracks the adapter was trained on, OTHER_AUDIO the rest of the
training corpus (the contrast). Metrics (own-CLAP, 10 s windows):
- style similarity: mean cosine between a generation's windows and the centroid of the
  style's windows; "margin": the same minus the cosine to the others' centroid (how much
  more like the style than like the rest of the corpus).
- style-prompt score: mean cosine between a generation and the text "solo piano".
- prompt score: mean cosine between a generation and its own prompt (what the adapter
  costs in prompt adherence).
Writes docs/lora/results.json, spectrograms of a prompt without and with the adapter
(docs/lora/*.png), and the table between the markers of docs/lora.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from longplay.assets import demo_model_path
from longplay.atomic import write_json_atomic, write_text_atomic
from longplay.audio import load_audio
from longplay.audio.images import spectrogram_image, write_png
from longplay.evaluation.embedders import own_clap
from longplay.pipelines import TextToMusicPipeline

PROMPTS = (
    # the corpus's test split, as the training prompts are built (held out from training)
    "Instruments: Flute, Oboe, Clarinet, Bassoon. Title: String quartet Op. 18 No. 1, "
    "movement 1. Meter: 3/4. Style: string quartet. Genre: classical. Tempo: 122 BPM.",
    "110 BPM, Folk rock in G major, Voice Oohs, Acoustic Guitar (nylon), Acoustic Bass, "
    "Drum Kit, folk rock, 4/4, rock",
    "Instruments: Violin, Viola, Cello. Style: string quartet. Genre: romantic. Tempo: 58 BPM.",
    "Instruments: Trombone, Oboe. Title: Gloria. Style: trecento polyphony. Genre: medieval.",
    "Instruments: Flute. Title: Cat:holic Bill's Jig. Meter: 6/8. Style: jig. Genre: fiddle "
    "music. Tempo: 134 BPM.",
    # and plain prompts
    "a gentle waltz in three",
    "a lively reel",
    "a slow lament in a minor key",
    "a march for a brass band",
    "a bossa nova with nylon guitar",
)
STYLE_TEXT = "solo piano"
SEEDS = (0, 1)
DURATION_S = 20.0
WINDOW_FRAMES = 512
PICTURES = (5,)  # prompts shown as spectrograms, without and with the adapter at scale 1
TABLE_START = "<!-- results: scripts/lora_figures.py -->"
TABLE_END = "<!-- /results -->"


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".flac", ".wav"))


def centroid(clap, files: list[Path], sample_rate: int) -> torch.Tensor:
    """The unit mean of the own-CLAP embeddings of every 10 s window of ``files``."""
    embeddings = []
    for path in files:
        audio = load_audio(path, sample_rate=sample_rate, channels=2).audio
        embeddings.append(clap.embed_windows(audio[None], sample_rate).flatten(0, 1))
    mean = torch.cat(embeddings).mean(0)
    return mean / mean.norm()


def generate(pipe, adapters, seed: int) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = pipe(list(PROMPTS), duration_s=DURATION_S, seed=seed,
               latents=torch.randn(len(PROMPTS), pipe.config.vae.latent_dim, WINDOW_FRAMES,
                                   generator=torch.Generator().manual_seed(seed)),
               adapters=adapters)
    return out.audio, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--style", type=Path, required=True, help="the style's audio folder")
    parser.add_argument("--others", type=Path, required=True, help="the rest of the corpus")
    parser.add_argument("--model", type=Path, default=demo_model_path())
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--training", type=Path, default=None,
                        help="a JSON file with the training's time and memory, to report")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()

    pipe = TextToMusicPipeline.from_pretrained(args.model, precision="auto")
    clap = own_clap(args.model / "clap")
    sr = pipe.sample_rate
    style = centroid(clap, audio_files(args.style), sr)
    others = centroid(clap, audio_files(args.others), sr)
    texts = clap.embed_text(list(PROMPTS))
    style_text = clap.embed_text([STYLE_TEXT])[0]
    folder = args.out / "lora"
    folder.mkdir(parents=True, exist_ok=True)

    rows = []
    for scale in (0.0, *args.scales):
        adapters = [(args.adapter, scale)] if scale else []
        runs = [generate(pipe, adapters, seed) for seed in SEEDS]
        audio = torch.cat([a for a, _ in runs])  # [S * P, C, N]
        windows = clap.embed_windows(audio, sr)  # [S * P, W, E]
        whole = clap.embed_audio(audio, sr)  # [S * P, E]
        to_style = (windows @ style).mean(1)
        to_others = (windows @ others).mean(1)
        rows.append({
            "scale": scale,
            "style_similarity": float(to_style.mean()),
            "margin": float((to_style - to_others).mean()),
            "margin_per_prompt": [float(v) for v in (to_style - to_others).view(
                len(SEEDS), len(PROMPTS)).mean(0)],
            "style_prompt_score": float((whole @ style_text).mean()),
            "prompt_score": float((whole * texts.repeat(len(SEEDS), 1)).sum(-1).mean()),
            "seconds_per_batch": statistics.mean(t for _, t in runs)})
        for index in PICTURES if scale in (0.0, 1.0) else ():
            name = f"prompt{index}-scale{scale:g}.png"
            write_png(folder / name, spectrogram_image(audio[index], sr))
        print(json.dumps(rows[-1]), flush=True)

    training = json.loads(args.training.read_text()) if args.training else None
    write_json_atomic(folder / "results.json", {
        "prompts": list(PROMPTS), "seeds": list(SEEDS), "duration_s": DURATION_S,
        "style_text": STYLE_TEXT, "rows": rows, "training": training})
    lines = ["| adapter scale | style similarity | margin over the rest of the corpus | "
             "\"solo piano\" score | own-prompt score | prompts with a larger margin |",
             "|---:|---:|---:|---:|---:|---:|"]
    base = rows[0]["margin_per_prompt"]
    for r in rows:
        moved = sum(m > b for m, b in zip(r["margin_per_prompt"], base, strict=True))
        lines.append(f"| {r['scale']:g} | {r['style_similarity']:.3f} | {r['margin']:+.3f} | "
                     f"{r['style_prompt_score']:.3f} | {r['prompt_score']:.3f} | "
                     f"{'—' if r is rows[0] else f'{moved} of {len(base)}'} |")
    doc = args.out / "lora.md"
    text = doc.read_text()
    head, rest = text.split(TABLE_START)
    _, tail = rest.split(TABLE_END)
    write_text_atomic(doc, head + TABLE_START + "\n" + "\n".join(lines) + "\n" + TABLE_END
                      + tail)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

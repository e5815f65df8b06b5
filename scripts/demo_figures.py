"""Produce docs/demo.md: examples and measurements of the bundled demo model.

    python scripts/demo_figures.py --corpus CORPUS [--out docs]

CORPUS is a folder written by ``longplay data build-corpus`` (its ``test/`` split is
held out from training). The script writes ``OUT/demo.md`` and ``OUT/demo/`` (spectrogram
PNGs, Ogg Vorbis excerpts, ``results.json``). Every generation is seeded, so a rerun on
the same machine gives the same numbers. It takes about 15 minutes on 2 CPU cores.

Sections:
1. examples: prompts in different styles, instruments, tempos and durations (10 s to
   4m45s), each with its spectrogram and an excerpt;
2. VAE reconstruction of held-out tracks (STFT distance, MEL distance, SI-SDR), next to
   the paper's numbers for its autoencoder;
3. text adherence: the demo CLAP's score of generations against their prompts and
   against shuffled prompts (and the same for the real held-out tracks);
4. timing adherence: 10 s, 60 s and 4m45s requests generated in the full window.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from longplay.assets import demo_clap_path, demo_model_path
from longplay.audio import atomic_output_path, load_audio, save_audio
from longplay.audio.images import save_spectrogram_png
from longplay.conditioning import load_clap
from longplay.data import PromptBuilder
from longplay.evaluation import (
    CLAPScore,
    clap_embedders,
    mel_distance,
    si_sdr,
    stft_distance,
    timing_adherence,
)
from longplay.pipelines import TextToMusicPipeline

PAPER_VAE = {"stft": 1.19, "mel": 0.71, "si_sdr": 7.14}
EXCERPT_S = 15.0


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


def _prompts_of(folder: Path) -> list[tuple[Path, str]]:
    """(audio, prompt) for the tracks of a corpus split: every descriptive field of the
    track's metadata, in a fixed order (the training prompts are random subsets of
    these fields)."""
    builder = PromptBuilder()
    items = []
    for sidecar in sorted(folder.glob("*.json")):
        audio = sidecar.with_suffix(".flac")
        if audio.exists():
            fields = builder.available_fields(json.loads(sidecar.read_text()))
            items.append((audio, ", ".join(value for _, value in fields) or "music"))
    return items


def write_prompt_file(path: Path, items: list[tuple[Path, str]]) -> None:
    """The held-out prompts as a JSONL prompt file for ``longplay evaluate``."""
    with atomic_output_path(path) as tmp:
        tmp.write_text("".join(json.dumps({"id": audio.stem, "prompt": prompt}) + "\n"
                               for audio, prompt in items))


def _derangement(n: int) -> list[int]:
    return [(i + 1) % n for i in range(n)]


def examples(pipe: TextToMusicPipeline, out: Path, steps: int, seed: int) -> list[dict]:
    rows = []
    for i, ex in enumerate(EXAMPLES):
        start = time.perf_counter()
        result = pipe(ex.prompt, duration_s=ex.duration_s, num_inference_steps=steps,
                      seed=seed + i)
        seconds = time.perf_counter() - start
        audio = result.audio[0]
        save_spectrogram_png(out / f"{ex.name}.png", audio, result.sample_rate)
        excerpt = audio[:, : round(min(EXCERPT_S, ex.duration_s) * result.sample_rate)]
        save_audio(out / f"{ex.name}.ogg", excerpt, result.sample_rate)
        rows.append({"name": ex.name, "prompt": ex.prompt, "duration_s": ex.duration_s,
                     "seed": seed + i, "seconds": round(seconds, 1),
                     "window_frames": result.settings.window_frames})
        print(f"example {ex.name}: {seconds:.1f} s", flush=True)
    return rows


def vae_reconstruction(pipe: TextToMusicPipeline, tracks: list[Path],
                       max_seconds: float) -> dict:
    vae, sr = pipe.model.vae, pipe.sample_rate
    scores = {"stft": [], "mel": [], "si_sdr": []}
    for path in tracks:
        audio = load_audio(path, sample_rate=sr, channels=2).audio[:, : round(max_seconds * sr)]
        with torch.inference_mode():
            rec = vae.reconstruct(audio[None])[0, :, : audio.shape[-1]]
        scores["stft"].append(stft_distance(audio, rec))
        scores["mel"].append(mel_distance(audio, rec, sr))
        scores["si_sdr"].append(si_sdr(audio, rec))
    return {k: sum(v) / len(v) for k, v in scores.items()} | {"tracks": len(tracks),
                                                              "seconds_each": max_seconds}


def text_adherence(pipe: TextToMusicPipeline, clap, items: list[tuple[Path, str]], steps: int,
                   seed: int, duration_s: float, per_prompt: int) -> dict:
    """CLAP score of ``per_prompt`` generations per prompt (and of the real track) against
    its prompt and against the next item's prompt (a derangement: chance level)."""
    embed_audio, embed_text = clap_embedders(clap)
    prompts = [p for _, p in items]
    n = len(prompts)
    sets: dict[str, tuple[list[torch.Tensor], list[str], list[str]]] = {
        "generated": ([], [], []), "real": ([], [], [])}
    for i, (path, prompt) in enumerate(items):
        other = prompts[(i + 1) % n]
        out = pipe(prompt, duration_s=duration_s, num_inference_steps=steps,
                   seed=seed + i * per_prompt, num_outputs=per_prompt)
        for clip in out.audio:
            sets["generated"][0].append(clip)
            sets["generated"][1].append(prompt)
            sets["generated"][2].append(other)
        track = load_audio(path, sample_rate=pipe.sample_rate, channels=2).audio
        sets["real"][0].append(track[:, : round(duration_s * pipe.sample_rate)])
        sets["real"][1].append(prompt)
        sets["real"][2].append(other)
    result: dict = {}
    for name, (clips, matched_prompts, shuffled_prompts) in sets.items():
        length = min(c.shape[-1] for c in clips)
        audio_emb = embed_audio(torch.stack([c[:, :length] for c in clips]), pipe.sample_rate)
        matched, mismatched = CLAPScore(), CLAPScore()
        matched.update_embeddings(audio_emb, embed_text(matched_prompts))
        mismatched.update_embeddings(audio_emb, embed_text(shuffled_prompts))
        result[name] = {"prompts": matched.compute(), "shuffled": mismatched.compute(),
                        "clips": len(clips)}
    result["items"] = n
    result["per_prompt"] = per_prompt
    result["prompts"] = prompts
    return result


def timing(pipe: TextToMusicPipeline, steps: int, seed: int) -> list[dict]:
    rows = []
    for i, duration in enumerate((10.0, 60.0, 285.0)):
        window_s = pipe.max_duration_s
        guard = min(1.0, (window_s - duration) / 2)
        out = pipe("rock, electric guitar, bass and drums, 130 BPM", duration_s=duration,
                   num_inference_steps=steps, seed=seed + i, window="full")
        with torch.inference_mode():
            full = pipe.model.vae.decode(out.latents.to(pipe.device))[0].float().cpu()
        r = timing_adherence(full, pipe.sample_rate, duration, guard_s=guard)
        rows.append({"duration_s": duration, "window_s": round(r.window_s, 2),
                     "content_db": r.content_db, "tail_db": r.tail_db,
                     "relative_db": r.relative_db, "guard_s": guard})
        print(f"timing {duration} s: {r.relative_db:.1f} dB", flush=True)
    return rows


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def write_markdown(path: Path, results: dict) -> None:
    ex, vae, text, tim = (results["examples"], results["vae"], results["text"],
                          results["timing"])
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
        f"{results['machine']}; sampler settings: {results['sampler']}).",
        "",
        "## Examples",
        "",
        "| | prompt | duration | generation time | spectrogram | excerpt |",
        "|---|---|---|---|---|---|",
    ]
    for row in ex:
        lines.append(f"| {row['name']} | {row['prompt']} | {row['duration_s']:g} s | "
                     f"{row['seconds']:.0f} s | ![{row['name']}](demo/{row['name']}.png) | "
                     f"[{row['name']}.ogg](demo/{row['name']}.ogg) |")
    lines += [
        "",
        f"Excerpts are the first {EXCERPT_S:g} s (Ogg Vorbis). Seeds are in "
        "`demo/results.json`.",
        "",
        "## VAE reconstruction (held-out corpus tracks)",
        "",
        f"{vae['tracks']} tracks of the corpus's test split, the first {vae['seconds_each']:g} s "
        "of each; metrics as in SYSTEM.md section 6 (lower STFT and MEL distance and higher "
        "SI-SDR are better).",
        "",
        "| autoencoder | STFT distance | MEL distance | SI-SDR (dB) |",
        "|---|---|---|---|",
        f"| demo VAE (2M parameters, 32 channels) | {_f(vae['stft'])} | {_f(vae['mel'])} | "
        f"{_f(vae['si_sdr'])} |",
        f"| paper (Stable Audio 2.0 VAE, 156M) | {PAPER_VAE['stft']} | {PAPER_VAE['mel']} | "
        f"{PAPER_VAE['si_sdr']} |",
        "",
        "## Text adherence (the demo CLAP)",
        "",
        f"{text['items']} prompts built from the held-out tracks' metadata (every field, "
        f"`demo/prompts.jsonl`), {text['per_prompt']} generations of "
        f"{results['text_duration_s']:g} s each. CLAP score = mean cosine between the audio "
        "embedding and the prompt's text embedding; \"shuffled\" pairs each clip with another "
        "clip's prompt (chance level). The real tracks show what the CLAP itself can "
        "separate.",
        "",
        "| audio | clips | CLAP score vs prompts | vs shuffled prompts | difference |",
        "|---|---|---|---|---|",
    ]
    for name in ("generated", "real"):
        t = text[name]
        lines.append(f"| {name} | {t['clips']} | {_f(t['prompts'], 3)} | {_f(t['shuffled'], 3)} | "
                     f"{_f(t['prompts'] - t['shuffled'], 3)} |")
    lines += [
        "",
        "## Timing adherence",
        "",
        "Requests generated in the model's full window (4m45s) and decoded untrimmed. Level = "
        "RMS in dBFS; the tail starts `guard` seconds after the requested end (see "
        "`longplay.evaluation.timing`). Relative level = tail - content: strongly negative "
        "means the music ends where asked.",
        "",
        "| requested | content level (dB) | tail level (dB) | relative (dB) | guard (s) |",
        "|---|---|---|---|---|",
    ]
    for row in tim:
        lines.append(f"| {row['duration_s']:g} s | {_f(row['content_db'], 1)} | "
                     f"{_f(row['tail_db'], 1)} | {_f(row['relative_db'], 1)} | "
                     f"{row['guard_s']:g} |")
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True,
                        help="a corpus folder from longplay data build-corpus")
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--clap", type=Path, default=None, help="default: the bundled CLAP")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--per-prompt", type=int, default=3,
                        help="generations per held-out prompt for text adherence")
    parser.add_argument("--timing-steps", type=int, default=25,
                        help="steps of the three full-window (4m45s) timing generations")
    parser.add_argument("--text-duration", type=float, default=10.0)
    parser.add_argument("--vae-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-examples", action="store_true",
                        help="keep the examples of an earlier run (results.json)")
    args = parser.parse_args()
    test = args.corpus / "test"
    if not test.is_dir():
        raise SystemExit(f"{test} does not exist: pass a corpus from longplay data build-corpus")
    torch.set_num_threads(torch.get_num_threads())
    assets = args.out / "demo"
    assets.mkdir(parents=True, exist_ok=True)
    pipe = TextToMusicPipeline.from_pretrained(args.model or demo_model_path())
    clap = load_clap(args.clap or demo_clap_path())
    previous = assets / "results.json"
    results: dict = {"machine": "2 CPU cores (AMD EPYC), torch CPU, float32",
                     "sampler": f"{pipe.defaults.sampler}, {args.steps} steps, guidance "
                                f"{pipe.defaults.guidance_scale:g}",
                     "recipe": RECIPE, "text_duration_s": args.text_duration}
    if args.skip_examples and previous.exists():
        results["examples"] = json.loads(previous.read_text())["examples"]
    else:
        results["examples"] = examples(pipe, assets, args.steps, args.seed)
    held_out = _prompts_of(test)
    write_prompt_file(assets / "prompts.jsonl", held_out)
    results["vae"] = vae_reconstruction(pipe, [a for a, _ in held_out], args.vae_seconds)
    results["text"] = text_adherence(pipe, clap, held_out, args.steps, args.seed + 100,
                                     args.text_duration, args.per_prompt)
    results["timing"] = timing(pipe, args.timing_steps, args.seed + 200)
    with atomic_output_path(previous) as tmp:
        tmp.write_text(json.dumps({k: v for k, v in results.items() if k != "recipe"},
                                  indent=2) + "\n")
    write_markdown(args.out / "demo.md", results)
    print(f"wrote {args.out / 'demo.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

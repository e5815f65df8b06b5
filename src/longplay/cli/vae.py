"""``longplay vae encode | decode | reconstruct | metrics``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from longplay.audio import load_audio, save_audio
from longplay.autoencoder import DEFAULT_CHUNK_FRAMES, DEFAULT_CONTEXT_FRAMES, AudioVAE
from longplay.builders import build_vae
from longplay.checkpoints import load_vae
from longplay.checkpoints.files import (
    CheckpointError,
    read_safetensors_metadata,
    read_state_dict,
    write_safetensors,
)
from longplay.config import VAE_PRESETS, vae_preset
from longplay.evaluation import ReconstructionMetrics, compare_audio

logger = logging.getLogger(__name__)

LATENTS_KEY = "latents"


def add_parser(sub: argparse._SubParsersAction) -> None:
    vae = sub.add_parser("vae", help="encode, decode and reconstruct audio with the VAE")
    vae_sub = vae.add_subparsers(dest="vae_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        src = p.add_mutually_exclusive_group()
        src.add_argument("--model", type=Path, metavar="PATH",
                         help="model folder (Stable Audio Open, stable-audio-tools or diffusers) "
                              "or VAE weight file (.safetensors / .ckpt)")
        src.add_argument("--random-weights", choices=sorted(VAE_PRESETS), metavar="PRESET",
                         help="use an untrained VAE of this preset (output is noise; for "
                              f"testing only): {', '.join(sorted(VAE_PRESETS))}")
        p.add_argument("--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES,
                       help="latent frames per chunk; 0 processes the whole input at once "
                            f"(default {DEFAULT_CHUNK_FRAMES})")
        p.add_argument("--context-frames", type=int, default=DEFAULT_CONTEXT_FRAMES,
                       help=f"context on each side of a chunk (default {DEFAULT_CONTEXT_FRAMES})")
        p.add_argument("--device", default="cpu", help="torch device (default cpu)")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    enc = vae_sub.add_parser("encode", help="audio file -> latents (.safetensors)")
    enc.add_argument("input", type=Path, metavar="IN")
    enc.add_argument("-o", "--output", type=Path, required=True, help="latents .safetensors")
    enc.add_argument("--sample", action="store_true",
                     help="store a sample of the posterior instead of its mean")
    enc.add_argument("--seed", type=int, default=0, help="seed for --sample (default 0)")
    common(enc)
    enc.set_defaults(run=run_encode)

    dec = vae_sub.add_parser("decode", help="latents (.safetensors) -> audio file")
    dec.add_argument("input", type=Path, metavar="LATENTS")
    dec.add_argument("-o", "--output", type=Path, required=True, help="output .wav or .flac")
    common(dec)
    dec.set_defaults(run=run_decode)

    rec = vae_sub.add_parser("reconstruct",
                             help="encode then decode an audio file and print the metrics")
    rec.add_argument("input", type=Path, metavar="IN")
    rec.add_argument("-o", "--output", type=Path, required=True, help="output .wav or .flac")
    common(rec)
    rec.set_defaults(run=run_reconstruct)

    met = vae_sub.add_parser("metrics",
                             help="STFT distance, MEL distance and SI-SDR of two files or folders")
    met.add_argument("reference", type=Path)
    met.add_argument("estimate", type=Path)
    met.add_argument("--sample-rate", type=int, default=44100)
    met.add_argument("--json", action="store_true", help="print JSON")
    met.set_defaults(run=run_metrics)


def _load_model(args: argparse.Namespace) -> AudioVAE:
    if args.random_weights:
        logger.warning("using an untrained %r VAE with random weights: the output is noise",
                       args.random_weights)
        return build_vae(vae_preset(args.random_weights), seed=0).to(args.device).eval()
    if args.model is None:
        raise ValueError("no VAE given: pass --model PATH (a Stable Audio Open model folder, a "
                         "diffusers folder or a VAE weight file), or --random-weights PRESET "
                         "to test with an untrained model")
    return load_vae(args.model, device=args.device)


def _chunk_args(args: argparse.Namespace) -> dict:
    if args.chunk_frames < 0 or args.context_frames < 0:
        raise ValueError("--chunk-frames and --context-frames must be >= 0")
    return {"chunk_frames": args.chunk_frames or None, "context_frames": args.context_frames}


class _Progress:
    """A tqdm bar driven by the VAE's (done, total) chunk callback."""

    def __init__(self, desc: str, disable: bool) -> None:
        self.bar = tqdm(desc=desc, unit="chunk", disable=disable, leave=False)

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _check_output(path: Path, suffixes: tuple[str, ...]) -> None:
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"output {path} must end in {' or '.join(suffixes)}")
    if not path.parent.exists():
        raise FileNotFoundError(f"output folder {path.parent} does not exist")


def run_encode(args: argparse.Namespace) -> int:
    _check_output(args.output, (".safetensors",))
    vae = _load_model(args)
    wave = load_audio(args.input, sample_rate=vae.sample_rate, channels=vae.audio_channels)
    progress = _Progress("encoding", args.no_progress)
    with torch.inference_mode():
        dist = vae.encode(wave.audio[None].to(args.device), progress=progress, **_chunk_args(args))
        generator = torch.Generator(device=args.device).manual_seed(args.seed)
        latents = dist.sample(generator) if args.sample else dist.mode()
    progress.close()
    metadata = {
        "sample_rate": str(vae.sample_rate),
        "hop_length": str(vae.hop_length),
        "num_samples": str(wave.num_samples),
        "latents": f"sample (seed {args.seed})" if args.sample else "mean",
        "source": str(args.input),
    }
    write_safetensors(args.output, {LATENTS_KEY: latents.float().cpu()}, metadata)
    print(f"wrote {args.output}: latents {tuple(latents.shape)} "
          f"({latents.shape[-1] / vae.latent_rate:.2f} s at {vae.latent_rate:.3f} Hz)")
    return 0


def run_decode(args: argparse.Namespace) -> int:
    _check_output(args.output, (".wav", ".flac"))
    state = read_state_dict(args.input)
    if LATENTS_KEY not in state:
        raise CheckpointError(f"{args.input} has no '{LATENTS_KEY}' tensor; write one with "
                              "`longplay vae encode`")
    latents = state[LATENTS_KEY]
    if latents.dim() == 2:
        latents = latents[None]
    metadata = read_safetensors_metadata(args.input) if args.input.suffix == ".safetensors" else {}
    vae = _load_model(args)
    if latents.dim() != 3 or latents.shape[1] != vae.latent_dim:
        raise ValueError(f"{args.input}: latents {tuple(latents.shape)} do not fit this VAE, "
                         f"which expects [B, {vae.latent_dim}, T]")
    if "hop_length" in metadata and int(metadata["hop_length"]) != vae.hop_length:
        raise ValueError(f"{args.input} was encoded with hop {metadata['hop_length']}, this VAE "
                         f"has hop {vae.hop_length}")
    num_samples = int(metadata["num_samples"]) if "num_samples" in metadata else None
    if not torch.isfinite(latents).all():
        raise ValueError(f"{args.input} contains NaN or infinite latents")
    progress = _Progress("decoding", args.no_progress)
    with torch.inference_mode():
        audio = vae.decode(latents.to(args.device), num_samples=num_samples, progress=progress,
                           **_chunk_args(args))
    progress.close()
    outputs = _write_batch(args.output, audio.cpu(), vae.sample_rate)
    print(f"wrote {', '.join(str(p) for p in outputs)}")
    return 0


def _write_batch(path: Path, audio: torch.Tensor, sample_rate: int) -> list[Path]:
    """Write audio [B, C, S]: one file for B = 1, else PATH stem + _i."""
    if audio.shape[0] == 1:
        return [save_audio(path, audio[0], sample_rate)]
    return [save_audio(path.with_name(f"{path.stem}_{i}{path.suffix}"), item, sample_rate)
            for i, item in enumerate(audio)]


def run_reconstruct(args: argparse.Namespace) -> int:
    _check_output(args.output, (".wav", ".flac"))
    vae = _load_model(args)
    wave = load_audio(args.input, sample_rate=vae.sample_rate, channels=vae.audio_channels)
    audio = wave.audio[None].to(args.device)  # [1, C, S]
    chunks = _chunk_args(args)
    progress = _Progress("encoding", args.no_progress)
    with torch.inference_mode():
        latents = vae.encode(audio, progress=progress, **chunks).mode()
        progress.close()
        progress = _Progress("decoding", args.no_progress)
        recon = vae.decode(latents, num_samples=audio.shape[-1], progress=progress, **chunks)
    progress.close()
    save_audio(args.output, recon[0].cpu(), vae.sample_rate)
    metrics = ReconstructionMetrics()
    metrics.update(audio.cpu(), recon.cpu(), vae.sample_rate)
    scores = metrics.compute()
    print(f"wrote {args.output} ({wave.duration_s:.2f} s, {latents.shape[-1]} latent frames)")
    print(f"STFT distance {scores.stft_distance:.3f}  MEL distance {scores.mel_distance:.3f}  "
          f"SI-SDR {scores.si_sdr:.2f} dB")
    return 0


def run_metrics(args: argparse.Namespace) -> int:
    scores = compare_audio(args.reference, args.estimate, sample_rate=args.sample_rate)
    if args.json:
        print(json.dumps(scores.as_dict(), indent=2))
    else:
        print(f"{scores.num_items} item(s): STFT distance {scores.stft_distance:.3f}  "
              f"MEL distance {scores.mel_distance:.3f}  SI-SDR {scores.si_sdr:.2f} dB")
    return 0

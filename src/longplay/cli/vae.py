"""``longplay vae encode | decode | reconstruct | metrics``.

Every command checks what needs no weights (the input file, the output path, the
numeric options) before the model loads, so a mistake is reported at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch
from tqdm import tqdm

from longplay.assets import model_or_demo
from longplay.audio import (
    MAX_INPUT_SAMPLE_RATE,
    MIN_INPUT_SAMPLE_RATE,
    Waveform,
    convert_channels,
    load_audio,
    resample,
    save_audio,
)
from longplay.autoencoder import DEFAULT_CHUNK_FRAMES, DEFAULT_CONTEXT_FRAMES, AudioVAE
from longplay.builders import build_vae
from longplay.checkpoints import load_vae
from longplay.checkpoints.files import (
    CheckpointError,
    read_safetensors_metadata,
    read_state_dict,
    write_safetensors,
)
from longplay.cli.options import add_device_option
from longplay.config import VAE_PRESETS, vae_preset
from longplay.evaluation import ReconstructionScores, compare_audio
from longplay.evaluation.autoencoder_metrics import STFT_WINDOW_LENGTHS
from longplay.evaluation.fidelity import ADDED_TONE_FLOOR_DB

logger = logging.getLogger(__name__)

LATENTS_KEY = "latents"
MIN_SCORED_SAMPLES = max(STFT_WINDOW_LENGTHS) // 2 + 1
"""The shortest audio the reconstruction metrics score (their centred 2048-point STFT)."""

_METRICS_NOTE = ("Both `vae reconstruct` and `vae metrics` score the files as written (the "
                 "16-bit output, not the model's float samples), at one sample rate, as "
                 "stereo: `vae metrics IN OUT --sample-rate R` prints the numbers `vae "
                 "reconstruct IN -o OUT` printed, R being the VAE's rate.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    vae = sub.add_parser("vae", help="encode, decode and reconstruct audio with the VAE",
                         description="Encode, decode and reconstruct audio with a model's VAE "
                                     "(the bundled demo model unless --model is given), and "
                                     "score reconstructions.")
    vae_sub = vae.add_subparsers(dest="vae_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        src = p.add_mutually_exclusive_group()
        src.add_argument("--model", type=Path, metavar="PATH",
                         help="model folder (Stable Audio Open, stable-audio-tools or "
                              "diffusers), VAE weight file (.safetensors / .ckpt), or a "
                              "bundled model's name (default: the bundled demo model)")
        src.add_argument("--random-weights", choices=sorted(VAE_PRESETS), metavar="PRESET",
                         help="use an untrained VAE of this preset (output is noise; for "
                              f"testing only): {', '.join(sorted(VAE_PRESETS))}")
        p.add_argument("--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES, metavar="N",
                       help="latent frames per chunk; 0 processes the whole input at once "
                            f"(default {DEFAULT_CHUNK_FRAMES})")
        p.add_argument("--context-frames", type=int, default=DEFAULT_CONTEXT_FRAMES,
                       metavar="N",
                       help="latent frames of context on each side of a chunk (default "
                            f"{DEFAULT_CONTEXT_FRAMES})")
        add_device_option(p, progress=True)

    enc = vae_sub.add_parser("encode", help="audio file -> latents (.safetensors)")
    enc.add_argument("input", type=Path, metavar="IN",
                     help="audio file (wav, flac, ogg or mp3), resampled and converted to "
                          "the VAE's rate and channels")
    enc.add_argument("-o", "--output", type=Path, required=True,
                     help="latents file to write (.safetensors)")
    enc.add_argument("--sample", action="store_true",
                     help="store a sample of the posterior instead of its mean")
    enc.add_argument("--seed", type=int, default=0, help="seed for --sample (default 0)")
    common(enc)
    enc.set_defaults(run=run_encode)

    dec = vae_sub.add_parser("decode", help="latents (.safetensors) -> audio file")
    dec.add_argument("input", type=Path, metavar="LATENTS",
                     help="latents file written by `longplay vae encode` ([D, T] or [B, D, T] "
                          f"tensor '{LATENTS_KEY}')")
    dec.add_argument("-o", "--output", type=Path, required=True,
                     help="output .wav or .flac (16-bit); a batch of B latents writes "
                          "OUT_0 .. OUT_{B-1}")
    common(dec)
    dec.set_defaults(run=run_decode)

    rec = vae_sub.add_parser(
        "reconstruct", help="encode then decode an audio file and print the metrics",
        description="Encode IN with the VAE (the posterior mean), decode it, write the result "
                    "and print the STFT distance, MEL distance, SI-SDR and fidelity checks (DC "
                    "offset, added tonal lines, chroma, pitch) of the written file against IN "
                    "at the VAE's sample rate. " + _METRICS_NOTE)
    rec.add_argument("input", type=Path, metavar="IN",
                     help=f"audio file (wav, flac, ogg or mp3) of at least {MIN_SCORED_SAMPLES} "
                          "samples at the VAE's rate")
    rec.add_argument("-o", "--output", type=Path, required=True,
                     help="output .wav or .flac (16-bit)")
    common(rec)
    rec.set_defaults(run=run_reconstruct)

    met = vae_sub.add_parser(
        "metrics", help="STFT/MEL distance, SI-SDR and fidelity checks of two files or folders",
        description="Score estimates against references: two audio files, or two folders "
                    "whose files are paired by relative path (extension ignored). " +
                    _METRICS_NOTE)
    met.add_argument("reference", type=Path, help="original audio file or folder")
    met.add_argument("estimate", type=Path,
                     help="reconstruction: a file, or a folder with a file for every reference")
    met.add_argument("--sample-rate", type=int, default=44100, metavar="HZ",
                     help="rate both sides are resampled to before scoring (default 44100; "
                          "use the VAE's rate to match `vae reconstruct`)")
    met.add_argument("--json", action="store_true", help="print JSON")
    met.set_defaults(run=run_metrics)


def _load_model(args: argparse.Namespace) -> AudioVAE:
    if args.random_weights:
        logger.warning("using an untrained %r VAE with random weights: the output is noise",
                       args.random_weights)
        return build_vae(vae_preset(args.random_weights), seed=0).to(args.device).eval()
    return load_vae(model_or_demo(args.model), device=args.device)


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
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {path.parent} does not exist; create it first "
                                "(mkdir -p)")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {path.parent} is not writable; choose another -o")


def _model_audio(wave: Waveform, vae: AudioVAE) -> torch.Tensor:
    """The waveform as the VAE takes it, [C, S]: as ``load_audio(path, sample_rate=...,
    channels=...)`` would have read it (channels converted, then resampled)."""
    audio = convert_channels(wave.audio, vae.audio_channels)
    return resample(audio, wave.sample_rate, vae.sample_rate).contiguous()


def run_encode(args: argparse.Namespace) -> int:
    _check_output(args.output, (".safetensors",))
    chunks = _chunk_args(args)
    wave = load_audio(args.input)  # the input's problems are found before the model loads
    vae = _load_model(args)
    audio = _model_audio(wave, vae)
    progress = _Progress("encoding", args.no_progress)
    with torch.inference_mode():
        dist = vae.encode(audio[None].to(args.device), progress=progress, **chunks)
        generator = torch.Generator(device=args.device).manual_seed(args.seed)
        latents = dist.sample(generator) if args.sample else dist.mode()
    progress.close()
    metadata = {
        "sample_rate": str(vae.sample_rate),
        "hop_length": str(vae.hop_length),
        "num_samples": str(audio.shape[-1]),
        "latents": f"sample (seed {args.seed})" if args.sample else "mean",
        "source": os.fsencode(args.input).decode("utf-8", "replace"),
    }
    write_safetensors(args.output, {LATENTS_KEY: latents.float().cpu()}, metadata)
    print(f"wrote {args.output}: latents {tuple(latents.shape)} "
          f"({latents.shape[-1] / vae.latent_rate:.2f} s at {vae.latent_rate:.3f} Hz)")
    return 0


def _read_latents(path: Path) -> tuple[torch.Tensor, dict[str, str]]:
    """(latents [B, D, T], metadata) of a latents file, checked as far as no model is
    needed: the tensor exists, has 2 or 3 dimensions, at least one frame, finite values,
    and the metadata's lengths are whole numbers that fit it."""
    state = read_state_dict(path)
    if LATENTS_KEY not in state:
        raise CheckpointError(f"{path} has no '{LATENTS_KEY}' tensor; write one with "
                              "`longplay vae encode`")
    latents = state[LATENTS_KEY]
    if latents.dim() == 2:
        latents = latents[None]
    if latents.dim() != 3:
        raise ValueError(f"{path}: latents {tuple(latents.shape)} must be [D, T] or [B, D, T]")
    if latents.shape[0] == 0 or latents.shape[-1] == 0:
        raise ValueError(f"{path}: latents {tuple(latents.shape)} hold no frames, so there is "
                         "nothing to decode; encode a non-empty audio file")
    if not latents.is_floating_point() or not torch.isfinite(latents).all():
        raise ValueError(f"{path} contains NaN, infinite or non-float latents")
    metadata = read_safetensors_metadata(path) if path.suffix == ".safetensors" else {}
    for key in ("hop_length", "num_samples"):
        if key in metadata and not (metadata[key].isdigit() and int(metadata[key]) > 0):
            raise ValueError(f"{path}: metadata {key}={metadata[key]!r} is not a positive "
                             "integer; write the file again with `longplay vae encode`")
    if "hop_length" in metadata and "num_samples" in metadata:
        capacity = latents.shape[-1] * int(metadata["hop_length"])
        if int(metadata["num_samples"]) > capacity:
            raise ValueError(f"{path}: metadata num_samples={metadata['num_samples']} is more "
                             f"than its {latents.shape[-1]} frames hold ({capacity} samples)")
    return latents, metadata


def run_decode(args: argparse.Namespace) -> int:
    _check_output(args.output, (".wav", ".flac"))
    chunks = _chunk_args(args)
    latents, metadata = _read_latents(args.input)
    vae = _load_model(args)
    if latents.shape[1] != vae.latent_dim:
        raise ValueError(f"{args.input}: latents {tuple(latents.shape)} do not fit this VAE, "
                         f"which expects [B, {vae.latent_dim}, T]")
    if "hop_length" in metadata and int(metadata["hop_length"]) != vae.hop_length:
        raise ValueError(f"{args.input} was encoded with hop {metadata['hop_length']}, this VAE "
                         f"has hop {vae.hop_length}")
    num_samples = int(metadata["num_samples"]) if "num_samples" in metadata else None
    progress = _Progress("decoding", args.no_progress)
    with torch.inference_mode():
        audio = vae.decode(latents.to(args.device), num_samples=num_samples, progress=progress,
                           **chunks)
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
    chunks = _chunk_args(args)
    wave = load_audio(args.input)  # the input's problems are found before the model loads
    vae = _load_model(args)
    audio = _model_audio(wave, vae)[None].to(args.device)  # [1, C, S]
    if audio.shape[-1] < MIN_SCORED_SAMPLES:
        raise ValueError(f"{args.input}: {audio.shape[-1]} samples at {vae.sample_rate} Hz are "
                         f"too few to score; the metrics need at least {MIN_SCORED_SAMPLES} "
                         f"({MIN_SCORED_SAMPLES / vae.sample_rate:.3f} s). Nothing was written; "
                         "pass a longer file")
    progress = _Progress("encoding", args.no_progress)
    with torch.inference_mode():
        latents = vae.encode(audio, progress=progress, **chunks).mode()
        progress.close()
        progress = _Progress("decoding", args.no_progress)
        recon = vae.decode(latents, num_samples=audio.shape[-1], progress=progress, **chunks)
    progress.close()
    save_audio(args.output, recon[0].cpu(), vae.sample_rate)
    # Scored as `vae metrics` scores the pair: the written file against the input.
    scores = compare_audio(args.input, args.output, sample_rate=vae.sample_rate)
    print(f"wrote {args.output} ({wave.duration_s:.2f} s, {latents.shape[-1]} latent frames)")
    print(f"STFT distance {scores.stft_distance:.3f}  MEL distance {scores.mel_distance:.3f}  "
          f"SI-SDR {scores.si_sdr:.2f} dB  (the written file against the input at "
          f"{vae.sample_rate} Hz)")
    print(_fidelity_lines(scores))
    return 0


def _tone(level_db: float) -> str:
    return "none" if level_db <= ADDED_TONE_FLOOR_DB else f"{level_db:.1f} dB"


def _share(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f} %"


def _fidelity_lines(scores: ReconstructionScores) -> str:
    """The fidelity checks as two lines (definitions: longplay.evaluation.fidelity)."""
    tone = _tone(scores.added_tone_db)
    if scores.num_items > 1:
        tone = f"{tone} mean, {_tone(scores.worst_added_tone_db)} worst item"
    chroma = "n/a" if scores.chroma_correlation is None else f"{scores.chroma_correlation:.3f}"
    return (f"DC offset {scores.dc_offset:.1e} (reference {scores.reference_dc_offset:.1e})  "
            f"added tone {tone}  chroma correlation {chroma}\n"
            f"pitched frames: reference {_share(scores.pitched_share_reference)}, estimate "
            f"{_share(scores.pitched_share_estimate)}  pitch agreement "
            f"{_share(scores.pitch_agreement)}")


def run_metrics(args: argparse.Namespace) -> int:
    if not MIN_INPUT_SAMPLE_RATE <= args.sample_rate <= MAX_INPUT_SAMPLE_RATE:
        raise ValueError(f"--sample-rate must be in {MIN_INPUT_SAMPLE_RATE}.."
                         f"{MAX_INPUT_SAMPLE_RATE} Hz, got {args.sample_rate}")
    scores = compare_audio(args.reference, args.estimate, sample_rate=args.sample_rate)
    if args.json:
        print(json.dumps(scores.as_dict(), indent=2))
    else:
        print(f"{scores.num_items} item(s): STFT distance {scores.stft_distance:.3f}  "
              f"MEL distance {scores.mel_distance:.3f}  SI-SDR {scores.si_sdr:.2f} dB")
        print(_fidelity_lines(scores))
    return 0

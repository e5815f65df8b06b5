"""``longplay data encode | pack | sample``: prepare training data."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from longplay.assets import model_or_demo
from longplay.audio import MAX_LOAD_DURATION_S
from longplay.autoencoder import DEFAULT_CHUNK_FRAMES
from longplay.checkpoints import CheckpointError, load_vae
from longplay.cli.corpus import add_build_corpus
from longplay.cli.options import SAMPLER_NAMES, add_device_option
from longplay.data import DEFAULT_EXTENSIONS, LatentDataset, encode_folder, write_tar_shards
from longplay.data.shards import DEFAULT_SHARD_SIZE as DEFAULT_TAR_SHARD_SIZE
from longplay.pipelines import TextToMusicPipeline

DEFAULT_LATENT_SHARD_SIZE = 64


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="prepare training data (pre-encoded latents, tar shards)")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    enc = data_sub.add_parser(
        "encode", help="encode an audio folder into VAE latent shards for training",
        description="Encode every audio file under DIR (recursively; metadata from .json/.txt "
                    "sidecars or a metadata.csv/jsonl) with the VAE and write latent shards "
                    "and index.jsonl to LATENTS. Running it again continues where it stopped.")
    enc.add_argument("input", type=Path, metavar="DIR", help="folder of audio files")
    enc.add_argument("-o", "--output", type=Path, required=True, metavar="LATENTS",
                     help="output folder (created if missing)")
    enc.add_argument("--model", type=Path, default=None, metavar="VAE",
                     help="model folder or VAE weight file (as for `longplay vae`), or a "
                          "bundled model's name (default: the bundled demo model)")
    enc.add_argument("--shard-size", type=int, default=DEFAULT_LATENT_SHARD_SIZE,
                     help=f"files per shard (default {DEFAULT_LATENT_SHARD_SIZE})")
    enc.add_argument("--seed", type=int, default=0,
                     help="seed of the posterior samples (default 0)")
    enc.add_argument("--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES,
                     help="latent frames per VAE chunk; 0 encodes whole files at once "
                          f"(default {DEFAULT_CHUNK_FRAMES})")
    enc.add_argument("--min-duration", type=float, default=0.0, metavar="SECONDS",
                     help="skip files shorter than this (default 0)")
    enc.add_argument("--max-duration", type=float, default=MAX_LOAD_DURATION_S,
                     metavar="SECONDS",
                     help="skip files longer than this, with a warning: each file is decoded "
                          f"whole into memory (default {MAX_LOAD_DURATION_S:g}, two hours)")
    add_device_option(enc, progress=True)
    enc.set_defaults(run=run_encode)

    pack = data_sub.add_parser(
        "pack", help="pack an audio folder into WebDataset-style tar shards",
        description="Write the audio files under DIR (unchanged) with their metadata as "
                    "<key>.json into SHARDS/shard-00000.tar, ... for TarShardDataset.")
    pack.add_argument("input", type=Path, metavar="DIR", help="folder of audio files")
    pack.add_argument("-o", "--output", type=Path, required=True, metavar="SHARDS",
                      help="output folder (created if missing; must hold no shards yet)")
    pack.add_argument("--shard-size", type=int, default=DEFAULT_TAR_SHARD_SIZE,
                      help=f"files per shard (default {DEFAULT_TAR_SHARD_SIZE})")
    pack.add_argument("--min-duration", type=float, default=0.0, metavar="SECONDS",
                      help="skip files shorter than this (default 0)")
    pack.set_defaults(run=run_pack)

    samp = data_sub.add_parser(
        "sample", help="write a model's own generations as a latent folder (the data that "
                       "distribution matching's real denoiser is fine-tuned on)",
        description="Generate COUNT windows with the model, each conditioned on the prompt "
                    "and seconds_total of a random training window of LATENTS (seconds_start "
                    "0), and write their latents, with the prompt as each item's caption, as "
                    "a latent folder that `longplay train dit` and `longplay train distill` "
                    "read. Item k uses seed SEED + k. Running it again continues where it "
                    "stopped.")
    samp.add_argument("input", type=Path, metavar="LATENTS",
                      help="latent folder (`longplay data encode`) giving prompts and timing")
    samp.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                      help="output latent folder (created if missing)")
    samp.add_argument("--count", type=int, required=True, help="items the folder holds at "
                                                               "the end")
    samp.add_argument("--model", type=Path, default=None, metavar="MODEL",
                      help="model folder or bundled model's name (default: the demo model)")
    samp.add_argument("--window-frames", type=int, default=None, metavar="FRAMES",
                      help="latent frames of each generated window (default: the model's "
                           "window)")
    samp.add_argument("--seed", type=int, default=0,
                      help="seed of item 0's generation (item k: SEED + k) and of the "
                           "training windows drawn for prompts and timing (default 0)")
    samp.add_argument("--shard-size", type=int, default=16,
                      help="items per shard, the unit a stopped run resumes at (default 16)")
    samp.add_argument("--steps", type=int, default=None,
                      help="sampler steps (default: the model's own)")
    samp.add_argument("--cfg", type=float, default=None,
                      help="guidance scale (default: the model's own)")
    samp.add_argument("--sampler", choices=SAMPLER_NAMES, default=None,
                      help="sampler name (default: the model's own)")
    add_device_option(samp, progress=True)
    samp.set_defaults(run=run_sample)
    add_build_corpus(data_sub)


def printable(text: object) -> str:
    """``text`` as stdout can print it: a file name that is not valid UTF-8 (or not in
    the terminal's encoding) gets replacement characters instead of crashing ``print``."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return str(text).encode(encoding, "replace").decode(encoding)


def _check_output_folder(path: Path) -> None:
    """``-o`` is a folder, or can be created: no file in the way, and the nearest folder
    that exists is writable."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"-o {path}: {existing} is a file, not a folder; choose another "
                         "output folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"-o {path}: {existing} is not writable; choose another output "
                              "folder.")


def _check_common(args: argparse.Namespace) -> None:
    """Everything both commands can check before reading any audio or weights."""
    if not args.input.is_dir():
        raise ValueError(f"{args.input} is not a folder; pass the folder of audio files.")
    if args.shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {args.shard_size}.")
    if args.min_duration < 0:
        raise ValueError(f"--min-duration must be >= 0, got {args.min_duration}.")
    _check_output_folder(args.output)
    if not any(p.suffix.lower() in DEFAULT_EXTENSIONS and p.is_file()
               for p in args.input.rglob("*")):
        raise ValueError(f"{args.input} holds no audio file ({', '.join(DEFAULT_EXTENSIONS)}, "
                         "searched recursively); pass the folder of your audio files.")


@contextmanager
def _progress_bar(desc: str, unit: str, disable: bool) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback drawing a tqdm bar, closed on exit."""
    bar = tqdm(desc=desc, unit=unit, disable=disable)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()


def run_encode(args: argparse.Namespace) -> int:
    _check_common(args)
    if args.chunk_frames < 0:
        raise ValueError(f"--chunk-frames must be >= 0, got {args.chunk_frames}.")
    if not args.max_duration > 0:
        raise ValueError(f"--max-duration must be > 0, got {args.max_duration}.")
    try:
        str(args.output.absolute()).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"-o {printable(args.output)}: the path is not valid UTF-8, and "
                         "safetensors cannot open such paths; choose another output "
                         "folder.") from None
    model = model_or_demo(args.model)
    if not model.exists():
        raise CheckpointError(f"--model {model} does not exist: pass a model folder, a VAE "
                              "weight file, or the name of a bundled model (demo)")
    vae = load_vae(model, device=args.device)
    with _progress_bar("encoding", "file", args.no_progress) as progress:
        summary = encode_folder(vae, args.input, args.output, shard_size=args.shard_size,
                                seed=args.seed, chunk_frames=args.chunk_frames or None,
                                progress=progress, min_duration_s=args.min_duration,
                                max_duration_s=args.max_duration)
    print(printable(summary))
    if summary.num_encoded + summary.num_already_encoded == 0:
        raise ValueError(f"no audio file of {args.input} could be encoded; see the warnings "
                         "above.")
    return 0


def run_pack(args: argparse.Namespace) -> int:
    _check_common(args)
    shards = write_tar_shards(args.input, args.output, args.shard_size,
                              min_duration_s=args.min_duration)
    print(printable(f"wrote {len(shards)} shard(s) to {args.output}: {shards[0].name} .. "
                    f"{shards[-1].name}"))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ValueError(f"--count must be >= 1, got {args.count}.")
    if args.shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {args.shard_size}.")
    if args.window_frames is not None and args.window_frames < 1:
        raise ValueError(f"--window-frames must be >= 1, got {args.window_frames}.")
    if not args.input.is_dir():
        raise ValueError(f"{args.input} is not a folder; pass a latent folder written by "
                         "`longplay data encode`.")
    _check_output_folder(args.output)
    model = model_or_demo(args.model)
    if not model.exists():
        raise CheckpointError(f"--model {model} does not exist: pass a model folder or the "
                              "name of a bundled model (demo)")
    pipe = TextToMusicPipeline.from_pretrained(model, device=args.device)
    frames = args.window_frames or pipe.config.window_frames
    if frames > pipe.config.window_frames:
        raise ValueError(f"--window-frames {frames} exceeds the model's window of "
                         f"{pipe.config.window_frames} frames; lower it.")
    source = LatentDataset(args.input, num_frames=frames, seed=args.seed,
                           latent_rate=pipe.model.vae.latent_rate)
    settings = {k: v for k, v in (("num_inference_steps", args.steps),
                                  ("guidance_scale", args.cfg), ("sampler", args.sampler))
                if v is not None}
    # The training package, imported when this command runs (cli.train.trainer says why).
    from longplay.training.samples import sample_latent_folder

    with _progress_bar("sampling", "item", args.no_progress) as progress:
        writer = sample_latent_folder(pipe, source, args.output, count=args.count,
                                      seed=args.seed, shard_size=args.shard_size,
                                      progress=progress, **settings)
    print(printable(f"{args.output}: {writer.num_items} item(s) of {frames} frames, "
                    f"{writer.num_added} generated by this run"))
    return 0

"""``longplay data encode | pack``: prepare training data."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from longplay.assets import model_or_demo
from longplay.autoencoder import DEFAULT_CHUNK_FRAMES
from longplay.checkpoints import load_vae
from longplay.cli.corpus import add_build_corpus
from longplay.data import encode_folder, write_tar_shards
from longplay.data.shards import DEFAULT_SHARD_SIZE as DEFAULT_TAR_SHARD_SIZE

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
    enc.add_argument("--device", default="cpu", help="torch device (default cpu)")
    enc.add_argument("--no-progress", action="store_true", help="hide the progress bar")
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
    add_build_corpus(data_sub)


def _check_common(args: argparse.Namespace) -> None:
    if not args.input.is_dir():
        raise ValueError(f"{args.input} is not a folder; pass the folder of audio files.")
    if args.shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {args.shard_size}.")
    if args.min_duration < 0:
        raise ValueError(f"--min-duration must be >= 0, got {args.min_duration}.")


def run_encode(args: argparse.Namespace) -> int:
    _check_common(args)
    if args.chunk_frames < 0:
        raise ValueError(f"--chunk-frames must be >= 0, got {args.chunk_frames}.")
    vae = load_vae(model_or_demo(args.model), device=args.device)
    bar = tqdm(desc="encoding", unit="file", disable=args.no_progress)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        summary = encode_folder(vae, args.input, args.output, shard_size=args.shard_size,
                                seed=args.seed, chunk_frames=args.chunk_frames or None,
                                progress=progress, min_duration_s=args.min_duration)
    finally:
        bar.close()
    print(summary)
    if summary.num_encoded + summary.num_already_encoded == 0:
        raise ValueError(f"no audio file of {args.input} could be encoded; see the warnings "
                         "above.")
    return 0


def run_pack(args: argparse.Namespace) -> int:
    _check_common(args)
    shards = write_tar_shards(args.input, args.output, args.shard_size,
                              min_duration_s=args.min_duration)
    print(f"wrote {len(shards)} shard(s) to {args.output}: {shards[0].name} .. "
          f"{shards[-1].name}")
    return 0

"""Command-line options shared by several commands: the device (every command that runs
a model), progress bars, and the speed options of those that generate (generate, serve,
ui)."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from longplay.assets import draft_for
from longplay.checkpoints import read_diffusion_config
from longplay.diffusion import OBJECTIVES
from longplay.errors import SettingsError
from longplay.pipelines import PRECISIONS, TextToMusicPipeline, resolve_device
from longplay.pipelines.drafts import (
    DRAFT_REFINEMENT,
    DraftedPipeline,
    check_draft_config,
    refinement_settings,
)

SAMPLER_NAMES = tuple(sorted({name for objective in OBJECTIVES.values()
                              for name in objective.accepted_sampler_names}))
"""Every sampler name some model accepts; the pipeline says which fit the model."""


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    """``--precision`` and ``--compile``, passed to ``TextToMusicPipeline.from_pretrained``."""
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="auto (default): bf16 where the device runs it fast (CPUs with AVX512-BF16 or "
             "AMX, CUDA GPUs with bf16), else fp32. bf16 runs the diffusion transformer in "
             "bfloat16, and on a CPU the VAE's convolutions too (about 2x faster; the "
             "sampler, the text encoder and the activations stay fp32); fp32 turns it off "
             "and reproduces the reference implementations' arithmetic")
    parser.add_argument(
        "--compile", action="store_true",
        help="run what gains from torch.compile on this device through it (on a CPU the "
             "VAE decoder: 1.6x faster decodes in bf16, 1.1x in fp32, after a one-off "
             "compilation of 30-40 s that torch caches on disk); off with a warning where "
             "no compiler is installed")


def device_name(text: str) -> str:
    """An argparse type for ``--device``: a device this machine has (checked before any
    weights load)."""
    try:
        resolve_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_device_option(parser: argparse.ArgumentParser, *, progress: bool = False) -> None:
    """``--device`` (checked by :func:`device_name`), and with ``progress`` also
    ``--no-progress``."""
    parser.add_argument("--device", default="cpu", type=device_name,
                        help="where the model runs: cpu (default), cuda, cuda:N or mps")
    if progress:
        add_progress_option(parser)


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars, e.g. for logs."""
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (for logs)")


def add_draft_option(parser: argparse.ArgumentParser) -> None:
    """``--draft MODEL|none`` of the commands that serve a model (serve, ui)."""
    parser.add_argument(
        "--draft", default=None, metavar="MODEL",
        help="a few-step model that shares the model's VAE (a folder, or a bundled name) "
             "drafts plain text-to-music requests of one window, which the model refines in "
             f"{DRAFT_REFINEMENT.num_inference_steps} steps by default; edits, loops, "
             "sections and longer pieces run the model's own sampler (default: demo-fast "
             "for the bundled demo model, none for others; 'none': no draft)")


def pipeline_factory(args: argparse.Namespace):
    """A zero-argument factory of the pipeline that ``args`` describe (``model``,
    ``draft``, ``text_encoder``, ``device``, ``precision``, ``compile``): drafted where
    :func:`longplay.assets.draft_for` gives a draft model, whose config is checked here,
    before any weights load."""
    load = dict(text_encoder_path=args.text_encoder, device=args.device,
                precision=args.precision, compile=args.compile)
    draft = draft_for(args.model, args.draft)
    if draft is None:
        return functools.partial(TextToMusicPipeline.from_pretrained, args.model, **load)
    config = read_diffusion_config(args.model)
    try:
        check_draft_config(config, read_diffusion_config(draft))
        refinement_settings(config, None, None, None)
    except SettingsError as err:
        raise SettingsError("draft", f"--draft {draft}: {err}") from None
    return functools.partial(DraftedPipeline.from_pretrained, args.model, Path(draft), **load)

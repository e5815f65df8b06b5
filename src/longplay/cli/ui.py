"""``longplay ui``: the web studio."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from longplay.assets import model_or_demo
from longplay.cli.options import (
    add_device_option,
    add_draft_option,
    add_speed_options,
    pipeline_factory,
)

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(sub: argparse._SubParsersAction) -> None:
    ui = sub.add_parser("ui", help="the web studio in your browser")
    ui.add_argument("--model", type=Path, metavar="PATH",
                    help="model folder (default: the bundled demo model)")
    ui.add_argument("--text-encoder", type=Path, metavar="PATH",
                    help="local folder of the model's text encoder (default: inside the "
                         "model folder)")
    ui.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    add_device_option(ui)
    ui.add_argument("--no-normalize", action="store_true",
                    help="offer the model's raw output; by default the files are DC-blocked "
                         "and peak-normalised to -1 dBFS, as `longplay generate` writes them")
    add_speed_options(ui)
    add_draft_option(ui)
    ui.add_argument("--lora-dir", type=Path, default=None, metavar="DIR",
                    help="a folder of LoRA adapter folders to choose from on the page")
    ui.set_defaults(run=run_ui)


def run_ui(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError("the web studio needs Gradio: pip install 'longplay[ui]'") from None
    from longplay.ui.studio import Studio

    args.model = model_or_demo(args.model)
    if args.host not in LOOPBACK:
        logger.warning("listening on %s: anyone who can reach this address can use the "
                       "studio", args.host)
    factory = pipeline_factory(args)  # checked before the weights load
    studio = Studio(factory(), args.model.name, adapters_dir=args.lora_dir,
                    normalize=not args.no_normalize)
    studio.launch(args.host, args.port)
    return 0

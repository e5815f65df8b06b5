"""``longplay serve``: the HTTP API (see :mod:`longplay.server`)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from pathlib import Path

from longplay.assets import model_or_demo
from longplay.cli.options import (
    add_device_option,
    add_draft_option,
    add_speed_options,
    pipeline_factory,
)
from longplay.server.settings import PUBLIC_PATHS, ServerSettings

logger = logging.getLogger(__name__)

MISSING_DEPENDENCIES = ("longplay serve needs FastAPI and uvicorn, which are not installed: "
                        "pip install 'longplay[server]'")
API_KEY_ENV = "LONGPLAY_API_KEY"
_DEFAULTS = ServerSettings()


def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve", help="serve the HTTP API (queued generations, JSON + audio files)",
        description="Serve text-to-music generation over HTTP: POST /v1/generations queues a "
                    "job, GET /v1/generations/{id} reports it, .../audio returns the file. "
                    "The schema is at /openapi.json, an interactive page at /docs (and "
                    "/redoc); both work offline.")
    serve.add_argument("--model", type=Path, metavar="PATH",
                       help="model folder (default: the bundled demo model)")
    serve.add_argument("--text-encoder", type=Path, metavar="PATH",
                       help="local folder of the model's text encoder (default: inside the "
                            "model folder)")
    add_device_option(serve)
    add_speed_options(serve)
    add_draft_option(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), metavar="KEY",
                       help="require 'Authorization: Bearer KEY' or 'X-API-Key: KEY' on every "
                            f"endpoint but {', '.join(PUBLIC_PATHS)} (these describe the API "
                            "and hold no generations; on /docs, Authorize takes the key) "
                            f"(default: ${API_KEY_ENV}; the variable keeps the key out of the "
                            "process list)")
    serve.add_argument("--queue-size", type=int, default=_DEFAULTS.queue_size, metavar="N",
                       help="jobs that may wait; more get 429 (default %(default)s)")
    serve.add_argument("--workers", type=int, default=_DEFAULTS.workers, metavar="N",
                       help="generation workers, each with its own copy of the model "
                            "(default %(default)s)")
    serve.add_argument("--max-duration", type=float, default=None, metavar="S",
                       help="longest piece accepted (default: the model's window; longer "
                            "pieces and extensions are sampled window by window)")
    serve.add_argument("--max-steps", type=int, default=_DEFAULTS.max_steps, metavar="N",
                       help="most sampler steps accepted (default %(default)s)")
    serve.add_argument("--max-outputs", type=int, default=_DEFAULTS.max_outputs, metavar="N",
                       help="most outputs per request (default %(default)s)")
    serve.add_argument("--keep-finished", type=int, default=_DEFAULTS.max_finished_jobs,
                       metavar="N",
                       help="finished jobs (with their audio) kept in memory; the oldest is "
                            "forgotten first (default %(default)s)")
    serve.add_argument("--lora-dir", type=Path, default=None, metavar="DIR",
                       help="a folder of LoRA adapter folders that requests may apply by name "
                            "(GET /v1/adapters)")
    serve.set_defaults(run=run_serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args: argparse.Namespace) -> int:
    args.model = model_or_demo(args.model)
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    try:
        import uvicorn

        from longplay.server import create_app
    except ImportError as error:
        raise ValueError(f"{MISSING_DEPENDENCIES} ({error})") from None

    settings = ServerSettings(
        model_name=args.model.resolve().name, api_key=args.api_key,
        queue_size=args.queue_size, workers=args.workers, max_duration_s=args.max_duration,
        max_steps=args.max_steps, max_outputs=args.max_outputs,
        max_finished_jobs=args.keep_finished, adapters_dir=args.lora_dir)
    if not is_loopback(args.host) and settings.api_key is None:
        logger.warning("listening on %s without --api-key: anyone who can reach this address "
                       "can run generations", args.host)
    app = create_app(pipeline_factory(args), settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0

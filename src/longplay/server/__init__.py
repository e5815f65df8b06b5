"""The HTTP API (``longplay serve``): a job queue over text-to-music pipelines.

The names below are imported on first use, so that ``longplay.server.settings`` (which
the command line reads for its defaults) loads without FastAPI; everything else needs the
server dependencies (FastAPI, uvicorn). Start at :func:`create_app`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from longplay.server.app import ServerState, create_app
    from longplay.server.jobs import (
        GenerationPipeline,
        GenerationQueue,
        JobProgress,
        JobView,
        PipelineFactory,
        QueueClosedError,
        QueueFullError,
    )
    from longplay.server.schemas import GenerationRequest, GenerationStatus, Health
    from longplay.server.settings import ServerSettings

_HOMES = {
    "ServerState": "app", "create_app": "app",
    "GenerationPipeline": "jobs", "GenerationQueue": "jobs", "JobProgress": "jobs",
    "JobView": "jobs", "PipelineFactory": "jobs",
    "QueueClosedError": "jobs", "QueueFullError": "jobs",
    "GenerationRequest": "schemas", "GenerationStatus": "schemas", "Health": "schemas",
    "ServerSettings": "settings",
}

__all__ = [
    "GenerationPipeline",
    "GenerationQueue",
    "GenerationRequest",
    "GenerationStatus",
    "Health",
    "JobProgress",
    "JobView",
    "PipelineFactory",
    "QueueClosedError",
    "QueueFullError",
    "ServerSettings",
    "ServerState",
    "create_app",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"longplay.server.{_HOMES[name]}"), name)

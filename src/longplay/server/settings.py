"""The server's configuration: one frozen object, checked when it is made."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024

PUBLIC_PATHS = ("/v1/health", "/openapi.json", "/docs", "/redoc")
"""What needs no API key, with everything under it (``/docs/assets/...``): the health
check and the API's description (its schema and the pages that show it, served from
the package: they work offline). They hold no generations, and a browser, which cannot
send a header with a page load, can read the docs and then give the key with the page's
Authorize button for the calls it tries."""


@dataclass(frozen=True)
class ServerSettings:
    """Limits and behaviour of the HTTP API (host and port belong to the runner, not here).

    Attributes:
        model_name: shown by ``/v1/health``.
        api_key: when set, every endpoint except those of :data:`PUBLIC_PATHS` (the health
            check, ``/openapi.json``, ``/docs`` and ``/redoc``) needs
            ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.
        queue_size: jobs that may wait (not counting running ones); one more is a 429.
        workers: generation workers; each owns one pipeline and runs one job at a time.
        max_duration_s: longest piece accepted (``duration_s``, or an extension's audio plus
            ``extend_s``); None = the model's window. Beyond the window a piece is sampled
            window by window (at most an hour). The default duration is the smaller of this
            and the window.
        max_steps: most ``num_inference_steps`` accepted.
        max_outputs: most ``num_outputs`` accepted.
        max_prompt_chars: longest prompt / negative prompt accepted, in characters.
        max_body_bytes: largest request body; larger ones get 413 before they are read.
        max_finished_jobs: finished (succeeded or failed) jobs kept in memory, with their
            audio; when one more finishes, the oldest finished job is forgotten (its id then
            answers 404). Queued and running jobs are never evicted. Each kept output holds
            its float32 audio: 16.8 MB for a 47.55 s stereo window at 44.1 kHz, so 32 jobs
            of one output take about 540 MB.
        retry_after_s: the ``Retry-After`` a 429 carries (a fixed hint, not an estimate).
        adapters_dir: a folder of LoRA adapter folders (``longplay train lora`` exports, or
            peft's) that requests may apply by folder name (``adapters``); None = none.
            Each is read once, on first use, and checked against the model.
    """

    model_name: str = "model"
    api_key: str | None = field(default=None, repr=False)
    queue_size: int = 16
    workers: int = 1
    max_duration_s: float | None = None
    max_steps: int = 250
    max_outputs: int = 4
    max_prompt_chars: int = 1000
    max_body_bytes: int = 16 * MIB
    max_finished_jobs: int = 32
    retry_after_s: int = 10
    adapters_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty; leave it unset to disable the check")
        for name in ("queue_size", "workers", "max_steps", "max_outputs", "max_prompt_chars",
                     "max_body_bytes", "max_finished_jobs", "retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.adapters_dir is not None and not Path(self.adapters_dir).is_dir():
            raise ValueError(f"adapters_dir {self.adapters_dir} is not a folder")
        if self.max_duration_s is not None and not self.max_duration_s > 0:
            raise ValueError(f"max_duration_s must be > 0, got {self.max_duration_s!r}")

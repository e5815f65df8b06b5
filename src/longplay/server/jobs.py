"""A bounded queue of generation jobs and the worker threads that run them.

Threads, not asyncio tasks: a generation is seconds to minutes of torch work, so each
worker is a thread that owns one pipeline and runs one job at a time; the event loop
only ever touches the queue under its lock. One ``threading.Condition`` guards every
job's state, the waiting line and the finished-job history, so a status read is a
consistent snapshot (:class:`JobView`).

Memory: finished jobs keep their audio until ``max_finished_jobs`` newer jobs have
finished; then the oldest finished job is forgotten. Queued and running jobs are never
evicted (there are at most ``capacity + workers`` of them).

Shape legend: B outputs, C audio channels, S samples.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from longplay.config import DiffusionModelConfig
from longplay.diffusion import Objective, SamplingDefaults
from longplay.pipelines import GenerationError, GenerationSettings, TextToMusicOutput

logger = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "succeeded", "failed"]

# Share of the progress fraction given to sampling; decoding fills the rest. An estimate:
# decoding one window costs about as much as a few sampler steps.
SAMPLING_SHARE = 0.9


@runtime_checkable
class GenerationPipeline(Protocol):
    """What the server uses of a :class:`~longplay.pipelines.TextToMusicPipeline`."""

    config: DiffusionModelConfig
    defaults: SamplingDefaults
    objective: Objective

    @property
    def sample_rate(self) -> int: ...

    @property
    def max_duration_s(self) -> float: ...

    def resolve_settings(self, prompt: str | None = None, negative_prompt: str | None = None,
                         **kwargs: Any) -> GenerationSettings: ...

    def __call__(self, prompt: GenerationSettings, negative_prompt: str | None = None,
                 **kwargs: Any) -> TextToMusicOutput: ...


PipelineFactory = Callable[[], GenerationPipeline]
"""Makes one pipeline; called once per worker, so each worker owns its own model."""


class QueueFullError(RuntimeError):
    """The waiting line is at capacity; the client should retry later."""


class QueueClosedError(RuntimeError):
    """The server is shutting down and takes no new jobs."""


class _ShutdownError(Exception):
    """Raised from the progress callback to abort a running job at shutdown."""


@dataclass(frozen=True)
class JobProgress:
    """``fraction`` in [0, 1] over the whole job; ``stage`` is the pipeline's stage
    ("sampling", "decoding") with ``done`` of ``total`` units, None before it starts."""

    fraction: float = 0.0
    stage: str | None = None
    done: int = 0
    total: int = 0


@dataclass(frozen=True, eq=False)
class JobView:
    """A consistent snapshot of one job."""

    id: str
    status: JobStatus
    settings: GenerationSettings
    progress: JobProgress
    queue_position: int | None  # 1 = next to run; None unless queued
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    sample_rate: int
    audio: torch.Tensor | None  # [B, C, S] once succeeded
    joins_s: tuple[float, ...] = ()  # where generated audio meets kept audio, once succeeded
    adapters: tuple[tuple[str, float], ...] = ()  # (name, scale) of the adapters applied


@dataclass(eq=False)
class _Job:
    """A job's mutable state; only touched under the queue's lock."""

    id: str
    settings: GenerationSettings
    inputs: dict[str, torch.Tensor]  # the pipeline's tensor arguments (init_audio,
    # inpaint_audio: [C, S] at the model's sample rate); dropped once run
    created_at: datetime
    status: JobStatus = "queued"
    progress: JobProgress = JobProgress()
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    audio: torch.Tensor | None = None  # [B, C, S]
    joins_s: tuple[float, ...] = ()
    adapters: tuple[tuple[str, Any, float], ...] = ()  # (name, loaded adapter, scale)


@dataclass(frozen=True)
class QueueStats:
    length: int  # jobs waiting
    capacity: int
    running: int
    workers: int


def _now() -> datetime:
    return datetime.now(timezone.utc)


def failure_reason(error: Exception) -> str:
    """The message a failed job shows: the pipeline's own words for the errors that are the
    request's (bad settings, NaN or silent output), the exception type for anything else."""
    if isinstance(error, ValueError | GenerationError):
        return str(error)
    return f"internal error ({type(error).__name__}): {error}"


class GenerationQueue:
    """A waiting line of at most ``capacity`` jobs, served by one worker thread per pipeline.

    Call :meth:`start` once and :meth:`stop` at shutdown. ``submit`` never blocks: a full
    line raises :class:`QueueFullError`.
    """

    def __init__(self, pipelines: Sequence[GenerationPipeline], capacity: int,
                 max_finished_jobs: int) -> None:
        if not pipelines:
            raise ValueError("need at least one pipeline (one per worker)")
        self._pipelines = tuple(pipelines)
        self.capacity = capacity
        self.max_finished_jobs = max_finished_jobs
        self.sample_rate = self._pipelines[0].sample_rate
        self._cond = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._pending: deque[_Job] = deque()
        self._finished: deque[str] = deque()
        self._running = 0
        self._closed = False
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def workers(self) -> int:
        return len(self._pipelines)

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` has begun (running jobs abort at their next progress report)."""
        return self._stopping.is_set()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the queue's workers are already started")
        for i, pipeline in enumerate(self._pipelines):
            thread = threading.Thread(target=self._work, args=(pipeline,),
                                      name=f"longplay-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float | None = 30.0) -> None:
        """Refuse new jobs, fail the waiting ones, abort running ones at their next progress
        report, and wait up to ``timeout_s`` for the workers to end."""
        with self._cond:
            self._closed = True
            now = _now()
            for job in self._pending:
                self._finish(job, now, error="the server shut down before this job ran")
            self._pending.clear()
            self._cond.notify_all()
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout_s)
            if thread.is_alive():
                logger.warning("%s did not stop within %s s", thread.name, timeout_s)

    # -- the API's side -------------------------------------------------------------------

    def submit(self, settings: GenerationSettings,
               inputs: Mapping[str, torch.Tensor] | None = None,
               adapters: Sequence[tuple[str, Any, float]] = ()) -> JobView:
        """Queue a job with its resolved settings (``pipeline.resolve_settings``), the
        tensors they were resolved with (``init_audio``, ``inpaint_audio``) and the
        adapters to apply ((name, loaded adapter, scale)); returns its snapshot as
        queued."""
        with self._cond:
            if self._closed:
                raise QueueClosedError("the server is shutting down")
            if len(self._pending) >= self.capacity:
                raise QueueFullError(f"the queue is full ({self.capacity} jobs waiting)")
            job = _Job(id=uuid.uuid4().hex, settings=settings, inputs=dict(inputs or {}),
                       created_at=_now(), adapters=tuple(adapters))
            self._jobs[job.id] = job
            self._pending.append(job)
            view = self._view(job)
            self._cond.notify()
        return view

    def get(self, job_id: str) -> JobView | None:
        with self._cond:
            job = self._jobs.get(job_id)
            return None if job is None else self._view(job)

    def stats(self) -> QueueStats:
        with self._cond:
            return QueueStats(length=len(self._pending), capacity=self.capacity,
                              running=self._running, workers=self.workers)

    # -- the workers' side ----------------------------------------------------------------

    def _work(self, pipeline: GenerationPipeline) -> None:
        while (job := self._next_job()) is not None:
            self._run(pipeline, job)

    def _next_job(self) -> _Job | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            job = self._pending.popleft()
            job.status, job.started_at = "running", _now()
            self._running += 1
            return job

    def _run(self, pipeline: GenerationPipeline, job: _Job) -> None:
        def on_progress(stage: str, done: int, total: int) -> None:
            if self._stopping.is_set():
                raise _ShutdownError
            self._report(job, stage, done, total)

        # Adapters are applied for this call only: the worker's model is the base again
        # for the next job.
        extra = {"adapters": [(a, w) for _, a, w in job.adapters]} if job.adapters else {}
        try:
            out = pipeline(job.settings, progress=on_progress, **extra, **job.inputs)
        except _ShutdownError:
            self._end(job, error="the server shut down while this job ran")
        except Exception as error:
            if isinstance(error, ValueError | GenerationError):
                logger.info("job %s failed: %s", job.id, error)
            else:
                logger.exception("job %s failed", job.id)
            self._end(job, error=failure_reason(error))
        else:
            self._end(job, audio=out.audio, settings=out.settings, joins_s=out.joins_s)
            logger.info("job %s succeeded", job.id)

    def _report(self, job: _Job, stage: str, done: int, total: int) -> None:
        share = done / total if total > 0 else 0.0
        with self._cond:
            fraction = job.progress.fraction
            if stage == "sampling":
                fraction = SAMPLING_SHARE * share
            elif stage == "decoding":
                fraction = SAMPLING_SHARE + (1 - SAMPLING_SHARE) * share
            job.progress = JobProgress(min(max(fraction, 0.0), 1.0), stage, done, total)

    def _end(self, job: _Job, *, error: str | None = None, audio: torch.Tensor | None = None,
             settings: GenerationSettings | None = None, joins_s: tuple[float, ...] = ()
             ) -> None:
        with self._cond:
            self._running -= 1
            if settings is not None:
                job.settings = settings
            job.joins_s = joins_s
            self._finish(job, _now(), error=error, audio=audio)

    def _finish(self, job: _Job, now: datetime, *, error: str | None = None,
                audio: torch.Tensor | None = None) -> None:
        """Mark ``job`` done (under the lock) and forget the oldest finished jobs."""
        job.status = "failed" if error is not None else "succeeded"
        job.error, job.audio, job.finished_at, job.inputs = error, audio, now, {}
        if error is None:
            job.progress = replace(job.progress, fraction=1.0)
        self._finished.append(job.id)
        while len(self._finished) > self.max_finished_jobs:
            self._jobs.pop(self._finished.popleft(), None)

    def _view(self, job: _Job) -> JobView:
        position = None
        if job.status == "queued":
            position = next(i for i, j in enumerate(self._pending, 1) if j is job)
        return JobView(id=job.id, status=job.status, settings=job.settings,
                       progress=job.progress, queue_position=position, error=job.error,
                       created_at=job.created_at, started_at=job.started_at,
                       finished_at=job.finished_at, sample_rate=self.sample_rate,
                       audio=job.audio, joins_s=job.joins_s,
                       adapters=tuple((n, w) for n, _, w in job.adapters))


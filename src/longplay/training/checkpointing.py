"""The checkpoint files of a training run: how they are written, read and chosen.

A run keeps ``checkpoints/last.ckpt`` (the latest state) and ``checkpoints/step=N.ckpt``
(every ``trainer.checkpoint_every_n_steps``). Every save writes a temporary file in the
checkpoint folder itself and renames it over the final name
(:class:`AtomicCheckpointIO`), so that a save killed half-way, or a ``$TMPDIR`` on
another filesystem than the run folder, never leaves a partial ``last.ckpt`` or destroys
the previous one.

Checkpoints are read only with ``torch.load(weights_only=True)``
(:func:`longplay.checkpoints.files.load_torch_file`). A ``last.ckpt`` that can't be read
that way, damaged or holding pickled code, is never loaded: ``--resume`` falls back to
the newest intact ``step=N.ckpt`` with a warning naming both, and ``export`` names that
file in its error.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from longplay.atomic import atomic_output_path
from longplay.checkpoints.files import load_torch_file
from longplay.errors import CheckpointError

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
STEP_PATTERN = re.compile(r"step=(\d+)\.ckpt")
"""The periodic checkpoints' names (ModelCheckpoint's ``filename="step={step}"``)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, with the temporary file next to the checkpoint.

    Lightning's own writer lets fsspec put its temporary file in ``$TMPDIR``; when that
    is another filesystem than the run folder (a node's local disk and a shared run
    folder), the final rename fails and the file is copied over the old checkpoint in
    place, so a kill during the copy leaves a truncated ``last.ckpt``. Here the file is
    written as ``.last.ckpt.tmp-...`` in the checkpoint folder and renamed into place
    (:func:`longplay.atomic.atomic_output_path`). Every strategy saves through it
    (``ModelParallelStrategy`` too, with ``save_distributed_checkpoint=False``).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output_path(path) as tmp:
            torch.save(checkpoint, tmp)


class RunCheckpoints(ModelCheckpoint):
    """``step=N.ckpt`` every ``every_n_train_steps`` and ``last.ckpt`` with each, and
    ``last.ckpt`` at the end of training too: Lightning writes that final one only when
    no ``last.ckpt`` was written during the run, so a run whose ``max_steps`` is not a
    multiple of the interval would otherwise end with ``last.ckpt`` steps behind."""

    def __init__(self, run_dir: Path, every_n_steps: int) -> None:
        super().__init__(dirpath=str(Path(run_dir) / CHECKPOINT_DIR), filename="step={step}",
                         auto_insert_metric_name=False, every_n_train_steps=every_n_steps,
                         save_top_k=-1, save_last=True,
                         # Always last.ckpt, also when a resumed run changes the interval
                         # (no last-v1.ckpt).
                         enable_version_counter=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _generate_state_key(self, **kwargs: Any) -> str:
        # ModelCheckpoint's own key, under which runs saved before this class hold its state.
        return f"ModelCheckpoint{kwargs!r}"


def last_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / CHECKPOINT_DIR / LAST
    return path if path.exists() else None


def step_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """The run's ``step=N.ckpt`` files as (N, path), newest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = []
    for path in folder.glob("step=*.ckpt") if folder.is_dir() else ():
        match = STEP_PATTERN.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def holds_checkpoints(run_dir: Path) -> bool:
    return last_checkpoint(run_dir) is not None or bool(step_checkpoints(run_dir))


def newest_intact_step(run_dir: Path) -> tuple[Path, dict] | None:
    """The newest ``step=N.ckpt`` of the run that loads safely, and its contents (tensors
    memory-mapped); None when there is none."""
    for _, path in step_checkpoints(run_dir):
        try:
            return path, load_torch_file(path, mmap=True)
        except CheckpointError as err:
            logger.debug("not intact: %s", err)
    return None


def _offer_intact_step(err: CheckpointError, run_dir: Path) -> CheckpointError:
    """``err`` with the newest intact step checkpoint offered for export instead."""
    intact = newest_intact_step(run_dir)
    if intact is None:
        return CheckpointError(f"{err}; the run holds no intact step=N.ckpt either")
    path, ckpt = intact
    return CheckpointError(f"{err}; the newest intact checkpoint of the run is {path} (step "
                           f"{ckpt.get('global_step')}): export it with `longplay export "
                           f"'{path}' -o MODEL_DIR`")


def read_run_checkpoint(run: str | Path) -> tuple[Path, dict]:
    """The checkpoint of a run folder (its last.ckpt) or a .ckpt path, loaded safely.

    Raises:
        CheckpointError: there is none, it is not a longplay training checkpoint, or it is
            damaged or unsafe (the message then names the newest intact ``step=N.ckpt``).
    """
    run = Path(run)
    path = run if run.is_file() else last_checkpoint(run)
    if path is None:
        raise CheckpointError(f"{run} holds no checkpoint (expected {CHECKPOINT_DIR}/{LAST})")
    try:
        ckpt = load_torch_file(path)
    except CheckpointError as err:
        if path.parent.name != CHECKPOINT_DIR:
            raise
        raise _offer_intact_step(err, path.parent.parent) from None
    if not isinstance(ckpt, dict) or "longplay" not in ckpt:
        raise CheckpointError(f"{path} is not a longplay training checkpoint")
    return path, ckpt


def resume_checkpoint(run_dir: Path) -> tuple[Path, int]:
    """The checkpoint ``--resume`` continues from, and its global step: ``last.ckpt``, or
    when that is missing, damaged or unsafe, the newest intact ``step=N.ckpt`` (with a
    warning naming both).

    Raises:
        FileNotFoundError: the run holds no checkpoint.
        CheckpointError: no checkpoint of the run can be read safely.
    """
    last = last_checkpoint(run_dir)
    problem = f"there is no {CHECKPOINT_DIR}/{LAST}"
    if last is not None:
        try:
            return last, _global_step(last, load_torch_file(last, mmap=True))
        except CheckpointError as err:
            problem = str(err)
    elif not step_checkpoints(run_dir):
        raise FileNotFoundError(f"--resume: no {CHECKPOINT_DIR}/{LAST} in {run_dir}: nothing to "
                                "resume (start the run without --resume)")
    intact = newest_intact_step(run_dir)
    if intact is None:
        raise CheckpointError(f"--resume: {problem}, and no step=N.ckpt of {run_dir} is intact; "
                              "the run can't be resumed (start it again in a new folder)")
    path, ckpt = intact
    step = _global_step(path, ckpt)
    logger.warning("%s; resuming from %s (step %d) instead: the steps after it are trained "
                   "again", problem, path, step)
    return path, step


def _global_step(path: Path, ckpt: Any) -> int:
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("global_step"), int):
        raise CheckpointError(f"{path} is not a training checkpoint (it has no global_step)")
    return ckpt["global_step"]


RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
"""Where launchers put a process's rank (Lightning's DDP launcher, torchrun, SLURM)."""


def is_first_process() -> bool:
    """False in the processes of ranks > 0: they see the run folder after rank 0 may
    already have written to it, and leave the messages about the whole run to rank 0."""
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in RANK_VARIABLES)

"""A run's checkpoint files: saves are atomic in the run folder (also when $TMPDIR is on
another filesystem), a damaged or unsafe last.ckpt is never loaded (resume falls back to
the newest intact step=N.ckpt, export names it), a finished run is not resumed, and the
console of a run shows what concerns the user once."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from longplay.cli.main import main
from longplay.config import ConfigError
from longplay.errors import CheckpointError
from longplay.training import checkpointing, runner
from longplay.training.export import read_run_checkpoint
from test_training_dit import TEXT_ENCODER, ToyLatents, collate, config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def toy_data(monkeypatch) -> None:
    monkeypatch.setattr(runner, "build_dataset", lambda config, model_config: (ToyLatents(),
                                                                               collate))


def train(steps: int, run: Path, resume: bool = False) -> Path:
    return runner.train_dit(config(steps), run, resume=resume, enable_progress_bar=False)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A DiT run of 4 steps with checkpoints at steps 3 and 4 (last)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "build_dataset", lambda c, m: (ToyLatents(), collate))
        train(4, run)
    return run


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def step_of(path: Path) -> int:
    return torch.load(path, weights_only=True)["global_step"]


# -- atomic saves ---------------------------------------------------------------------------

@pytest.fixture
def other_filesystem(tmp_path: Path, monkeypatch):
    """$TMPDIR in a folder that is "another filesystem": a rename from one folder to
    another fails with EXDEV, as between a node's local disk and a shared run folder.
    Returns the list of renames that happened, as (source, destination)."""
    tmpdir = tmp_path / "local-tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read $TMPDIR
    renames: list[tuple[Path, Path]] = []

    def guarded(real):
        def rename(src, dst, *args, **kwargs):
            src, dst = Path(src), Path(dst)
            if src.parent.resolve() != dst.parent.resolve():
                raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
            renames.append((src, dst))
            return real(src, dst, *args, **kwargs)
        return rename

    monkeypatch.setattr(os, "rename", guarded(os.rename))
    monkeypatch.setattr(os, "replace", guarded(os.replace))
    return renames


def test_checkpoints_are_written_next_to_their_final_name(tmp_path: Path,
                                                          other_filesystem) -> None:
    run = tmp_path / "run"
    train(3, run)
    folder = run / "checkpoints"
    moved = {dst.name: src for src, dst in other_filesystem if dst.parent == folder}
    assert set(moved) == {"last.ckpt", "step=3.ckpt"}
    for name, src in moved.items():  # a hidden temporary file in the checkpoint folder
        assert src.parent == folder and src.name.startswith(f".{name}.tmp-"), src
    assert step_of(folder / "last.ckpt") == 3
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step=3.ckpt"]
    assert not any((tmp_path / "local-tmp").iterdir())


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_every_strategy_saves_through_the_atomic_writer(tmp_path: Path, other_filesystem,
                                                        strategy: str) -> None:
    """DDP, and FSDP's full-state save (ModelParallelStrategy gathers one file)."""
    trainer_config = replace(config(1).trainer, strategy=strategy, devices=2,
                             accelerator="cpu")
    trainer = runner.make_trainer(replace(config(1), trainer=trainer_config), tmp_path / "run")
    assert isinstance(trainer.strategy.checkpoint_io, checkpointing.AtomicCheckpointIO)
    target = tmp_path / "run" / "checkpoints" / "last.ckpt"
    trainer.strategy.save_checkpoint({"global_step": 7}, target)
    assert [(src.parent, dst) for src, dst in other_filesystem] == [(target.parent, target)]
    assert step_of(target) == 7


def test_a_save_that_dies_half_way_leaves_the_previous_last_ckpt(run_copy: Path,
                                                                   other_filesystem,
                                                                   monkeypatch) -> None:
    """The disk fills up (or the process is killed) in the middle of writing the next
    last.ckpt: the previous one is still whole."""
    real_save, real_copy = torch.save, shutil.copyfile

    def cut_short(target) -> None:
        data = Path(target).read_bytes()
        Path(target).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    def save_half(obj, target, *args, **kwargs):
        real_save(obj, target, *args, **kwargs)
        if isinstance(target, (str, os.PathLike)) and "last.ckpt" in str(target):
            cut_short(target)

    def copy_half(src, dst, *args, **kwargs):  # the copy over the old file, cut short
        real_copy(src, dst, *args, **kwargs)
        if "last.ckpt" in str(dst):
            cut_short(dst)

    monkeypatch.setattr(torch, "save", save_half)
    monkeypatch.setattr(shutil, "copyfile", copy_half)
    with pytest.raises(OSError, match="No space left"):
        train(6, run_copy, resume=True)
    folder = run_copy / "checkpoints"
    assert step_of(folder / "step=6.ckpt") == 6
    assert step_of(folder / "last.ckpt") == 4
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left


# -- damaged and unsafe checkpoints ---------------------------------------------------------

def create_marker(marker: str) -> None:
    Path(marker).touch()


class Payload:
    """A pickled object whose unpickling would run code (it would create ``marker``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (create_marker, (str(self.marker),))


def damage(path: Path, how: str) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a pickle that would run code, saved over it
        torch.save({"global_step": 99, "payload": Payload(path.with_name("ran"))}, path)


DAMAGE = {"truncated": "damaged", "empty": r"damaged: it is empty \(0 bytes\)",
          "unsafe": r"unsafe: .*create_marker"}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_export_of_a_damaged_last_ckpt_names_it_and_the_intact_step(run_copy: Path,
                                                                    tmp_path: Path, capsys,
                                                                    how: str) -> None:
    last = run_copy / "checkpoints" / "last.ckpt"
    damage(last, how)
    with pytest.raises(CheckpointError, match=DAMAGE[how]) as err:
        read_run_checkpoint(run_copy)
    message = str(err.value)
    assert str(last) in message and "step=3.ckpt" in message and "longplay export" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert not (run_copy / "checkpoints" / "ran").exists()  # the payload never ran
    out = tmp_path / "model"
    assert main(["export", str(run_copy), "-o", str(out)]) == 2
    captured = capsys.readouterr().err
    assert "Traceback" not in captured and "step=3.ckpt" in captured
    assert not out.exists()
    # The checkpoint it names exports.
    assert main(["export", str(run_copy / "checkpoints" / "step=3.ckpt"), "-o", str(out)]) == 0


@pytest.mark.parametrize("how", list(DAMAGE))
def test_resume_from_a_damaged_last_ckpt_falls_back_to_the_newest_intact_step(
        run_copy: Path, caplog, how: str) -> None:
    damage(run_copy / "checkpoints" / "last.ckpt", how)
    with caplog.at_level(logging.WARNING, logger="longplay"):
        train(5, run_copy, resume=True)
    warning = "\n".join(r.getMessage() for r in caplog.records
                        if r.levelno == logging.WARNING)
    assert "last.ckpt" in warning and "step=3.ckpt (step 3)" in warning
    assert step_of(run_copy / "checkpoints" / "last.ckpt") == 5
    assert not (run_copy / "checkpoints" / "ran").exists()


def test_resume_without_any_intact_checkpoint_says_so(run_copy: Path) -> None:
    for path in (run_copy / "checkpoints").glob("*.ckpt"):
        damage(path, "truncated")
    before = sorted(p.name for p in (run_copy / "logs").iterdir())
    with pytest.raises(CheckpointError, match=r"no step=N\.ckpt of .* is intact"):
        train(6, run_copy, resume=True)
    assert sorted(p.name for p in (run_copy / "logs").iterdir()) == before


# -- a finished run, and what a run prints --------------------------------------------------

def test_resuming_a_finished_run_says_so_and_writes_nothing(run_copy: Path) -> None:
    files = {p: p.stat().st_mtime_ns for p in run_copy.rglob("*")}
    with pytest.raises(ConfigError, match=r"already reached step 4 of max_steps 4.*"
                                          r"--max-steps"):
        train(4, run_copy, resume=True)
    assert {p: p.stat().st_mtime_ns for p in run_copy.rglob("*")} == files


def test_ranks_after_the_first_leave_the_run_messages_to_it(tmp_path: Path, caplog,
                                                             monkeypatch) -> None:
    with caplog.at_level(logging.INFO, logger="longplay"):
        runner.prepare_run(config(2), tmp_path / "run", resume=False)
    assert "resolved config" in caplog.text
    caplog.clear()
    monkeypatch.setenv("LOCAL_RANK", "1")
    with caplog.at_level(logging.INFO, logger="longplay"):
        runner.prepare_run(config(2), tmp_path / "run", resume=False)
        runner.build_dit_model(config(2))  # its warning about the untrained VAE
    assert caplog.text == ""


NOISE = ("Tip", "litlogger", "LeafSpec", "in eval mode", "TPU available",
         "GPU available but not used", "does not have many workers", "exists and is not empty",
         "dirpath has changed", "callbacks used to create the checkpoint")


def test_a_training_run_shows_each_message_once_and_no_tips(tmp_path: Path, caplog,
                                                             capfd) -> None:
    cfg = tmp_path / "dit.yaml"
    cfg.write_text(f"""
preset: debug
text_encoder_path: {TEXT_ENCODER}
data: {{kind: latents, path: unused}}
trainer: {{max_steps: 2, batch_size: 4, checkpoint_every_n_steps: 2, log_every_n_steps: 1}}
""")
    command = ["train", "dit", str(cfg), "-o", str(tmp_path / "run"), "--no-progress"]
    for extra in ([], ["--resume", "--max-steps", "3"]):
        if extra:  # resumed with another checkpoint interval
            cfg.write_text(cfg.read_text().replace("checkpoint_every_n_steps: 2",
                                                   "checkpoint_every_n_steps: 3"))
        caplog.clear()
        with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
            warnings.simplefilter("always")
            assert main([*command, *extra]) == 0
        shown = [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
        console = "\n".join(shown) + "".join(capfd.readouterr())
        for noise in NOISE:
            assert noise not in console, (noise, console)
        assert sum("resolved config" in m for m in shown) == 1
        assert sum(m.startswith("GPU available") for m in shown) == 1

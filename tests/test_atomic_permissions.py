"""Files written through longplay.atomic get the permissions of a new file (0o666 less
the umask), whatever the writer gave its temporary file (safetensors writes 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from longplay.atomic import atomic_output_path, write_json_atomic
from longplay.checkpoints.files import write_safetensors
from longplay.training.checkpointing import AtomicCheckpointIO


@pytest.fixture(params=[0o022, 0o027])
def umask(request) -> int:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_written_files_get_the_permissions_of_new_files(tmp_path: Path, umask: int) -> None:
    weights = write_safetensors(tmp_path / "model.safetensors", {"w": torch.zeros(3)})
    config = write_json_atomic(tmp_path / "model_config.json", {"a": 1})
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 1}, checkpoint)
    tightened = tmp_path / "private.bin"
    with atomic_output_path(tightened) as tmp:  # a writer that leaves its file 0600
        tmp.write_bytes(b"x")
        os.chmod(tmp, 0o600)
    for path in (weights, config, checkpoint, tightened):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path

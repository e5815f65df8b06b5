"""Training in two processes on CPUs (gloo): DDP and FSDP (FSDP2's ``fully_shard``
through Lightning's ModelParallelStrategy), for full training and for LoRA adapters. The
ranks see different data, end with identical weights, and the checkpoint resumes: a run
stopped and resumed ends where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).parent / "dist_worker.py"


def launch(run: Path, stage: str, strategy: str, steps: int, resume: bool = False,
           audio: Path | None = None) -> list[dict]:
    with socket.socket() as s:  # a free loopback port for the process group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "OMP_NUM_THREADS": "1", "LONGPLAY_TEST_AUDIO": str(audio or "")}
    command = [sys.executable, str(WORKER), str(run), stage, strategy, str(steps)]
    result = subprocess.run(command + (["--resume"] if resume else []), env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]


def checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.slow
def test_two_process_ddp_sees_different_data_and_ends_identical(tmp_path: Path) -> None:
    ranks = launch(tmp_path / "run", "dit", "ddp", 3)
    assert [r["world_size"] for r in ranks] == [2, 2]
    seen = [set(r["positions"]) for r in ranks]
    assert len(ranks[0]["positions"]) == len(ranks[1]["positions"]) == 6  # 3 steps x 2
    assert not seen[0] & seen[1]  # different data on each rank
    assert seen[0] | seen[1] == set(range(12))  # together, the first 12 positions
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert ranks[0]["sum_squares"] == ranks[1]["sum_squares"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["dit", "lora"])
def test_two_process_fsdp_shards_trains_and_resumes(tmp_path: Path, stage: str) -> None:
    whole = launch(tmp_path / "whole", stage, "fsdp", 4)
    assert [r["world_size"] for r in whole] == [2, 2]
    seen = [set(r["positions"]) for r in whole]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(16))
    assert whole[0]["checksum"] == whole[1]["checksum"]  # identical weights on both ranks
    assert whole[0]["sum_squares"] == whole[1]["sum_squares"]

    launch(tmp_path / "parts", stage, "fsdp", 2)
    resumed = launch(tmp_path / "parts", stage, "fsdp", 4, resume=True)
    assert [r["global_step"] for r in resumed] == [4, 4]
    a, b = checkpoint(tmp_path / "whole"), checkpoint(tmp_path / "parts")
    assert a["global_step"] == b["global_step"] == 4
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:  # one file, gathered from the shards
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=0,
                                   atol=1e-6, msg=key)
    if stage == "lora":  # only the adapter is in the checkpoint
        assert all(".lora_" in k for k in a["state_dict"])


@pytest.mark.slow
def test_two_process_ddp_trains_the_vae_with_its_discriminator(tmp_path: Path) -> None:
    """The VAE's generator and discriminator steps each use part of the parameters:
    plain DDP would wait for the others' gradients and fail."""
    import math

    from longplay.audio import save_audio

    audio = tmp_path / "audio"
    audio.mkdir()
    for i, freq in enumerate((110, 220, 440, 880)):
        t = torch.arange(int(1.2 * 44100)) / 44100
        tone = 0.4 * torch.sin(2 * math.pi * freq * t)
        save_audio(audio / f"tone{i}.wav", torch.stack([tone, 0.8 * tone]), 44100)
    ranks = launch(tmp_path / "run", "vae", "ddp", 2, audio=audio)
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["global_step"] for r in ranks] == [2, 2]  # generator + discriminator updates
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert checkpoint(tmp_path / "run")["global_step"] == ranks[0]["global_step"]

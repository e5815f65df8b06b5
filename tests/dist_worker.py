"""Entry script for the 2-process training tests (Lightning's launcher re-runs it for
rank 1).

usage: python tests/dist_worker.py RUN_DIR STAGE STRATEGY STEPS [--resume]
STAGE is "dit" (full training of the debug preset), "lora" (an adapter of the tiny
model) or "vae" (the debug VAE with its discriminator on the audio folder in
$LONGPLAY_TEST_AUDIO); STRATEGY "ddp" or "fsdp". Each rank writes RUN_DIR/rank<r>.json: the data
positions it trained on and checksums of its whole trained weights (gathered from the
shards under FSDP).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch

from longplay.training import lora, runner, vae

# Run as a script, this file's folder is on sys.path: the test modules are importable.
from test_adapters import train_config as lora_config
from test_training_dit import ToyLatents, collate, config
from test_training_vae_clap import vae_config


def whole(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


class RankRecorder(L.Callback):
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.positions: list[int] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        positions = getattr(batch, "positions", None)  # the DiT's batches say where
        if positions is not None:
            self.positions += positions.tolist()

    def on_train_end(self, trainer, module) -> None:
        trained = [whole(p.detach()).flatten().double() for p in module.net.parameters()
                   if p.requires_grad]
        weights = torch.cat(trained)
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size,
                  "positions": self.positions, "checksum": float(weights.sum()),
                  "sum_squares": float((weights**2).sum()), "global_step": trainer.global_step}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    run_dir, stage, strategy, steps = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(
        sys.argv[4])
    resume = "--resume" in sys.argv[5:]
    run_dir.mkdir(parents=True, exist_ok=True)
    data = lambda cfg, model_config: (ToyLatents(), collate)  # noqa: E731
    runner.build_dataset = lora.build_dataset = data
    if stage == "vae":
        base = vae_config(Path(os.environ["LONGPLAY_TEST_AUDIO"]), steps)
    else:
        base = config(steps) if stage == "dit" else lora_config(steps)
    cfg = replace(base, trainer=replace(base.trainer, devices=2, strategy=strategy,
                                        accelerator="cpu", batch_size=2,
                                        checkpoint_every_n_steps=steps))
    train = {"dit": runner.train_dit, "lora": lora.train_lora, "vae": vae.train_vae}[stage]
    train(cfg, run_dir, resume=resume, enable_progress_bar=False,
          extra_callbacks=[RankRecorder(run_dir)])

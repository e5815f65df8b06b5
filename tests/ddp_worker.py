"""Entry script for the 2-process DDP test (Lightning's launcher re-runs it for rank 1).

usage: python tests/ddp_worker.py RUN_DIR
Each rank writes RUN_DIR/rank<r>.json: the data positions it trained on and a checksum
of its final weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch

from longplay.training import runner

# Run as a script, this file's folder is on sys.path: the test module is importable.
from test_training_dit import ToyLatents, collate, config


class RankRecorder(L.Callback):
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.positions: list[int] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.positions += batch.positions.tolist()

    def on_train_end(self, trainer, module) -> None:
        weights = torch.cat([p.detach().flatten().double() for p in module.net.parameters()])
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size,
                  "positions": self.positions, "checksum": float(weights.sum()),
                  "sum_squares": float((weights**2).sum())}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    run_dir = Path(sys.argv[1])
    run_dir.mkdir(parents=True, exist_ok=True)
    runner.build_dataset = lambda cfg, model_config: (ToyLatents(), collate)
    base = config(3)
    cfg = base.__class__(**{**base.__dict__, "trainer": base.trainer.__class__(
        **{**base.trainer.__dict__, "devices": 2, "strategy": "ddp", "accelerator": "cpu",
           "batch_size": 2})})
    runner.train_dit(cfg, run_dir, enable_progress_bar=False,
                     extra_callbacks=[RankRecorder(run_dir)])

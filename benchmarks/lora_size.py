"""LoRA on the full-size Stable Audio Open 1.0 DiT: adapter parameters, file size and CPU
training memory per step, against full fine-tuning.

    python benchmarks/lora_size.py [--rank 16] [--frames 256] [--out results/lora_size.md]

The DiT is built from the stable-audio-open-1.0 preset with random weights (the sizes
and the memory do not depend on the values; no download). Each row runs in its own
process: build the DiT in fp32, inject the adapter (peft, as ``longplay train lora``
does), then two AdamW training steps on a batch of 1 at ``--frames`` latent frames with
random conditioning. Memory is the process's resident set (sampled every 5 ms): after
the model is built, and its peak during the second step; "per step" is the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from _report import save_report

RESULTS = Path(__file__).parent / "results"
GIB = 1024**3
ROWS = (("LoRA, attention", "attention"), ("LoRA, all", "all"), ("full fine-tuning", None))


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakRSS:
    """The peak resident set while the block runs (a sampling thread)."""

    def __enter__(self) -> PeakRSS:
        self.peak = rss()
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, rss())
                time.sleep(0.005)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def measure(targets: str | None, rank: int, frames: int) -> dict:
    from peft import PeftModel

    from longplay.adapters import adapter_state, lora_config, save_adapter
    from longplay.builders import build_dit, seeded
    from longplay.conditioning import Conditioning
    from longplay.config import model_preset

    config = model_preset("stable-audio-open-1.0")
    with seeded(0):
        dit = build_dit(config.dit)
    total = sum(p.numel() for p in dit.parameters())
    file_bytes = 0
    if targets is not None:
        peft_config = lora_config(rank=rank, alpha=rank, targets=targets)
        dit.requires_grad_(False)
        peft_model = PeftModel(dit, peft_config, adapter_name="default")  # injects into dit
        with tempfile.TemporaryDirectory() as folder:
            save_adapter(folder, peft_config, adapter_state(peft_model), None)
            file_bytes = (Path(folder) / "adapter_model.safetensors").stat().st_size
    trainable = [p for p in dit.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, config.dit.io_channels, frames, generator=g)
    t = torch.rand(1, generator=g)
    tokens = 128
    cond = Conditioning(torch.randn(1, tokens, config.dit.cond_token_dim, generator=g),
                        torch.ones(1, tokens, dtype=torch.bool),
                        torch.randn(1, config.dit.global_cond_dim, generator=g))
    dit.train()

    def step() -> float:
        start = time.perf_counter()
        loss = dit(x, t, cond).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    built = rss()
    step()  # the optimiser's state appears here
    with PeakRSS() as peak:
        seconds = step()
    return {"trainable": sum(p.numel() for p in trainable), "total": total,
            "file_bytes": file_bytes, "rss_built_gib": built / GIB,
            "peak_step_gib": peak.peak / GIB, "per_step_gib": (peak.peak - built) / GIB,
            "step_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-full", action="store_true",
                        help="leave out full fine-tuning (16 GB of weights and AdamW state)")
    parser.add_argument("--row", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "lora_size.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.row is not None:  # one measurement, in a process of its own
        targets = None if args.row == "full" else args.row
        print(json.dumps(measure(targets, args.rank, args.frames)))
        return

    results = []
    for name, targets in ROWS:
        if targets is None and args.skip_full:
            continue
        command = [sys.executable, __file__, "--row", targets or "full", "--rank",
                   str(args.rank), "--frames", str(args.frames), "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        row = json.loads(done.stdout.strip().splitlines()[-1])
        results.append((name, row))
        print(name, row, flush=True)

    lines = [
        "# LoRA on the Stable Audio Open 1.0 DiT: size and CPU training memory", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} threads. Random weights of the stable-audio-open-1.0 preset in fp32; "
        f"rank {args.rank}, alpha {args.rank}; AdamW; a batch of 1 at {args.frames} latent "
        "frames (11.9 s) with 128 text tokens. Memory: resident set after the build, and its "
        "peak during the second training step (benchmarks/lora_size.py).", "",
        "| what is trained | trainable parameters | share of the DiT | adapter file | "
        "memory after build (GiB) | peak in a step (GiB) | per step (GiB) | step (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results:
        size = f"{r['file_bytes'] / 1024**2:.1f} MiB" if r["file_bytes"] else "—"
        lines.append(f"| {name} | {r['trainable']:,} | {r['trainable'] / r['total']:.2%} | "
                     f"{size} | {r['rss_built_gib']:.2f} | {r['peak_step_gib']:.2f} | "
                     f"{r['per_step_gib']:.2f} | {r['step_s']:.1f} |")
    save_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()

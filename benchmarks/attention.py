"""Self-attention at long windows on this machine: PyTorch's SDPA backends (the default
choice, the fused flash kernel, the math path) and query-chunked attention, at the DiT's
full-size shape (24 heads of 64, batch 2 as with guidance), in fp32 and bf16.

    python benchmarks/attention.py [--latents 1024,6144] [--repeats 3]

Prints and writes benchmarks/results/attention.md: median seconds per call, the ratio to
the default SDPA call (what longplay's DiT runs), and the largest difference from a float64
reference. A faster variant within the tolerance would replace the default.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from _report import save_report

RESULTS = Path(__file__).parent / "results" / "attention.md"
HEADS, HEAD_DIM, BATCH = 24, 64, 2


def chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, size: int) -> torch.Tensor:
    """Exact attention, the queries taken ``size`` at a time."""
    return torch.cat([F.scaled_dot_product_attention(q[:, :, i:i + size], k, v)
                      for i in range(0, q.shape[2], size)], dim=2)


def variants():
    def backend(kind):
        def run(q, k, v):
            with sdpa_kernel([kind]):
                return F.scaled_dot_product_attention(q, k, v)
        return run

    yield "SDPA default (longplay)", F.scaled_dot_product_attention
    yield "SDPA flash (CPU fused kernel)", backend(SDPBackend.FLASH_ATTENTION)
    yield "SDPA math", backend(SDPBackend.MATH)
    for size in (512, 2048):
        yield f"query chunks of {size}", lambda q, k, v, size=size: chunked(q, k, v, size)


def time_call(fn, args, repeats: int) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        out = fn(*args)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn(*args)
            times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latents", default="1024,6144")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for frames in (int(f) for f in args.latents.split(",")):
        n = frames + 1  # the prepended global token
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(BATCH, HEADS, n, HEAD_DIM, generator=g) for _ in range(3))
        with torch.inference_mode():
            exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
        for dtype in (torch.float32, torch.bfloat16):
            inputs = tuple(t.to(dtype) for t in (q, k, v))
            base = None
            for name, fn in variants():
                try:
                    seconds, out = time_call(fn, inputs, args.repeats)
                except RuntimeError as err:  # a backend that refuses these inputs
                    rows.append((frames, str(dtype).removeprefix("torch."), name, None, None,
                                 str(err).splitlines()[0][:60]))
                    continue
                base = base or seconds
                err = (out.double() - exact).abs().max().item()
                rows.append((frames, str(dtype).removeprefix("torch."), name, seconds,
                             base / seconds, f"{err:.1e}"))
            print(f"{frames} latents, {dtype} done", flush=True)
    lines = [
        "# Self-attention at long windows",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}. {HEADS} heads of {HEAD_DIM}, batch {BATCH}, "
        f"latents + 1 tokens. Median of {args.repeats} calls after a warm-up. Error: largest "
        "difference from float64 attention.",
        "",
        "| latents | dtype | attention | s / call | vs default | max abs error |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for frames, dtype, name, seconds, ratio, err in rows:
        if seconds is None:
            lines.append(f"| {frames} | {dtype} | {name} | n/a | | {err} |")
        else:
            lines.append(f"| {frames} | {dtype} | {name} | {seconds:.3f} | {ratio:.2f}x | "
                         f"{err} |")
    text = "\n".join(lines) + "\n"
    save_report(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where the time goes: torch profiler tables (top operators by self CPU time) of one
full-size Stable Audio Open 1.0 DiT step (batch 2, random weights; fp32 and bf16) and
of one full-size VAE decode (fp32 and bf16 convolutions).

    python benchmarks/profiles.py                       # 256 latents, 3 s of audio
    python benchmarks/profiles.py --latents 1024 --decode-frames 215

Writes benchmarks/results/profile.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from _report import save_report

RESULTS = Path(__file__).parent / "results"
ROWS = 12


def _table(fn) -> str:
    fn()  # warm-up: oneDNN primitives, allocator
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=ROWS)


def dit_profiles(frames: int) -> list[tuple[str, str]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from dit_step import build_models, inputs
    from longplay.conditioning import Conditioning

    _, dit, _ = build_models(24)
    x, t, context, global_cond = inputs(frames)
    mask = torch.ones(context.shape[:2], dtype=torch.bool)
    tables = []
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = dit.to(dtype)
        ctx = model.prepare_context(Conditioning(context.to(dtype), mask,
                                                 global_cond.to(dtype)))
        with torch.inference_mode():
            tables.append((f"DiT step, {frames} latents, batch 2, {name}",
                           _table(lambda model=model, ctx=ctx, dtype=dtype:
                                  model(x.to(dtype), t, ctx))))
    return tables


def decode_profiles(frames: int) -> list[tuple[str, str]]:
    from longplay.checkpoints import build_vae
    from longplay.config import vae_preset

    torch.manual_seed(0)
    vae = build_vae(vae_preset("stable-audio-open-1.0")).eval()
    latents = torch.randn(1, 64, frames, generator=torch.Generator().manual_seed(1))
    tables = []
    for name, dtype in (("fp32", None), ("bf16 convolutions", torch.bfloat16)):
        vae.set_conv_dtype(dtype)
        with torch.inference_mode():
            tables.append((f"VAE decode, {frames} latent frames "
                           f"({frames * 2048 / 44100:.1f} s), {name}",
                           _table(lambda: vae.decode(latents, chunk_frames=None))))
    return tables


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latents", type=int, default=256)
    parser.add_argument("--decode-frames", type=int, default=64)
    args = parser.parse_args()
    sections = dit_profiles(args.latents) + decode_profiles(args.decode_frames)
    text = ["# Profiles (top operators by self CPU time)", "",
            f"torch {torch.__version__}, {torch.get_num_threads()} threads.", ""]
    for title, table in sections:
        text += [f"## {title}", "", "```", table.rstrip(), "```", ""]
    out = "\n".join(text)
    save_report(out, RESULTS / "profile.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

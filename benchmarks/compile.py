"""``torch.compile`` against eager execution, full-size models, in one run.

    python benchmarks/compile.py [--seconds 10] [--latents 256] [--repeats 3]

For the VAE decoder (a decode of ``--seconds`` of audio, chunked as the pipeline does)
and the DiT's blocks (one step at ``--latents`` latents, batch 2 as with guidance), in
fp32 and bf16 (``set_conv_dtype`` / bf16 weights): the median time eager and compiled
(interleaved rounds after a warm-up), the speed-up (median of the rounds' ratios), the
largest output difference, and the time of the first compiled call, with an empty
compile cache (a fresh ``TORCHINDUCTOR_CACHE_DIR``) and again in a second process that
finds that cache. Random weights (speed does not depend on them). Writes
benchmarks/results/compile.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import save_report

RESULTS = Path(__file__).parent / "results"
LATENT_RATE = 44100 / 2048
BATCH = 2
TEXT_TOKENS = 128 + 2


def _vae_case(precision: str, seconds: float):
    """(eager fn, compiled fn, compiler) for a full-size VAE decode."""
    import torch

    from longplay.autoencoder import AudioVAE
    from longplay.layers import Compiler

    torch.manual_seed(0)
    eager = AudioVAE().eval()
    compiled = AudioVAE().eval()
    compiled.load_state_dict(eager.state_dict())
    if precision == "bf16":
        eager.set_conv_dtype(torch.bfloat16)
        compiled.set_conv_dtype(torch.bfloat16)
    compiler = Compiler("the VAE decoder", "cpu")
    compiled.compile_decoder(compiler)
    latents = torch.randn(1, 64, round(seconds * LATENT_RATE),
                          generator=torch.Generator().manual_seed(1))
    chunk = eager.auto_chunk_frames(latents.shape[-1])
    return (lambda: eager.decode(latents, chunk_frames=chunk),
            lambda: compiled.decode(latents, chunk_frames=chunk), compiler)


def _dit_case(precision: str, frames: int):
    """(eager fn, compiled fn, compiler) for one full-size DiT step."""
    import copy

    import torch

    from longplay.conditioning import Conditioning
    from longplay.layers import Compiler
    from longplay.transformer import DiffusionTransformer

    torch.manual_seed(0)
    eager = DiffusionTransformer().eval()
    with torch.no_grad():
        for p in eager.parameters():
            p.normal_(0, 0.02)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    eager.to(dtype)
    compiled = copy.deepcopy(eager)
    compiler = Compiler("the DiT's blocks", "cpu")
    compiled.compile_blocks(compiler)
    g = torch.Generator().manual_seed(1)
    cond = Conditioning(torch.randn(BATCH, TEXT_TOKENS, 768, generator=g),
                        torch.ones(BATCH, TEXT_TOKENS, dtype=torch.bool),
                        torch.randn(BATCH, 1536, generator=g))
    x, t = torch.randn(BATCH, 64, frames, generator=g), torch.rand(BATCH, generator=g)
    with torch.inference_mode():
        ctx_eager, ctx_compiled = eager.prepare_context(cond), compiled.prepare_context(cond)
    return (lambda: eager(x, t, ctx_eager), lambda: compiled(x, t, ctx_compiled), compiler)


def _cases(args) -> list[tuple[str, str, str]]:
    rows = []
    for part in args.parts.split(","):
        for precision in args.precisions.split(","):
            what = (f"{args.seconds:g} s decode" if part == "vae"
                    else f"step, {args.latents} latents")
            rows.append((part, precision, what))
    return rows


def worker(args) -> list[dict]:
    """Runs in a subprocess whose TORCHINDUCTOR_CACHE_DIR the parent chose."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for part, precision, what in _cases(args):
        eager_fn, compiled_fn, compiler = (_vae_case(precision, args.seconds) if part == "vae"
                                           else _dit_case(precision, args.latents))
        row = {"part": part, "precision": precision, "what": what}
        with torch.inference_mode():
            start = time.perf_counter()
            compiled_out = compiled_fn()
            row["first_call_s"] = time.perf_counter() - start
            if args.first_call_only:
                results.append(row)
                continue
            eager_out = eager_fn()  # warm-up
            row["max_abs_diff"] = float((eager_out.float() - compiled_out.float()).abs().max())
            times: dict[str, list[float]] = {"eager": [], "compiled": []}
            for _ in range(args.repeats):
                for name, fn in (("eager", eager_fn), ("compiled", compiled_fn)):
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
        row["compiled_active"] = compiler.active
        row["eager_s"] = statistics.median(times["eager"])
        row["compiled_s"] = statistics.median(times["compiled"])
        row["ratios"] = [e / c for e, c in zip(times["eager"], times["compiled"], strict=True)]
        row["speedup"] = statistics.median(row["ratios"])
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return results


def _run_worker(args, cache_dir: str, first_call_only: bool) -> list[dict]:
    cmd = [sys.executable, __file__, "--worker", "--seconds", str(args.seconds), "--latents",
           str(args.latents), "--repeats", str(args.repeats), "--parts", args.parts,
           "--precisions", args.precisions, "--threads", str(args.threads)]
    if first_call_only:
        cmd.append("--first-call-only")
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir)
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict], warm: dict[tuple[str, str], float]) -> str:
    lines = ["| part | precision | workload | eager (s) | compiled (s) | speed-up (rounds) "
             "| first call, empty cache (s) | first call, cached (s) | max abs diff |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratios = ", ".join(f"{x:.2f}" for x in r["ratios"])
        lines.append(
            f"| {'VAE decoder' if r['part'] == 'vae' else 'DiT blocks'} | {r['precision']} "
            f"| {r['what']} | {r['eager_s']:.2f} | {r['compiled_s']:.2f} "
            f"| {r['speedup']:.2f}x ({ratios}) | {r['first_call_s']:.1f} "
            f"| {warm.get((r['part'], r['precision']), float('nan')):.1f} "
            f"| {r['max_abs_diff']:.1e} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--latents", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="vae,dit")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--out", type=Path, default=RESULTS / "compile.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first-call-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    import torch

    with tempfile.TemporaryDirectory(prefix="longplay-inductor-") as cache_dir:
        rows = _run_worker(args, cache_dir, first_call_only=False)
        warm_rows = _run_worker(args, cache_dir, first_call_only=True)
    warm = {(r["part"], r["precision"]): r["first_call_s"] for r in warm_rows}
    threads = args.threads or torch.get_num_threads()
    report = "\n".join([
        "# torch.compile vs eager",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{threads} threads. Full-size models with random weights; the first compiled call "
        "includes compiling (empty cache: a fresh TORCHINDUCTOR_CACHE_DIR; cached: a second "
        "process with that cache), the other columns are medians of interleaved rounds "
        f"({args.repeats}) after it.",
        "",
        table(rows, warm),
        "",
    ])
    save_report(report, args.out, {"rows": rows, "warm": warm_rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One diffusion-transformer step of the full-size Stable Audio Open 1.0 architecture
(random weights, batch 2 as with guidance): longplay against diffusers'
StableAudioDiTModel on the same weights, in one run, each at the same precision (fp32,
and bf16 with the reference cast by ``.to(torch.bfloat16)``), plus longplay's int8.

    python benchmarks/dit_step.py [--latents 256,1024] [--repeats 3]

Prints and writes benchmarks/results/dit_step.md: median seconds per step, the ratio
to the reference, the largest output difference from the reference's fp32 output, and
the utilisation of the machine's measured peak matmul rate. The runs are interleaved:
each round calls every implementation once. Needs the ``bench`` extra
(diffusers).
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from pathlib import Path

import torch

from _report import save_report
from _report import seconds as fmt_s

RESULTS = Path(__file__).parent / "results" / "dit_step.md"
BATCH = 2
TEXT_TOKENS = 128 + 2  # T5 tokens, then the two timing tokens
CPU = torch.device("cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, ...] = (2048, 4096),
                repeats: int = 3, device: torch.device = CPU) -> float:
    """The best FLOP/s of square matmuls of ``sizes`` in ``dtype`` (a peak, so the
    maximum over repeats, after a warm-up)."""
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        a @ b
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            a @ b
            sync(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def build_models(depth: int):
    from diffusers import StableAudioDiTModel

    from longplay.builders import build_dit
    from longplay.checkpoints.keymaps import dit_module_rows
    from longplay.checkpoints.remap import own_to_foreign, remap_state, state_shapes
    from longplay.config import DiTConfig

    torch.manual_seed(0)
    reference = StableAudioDiTModel(
        sample_size=1024, in_channels=64, num_layers=depth, attention_head_dim=64,
        num_attention_heads=24, num_key_value_attention_heads=12, out_channels=64,
        cross_attention_dim=768, time_proj_dim=256, global_states_input_dim=1536,
        cross_attention_input_dim=768).eval()
    config = DiTConfig(depth=depth)
    with torch.device("meta"):
        dit = build_dit(config)
    state = remap_state(reference.state_dict(), own_to_foreign(dit, dit_module_rows(depth), 2),
                        state_shapes(dit), "DiT", Path("diffusers"))
    dit.load_state_dict(state, strict=True, assign=True)
    return reference, dit.eval(), config


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def inputs(frames: int):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 64, frames, generator=g)
    t = torch.rand(BATCH, generator=g)
    context = torch.randn(BATCH, TEXT_TOKENS, 768, generator=g)
    global_cond = torch.randn(BATCH, 1536, generator=g)
    return x, t, context, global_cond


def time_interleaved(runs: dict, repeats: int, device: torch.device
                     ) -> tuple[dict, dict, float]:
    """Each run warmed up once, then ``repeats`` rounds of one call of each in turn (a
    shared machine's speed drifts within minutes): (median seconds per run, outputs,
    FLOPs of the first run counted during its warm-up)."""
    from torch.utils.flop_counter import FlopCounterMode

    outputs, flops = {}, 0.0
    for i, (key, fn) in enumerate(runs.items()):
        if i == 0:
            with FlopCounterMode(display=False) as counter:
                outputs[key] = fn()
            flops = float(counter.get_total_flops())
        else:
            outputs[key] = fn()
    times: dict = {key: [] for key in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}, outputs, flops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latents", default="256,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--depth", type=int, default=24,
                        help="transformer blocks (24 = full size); fewer keep long sequences "
                             "affordable, and the ratios and utilisation per block are the same")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (markdown)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (int8 runs on a CPU only)")
    args = parser.parse_args()
    device = torch.device(args.device)
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    from longplay.conditioning import Conditioning
    from longplay.layers import quantize_linears_int8, shared_weights_copy
    from longplay.pipelines.text_to_music import bf16_supported

    reference, dit, _ = build_models(args.depth)
    reference, dit = reference.to(device), dit.to(device)
    peak = {"fp32": matmul_peak(torch.float32, device=device),
            "bf16": matmul_peak(torch.bfloat16, device=device)}
    precisions = ("fp32", "bf16", "int8") if device.type == "cpu" else ("fp32", "bf16")
    rows, int8_rows = [], []
    for frames in (int(f) for f in args.latents.split(",")):
        x, t, context, global_cond = (v.to(device) for v in inputs(frames))
        rotary = tuple(r.to(device) for r in get_1d_rotary_pos_embed(
            max(64 // 2, 32), frames + 1, use_real=True, repeat_interleave_real=False))

        def run_reference(x=x, t=t, context=context, global_cond=global_cond, rotary=rotary):
            with torch.inference_mode():
                return reference(x, t, encoder_hidden_states=context,
                                 global_hidden_states=global_cond[:, None],
                                 rotary_embedding=rotary, return_dict=False)[0]

        # The reference cast to bf16, as a diffusers user would (`.to(torch.bfloat16)`).
        reference_bf16 = copy.deepcopy(reference).to(torch.bfloat16)
        bf16_inputs = (x.bfloat16(), t, context.bfloat16(), global_cond.bfloat16())

        def run_reference_bf16(inputs=bf16_inputs, rotary=rotary, model=reference_bf16):
            x_, t_, context_, global_ = inputs
            with torch.inference_mode():
                return model(x_, t_, encoder_hidden_states=context_,
                             global_hidden_states=global_[:, None],
                             rotary_embedding=rotary, return_dict=False)[0]

        runs = {("reference", "fp32"): run_reference, ("reference", "bf16"): run_reference_bf16}
        cond = Conditioning(context, torch.ones(BATCH, TEXT_TOKENS, dtype=torch.bool,
                                                device=device), global_cond)
        for name in precisions:
            dtype = torch.bfloat16 if name == "bf16" else torch.float32
            model = shared_weights_copy(dit, dtype)
            if name == "int8":  # as the pipeline runs it: bf16 attention where supported
                quantize_linears_int8(model.blocks)
                if bf16_supported(device):
                    model.set_attention_dtype(torch.bfloat16)
            ctx = model.prepare_context(Conditioning(cond.cross_attn.to(dtype),
                                                     cond.cross_attn_mask,
                                                     cond.global_cond.to(dtype)))

            def run_ours(model=model, ctx=ctx, dtype=dtype, x=x, t=t):
                with torch.inference_mode():
                    return model(x.to(dtype), t, ctx)

            runs[("longplay", name)] = run_ours
        seconds, outputs, flops = time_interleaved(runs, args.repeats, device)
        ref_out = outputs[("reference", "fp32")]
        ref_s = seconds[("reference", "fp32")]
        for (impl, name), secs in seconds.items():
            err = (outputs[(impl, name)].float() - ref_out).abs().max().item()
            same = seconds.get(("reference", name))
            label = "diffusers (reference)" if impl == "reference" else "longplay"
            rows.append((label, name, frames, secs, None if same is None else same / secs,
                         ref_s / secs, err,
                         None if name == "int8" else flops / secs / peak[name]))
        if "int8" in precisions:
            int8_rows.append((frames,
                              seconds[("longplay", "bf16")] / seconds[("longplay", "int8")],
                              seconds[("reference", "bf16")] / seconds[("longplay", "int8")]))
        print(f"{frames} latents done", flush=True)

    lines = [
        "# DiT step, full-size Stable Audio Open 1.0 architecture, batch 2"
        + ("" if args.depth == 24 else f" ({args.depth} of its 24 blocks)"),
        "",
        f"Machine: {machine(device)}, torch {torch.__version__}. Median of {args.repeats} "
        "interleaved rounds (each calls every row once) after a warm-up. "
        "Measured peak matmul (best of 2048^2 and 4096^2): fp32 "
        f"{peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 "
        f"{peak['bf16'] / 1e9:.0f} GFLOP/s. Utilisation = the step's FLOPs (counted by "
        "torch.utils.flop_counter on the reference) / time / peak of the precision. Max "
        "|diff| is against the reference's fp32 output (outputs have a standard deviation "
        "of about 0.44). The headline is the same-precision ratio (bold); 'vs reference "
        "fp32' compares with the reference's own default.",
        "",
        "| implementation | precision | latents | s / step | vs reference, same precision | "
        "vs reference fp32 | max abs diff | utilisation |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for impl, precision, frames, secs, same, vs_fp32, err, util in rows:
        same_text = "no int8 reference" if same is None else f"**{same:.2f}x**"
        util_text = "" if util is None else f"{util:.0%}"
        lines.append(f"| {impl} | {precision} | {frames} | {fmt_s(secs)} | {same_text} | "
                     f"{vs_fp32:.2f}x | {err:.2e} | {util_text} |")
    if int8_rows:
        lines += ["", "int8 (longplay's `precision=\"int8\"`: the blocks' linear layers "
                  "through PyTorch's dynamic quantisation) against bf16, same run:", "",
                  "| latents | int8 vs longplay bf16 | int8 vs reference bf16 |",
                  "|---:|---:|---:|"]
        lines += [f"| {frames} | {a:.2f}x | {b:.2f}x |" for frames, a, b in int8_rows]
    text = "\n".join(lines) + "\n"
    save_report(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

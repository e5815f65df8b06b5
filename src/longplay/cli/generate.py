"""``longplay generate`` and ``longplay info``."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch
from tqdm import tqdm

from longplay import __version__
from longplay.adapters import load_adapter, parse_adapter_argument
from longplay.assets import NO_DRAFT, draft_for, model_or_demo
from longplay.atomic import atomic_output_paths
from longplay.audio import (
    OUTPUT_FORMATS,
    load_audio,
    normalize_output,
    output_format,
    save_audio,
)
from longplay.checkpoints import load_diffusion_model, read_diffusion_config
from longplay.cli.options import SAMPLER_NAMES, add_device_option, add_speed_options
from longplay.config import WINDOWS, DiffusionModelConfig
from longplay.pipelines import (
    DEFAULT_EDGE_S,
    DEFAULT_JUMP_LENGTH,
    MAX_BATCH_SIZE,
    MAX_INFERENCE_STEPS,
    GenerationSettings,
    SettingsError,
    TextToMusicOutput,
    TextToMusicPipeline,
    resolve_device,
    resolve_precision,
    resolve_settings,
    sampling_defaults,
)
from longplay.pipelines.drafts import (
    DRAFT_REFINEMENT,
    DraftedPipeline,
    draft_model_name,
    resolve_drafted,
)
from longplay.pipelines.windows import loop_duration_s

logger = logging.getLogger(__name__)


OPTIONS = {"num_inference_steps": "--steps", "guidance_scale": "--cfg", "sampler": "--sampler",
           "sigma_min": "--sigma-min", "sigma_max": "--sigma-max", "seed": "--seed",
           "num_outputs": "--num-outputs", "seconds_start": "--seconds-start",
           "seconds_total": "--seconds-total", "duration_s": "--duration",
           "init_noise_level": "--init-noise-level", "window": "--window",
           "context_s": "--context", "sections": "--section", "prompt": "PROMPT",
           "negative_prompt": "--negative", "guidance_interval": "--guidance-interval",
           "unguided_final_steps": "--unguided-final-steps", "inpaint_edge_s": "--edge",
           "resample_steps": "--resample-steps", "jump_length": "--jump-length",
           "init_audio": "--init-audio", "inpaint_audio": "IN", "inpaint_regions": "--start/--end",
           "loop": "--loop", "draft": "--draft"}
"""The command-line option of each pipeline argument, to name it in error messages."""


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output .wav, .flac, .ogg or .mp3 file (its folder must exist); "
                             "several outputs get _0, _1, ... suffixes, and each gets a .json "
                             "sidecar with its settings")
    parser.add_argument("--format", choices=tuple(OUTPUT_FORMATS), default=None,
                        help="how the output is encoded; it must fit the extension: wav "
                             "(16-bit, the default for .wav), wav24, wav-float (32-bit float: "
                             "never clips), flac (16-bit), flac24, ogg (Vorbis), mp3")
    parser.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                        help="apply a DC block (a zero-phase high-pass at 10 Hz) and peak "
                             "normalisation to -1 dBFS, recorded in the sidecar; "
                             "--no-normalize writes the model's raw output. Default: on for "
                             "generate, off for extend and inpaint (the kept audio stays "
                             "the input's own samples)")
    parser.add_argument("--model", type=Path, metavar="PATH",
                        help="model folder: Stable Audio Open / stable-audio-tools layout or "
                             "diffusers (default: the bundled demo model)")
    parser.add_argument("--text-encoder", type=Path, metavar="PATH",
                        help="local folder of the model's text encoder (default: inside the "
                             "model folder)")
    parser.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                        help="apply a LoRA adapter folder (from `longplay train lora` or peft) "
                             "with this strength (default 1); repeat to stack adapters")


def _interval(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(":")
    try:
        return float(lo), float(hi)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI (two noise levels, e.g. 0.3:20), got "
                                         f"{text!r}") from None


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--negative", default=None, metavar="PROMPT",
                        help="negative prompt for guidance")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"sampler steps, at most {MAX_INFERENCE_STEPS} (default: the "
                             "model's own, which `longplay info MODEL` shows: 50 for the demo "
                             "model; 100 for v models and 8 for rectified flow that set none)")
    parser.add_argument("--cfg", type=float, default=None,
                        help="guidance scale (default: 7 for v models, 1 for rectified flow)")
    parser.add_argument("--sampler", choices=SAMPLER_NAMES, default=None,
                        help="sampler (default: dpmpp-3m-sde for v models, pingpong for "
                             "rectified flow, which also take stable-audio-tools' names euler "
                             "and dpmpp for rf-euler and rf-dpmpp)")
    parser.add_argument("--guidance-interval", type=_interval, default=None, metavar="LO:HI",
                        help="apply guidance only for noise levels in (LO, HI] (VE sigmas for v "
                             "models, RF times for flows): one network pass instead of two "
                             "elsewhere (default: the model's; the demo model's is 0.5:20; "
                             "0:inf guides every step)")
    parser.add_argument("--unguided-final-steps", type=int, default=0, metavar="N",
                        help="run the last N steps without guidance (default 0)")
    parser.add_argument("--sigma-min", type=float, default=None,
                        help="v models: the lowest noise level of the sampler's log-linear "
                             "schedule (default: the model's, 0.03 unless its config sets "
                             "one); rectified-flow models take none")
    parser.add_argument("--sigma-max", type=float, default=None,
                        help="v models: the highest noise level, where sampling starts "
                             "(default: the model's, 500 unless its config sets one); "
                             "rectified-flow models take none")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the first output; output i uses seed + i (default: "
                             "random, recorded in the sidecar)")
    parser.add_argument("--num-outputs", type=int, default=1,
                        help=f"how many outputs to generate from the prompt, with seeds seed, "
                             f"seed + 1, ... (default 1, at most {MAX_BATCH_SIZE})")
    parser.add_argument("--seconds-start", type=float, default=0.0,
                        help="timing conditioning: where in the piece the audio starts "
                             "(default 0); within the model's timing range and before "
                             "--seconds-total")
    parser.add_argument("--seconds-total", type=float, default=None,
                        help="timing conditioning: how long the whole piece is (default: the "
                             "duration); within the model's timing range (0-512 s for Stable "
                             "Audio Open)")
    parser.add_argument("--window", choices=WINDOWS, default=None,
                        help="full: sample the model's whole window, then trim (the paper's "
                             "way); fit: sample the shortest window that holds the request "
                             "(faster). Default: the model's setting (full, except models "
                             "trained for fit such as the demo model)")
    parser.add_argument("--context", type=float, default=None, metavar="S",
                        help="beyond one window: seconds of what came before that each "
                             "window keeps (default a quarter of the window)")
    parser.add_argument("--section", action="append", default=None, metavar="START:PROMPT",
                        help="from START seconds on, the piece follows PROMPT (repeatable; "
                             "the main prompt holds from 0)")
    add_speed_options(parser)
    add_device_option(parser, progress=True)


def _add_editing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--edge", type=float, default=DEFAULT_EDGE_S, metavar="S",
                        help="soft edge of the kept audio, in seconds: the join is blended "
                             "over it (default %(default)s)")
    parser.add_argument("--resample-steps", type=int, default=1, metavar="R",
                        help="RePaint resampling: sample each segment R times, jumping back "
                             "in between, for a better fit at the joins (default 1: off)")
    parser.add_argument("--jump-length", type=int, default=DEFAULT_JUMP_LENGTH, metavar="J",
                        help="steps per resampled segment (default %(default)s)")
    parser.add_argument("--no-splice", action="store_true",
                        help="write the VAE's reconstruction of the kept audio instead of its "
                             "own samples")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generate", help="generate music from a text prompt")
    gen.add_argument("prompt", help="what the music should be")
    _add_model_options(gen)
    gen.add_argument("--duration", type=float, default=None,
                     help="seconds of audio (default: the model's window); longer than the "
                          "window is sampled window by window")
    gen.add_argument("--init-audio", type=Path, metavar="FILE",
                     help="audio-to-audio: start from this file")
    gen.add_argument("--init-noise-level", type=float, default=None,
                     help="how much of --init-audio to change, the level sampling starts "
                          "from: for v models a noise sigma in (sigma-min, sigma-max] (default "
                          "1.0; 500 is pure noise), for rectified-flow models a time in (0, 1] "
                          "(default 0.5; 1 is pure noise)")
    gen.add_argument("--draft", type=Path, default=None, metavar="MODEL",
                     help="draft the piece with this few-step model (a folder, or a bundled "
                          "name such as demo-fast; 'none': no draft) that shares the model's "
                          "VAE, then refine the draft with the model (default: demo-fast for "
                          "the bundled demo model, where the piece is one window and not a "
                          "loop, sections or audio-to-audio; none for other models): noised "
                          "to --init-noise-level (default "
                          f"{DRAFT_REFINEMENT.init_noise_level:g}), --steps (default "
                          f"{DRAFT_REFINEMENT.num_inference_steps}) of its sampler, guided "
                          "only above sigma "
                          f"{DRAFT_REFINEMENT.guidance_interval[0]:g} (--guidance-interval); "
                          "see docs/speed.md")
    gen.add_argument("--draft-steps", type=int, default=DRAFT_REFINEMENT.draft_steps,
                     metavar="N", help="with --draft: the draft model's steps (default "
                                       "%(default)s)")
    gen.add_argument("--loop", action="store_true",
                     help="make the audio loop seamlessly (its end flows into its start)")
    gen.add_argument("--bpm", type=float, default=None,
                     help="with --loop: the tempo; with --bars it sets the duration")
    gen.add_argument("--bars", type=int, default=None, help="with --loop and --bpm: bars")
    gen.add_argument("--beats-per-bar", type=int, default=4,
                     help="with --bars: beats in a bar (default 4)")
    _add_sampling_options(gen)
    gen.set_defaults(run=run_generate)

    ext = sub.add_parser("extend", help="continue a recording: keep it and go on from its end")
    ext.add_argument("input", type=Path, metavar="IN", help="the audio to continue")
    ext.add_argument("--seconds", type=float, required=True, help="how much to add")
    ext.add_argument("--prompt", required=True, help="what the continuation should be")
    _add_model_options(ext)
    _add_editing_options(ext)
    ext.add_argument("--init-noise-level", type=float, default=None, help=argparse.SUPPRESS)
    _add_sampling_options(ext)
    ext.set_defaults(run=run_extend)

    inp = sub.add_parser("inpaint", help="regenerate a region of a recording, keeping the rest")
    inp.add_argument("input", type=Path, metavar="IN", help="the audio to edit")
    inp.add_argument("--start", type=float, required=True, help="region start, in seconds")
    inp.add_argument("--end", type=float, required=True, help="region end, in seconds")
    inp.add_argument("--prompt", required=True, help="what the region should be")
    inp.add_argument("--init-noise-level", type=float, default=None,
                     help="change the region only in part: start from it at this level "
                          "instead of from pure noise (a sigma for v models, a time in (0, 1] "
                          "for rectified flow; see generate --help)")
    _add_model_options(inp)
    _add_editing_options(inp)
    _add_sampling_options(inp)
    inp.set_defaults(run=run_inpaint)

    info = sub.add_parser("info", help="describe a model folder")
    info.add_argument("model", type=Path, metavar="PATH", nargs="?", default=None,
                      help="model folder (default: the bundled demo model)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=run_info)


def _sections(prompt: str, entries: list[str] | None) -> list[tuple[float, str]] | None:
    """``--section START:PROMPT`` entries after the main prompt, or None."""
    if not entries:
        return None
    sections = [(0.0, prompt)]
    for entry in entries:
        start, sep, text = entry.partition(":")
        try:
            seconds = float(start)
        except ValueError:
            seconds = None
        if not sep or seconds is None:
            raise ValueError(f"--section {entry!r} must be START:PROMPT, e.g. '60:a calm "
                             "outro with strings'")
        sections.append((seconds, text.strip()))
    return sections


def _output_paths(output: Path, count: int, format_name: str | None) -> list[Path]:
    """The output files, checked before any work: a known format that fits the
    extension, an existing writable folder, no directory in the way."""
    output_format(output, format_name)
    if not 1 <= count <= MAX_BATCH_SIZE:
        raise ValueError(f"--num-outputs must be in [1, {MAX_BATCH_SIZE}], got {count}")
    folder = output.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {folder} does not exist; create it first "
                                "(mkdir -p)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {folder} is not writable; choose another -o")
    paths = [output] if count == 1 else [
        output.with_name(f"{output.stem}_{i}{output.suffix}") for i in range(count)]
    for path in paths:
        for target in (path, path.with_suffix(".json")):
            if target.is_dir():
                raise IsADirectoryError(f"output {target} is a folder; choose a file name")
    return paths


class _Progress:
    def __init__(self, disable: bool, prefix: str = "") -> None:
        self.disable = disable
        self.prefix = prefix
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            unit = "step" if stage == "sampling" else "chunk"
            bar = self.bars[stage] = tqdm(total=total, desc=self.prefix + stage, unit=unit,
                                          disable=self.disable, leave=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _run(args: argparse.Namespace, prompt: str, source: Path | None, **kwargs) -> int:
    """Check every argument, then load the model, generate and write every output with
    its sidecar. Everything that needs no weights (the output files, the adapters, the
    input audio, every setting against the model's config) is checked first, so that a
    mistake is reported in a second, not after the model has loaded. ``source``: the
    input file of an edit (read at the model's rate)."""
    args.model = model_or_demo(args.model)
    paths = _output_paths(args.output, args.num_outputs, args.format)
    adapters = []
    for entry in args.lora:
        path, scale = parse_adapter_argument(entry)
        adapters.append((load_adapter(path), scale))
    config = read_diffusion_config(args.model)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    audio = {}
    for name in ("init_audio", "inpaint_audio"):
        path = source if name == "inpaint_audio" else getattr(args, "init_audio", None)
        if name in kwargs or path is None:
            continue
        audio[name] = load_audio(path, sample_rate=config.sample_rate,
                                 channels=config.audio_channels).audio
    if "duration_from_input" in kwargs:  # extend: the input's length plus the new seconds
        kwargs["duration_s"] = (audio["inpaint_audio"].shape[-1] / config.sample_rate
                                + kwargs.pop("duration_from_input"))
    # The settings record: every default filled in from the model, the seed drawn.
    draft = _draft_model(args)
    try:
        settings = _resolve(config, args, prompt, precision, audio, kwargs, draft)
    except SettingsError as err:
        raise SettingsError(err.field, f"{OPTIONS.get(err.field, err.field)}: {err}") from None
    if settings.num_windows > 1:
        print(f"note: {settings.duration_s:.2f} s is longer than the model's window "
              f"({config.max_duration_s:.2f} s): sampled in {settings.num_windows} windows, "
              f"each keeping {settings.context_s:.2f} s of what came before")
    if args.seconds_total is None and settings.seconds_total < settings.duration_s:
        print(f"note: the model's timing conditioning ends at {settings.seconds_total:g} s: "
              f"the {settings.duration_s:.2f} s piece is conditioned as "
              f"{settings.seconds_total:g} s long")
    load = dict(text_encoder_path=args.text_encoder, device=device, precision=args.precision,
                compile=args.compile)
    if draft is None or settings.draft is None:
        pipe = TextToMusicPipeline.from_pretrained(args.model, **load)
    else:
        pipe = DraftedPipeline.from_pretrained(args.model, draft[0],
                                               draft_steps=args.draft_steps, **load)
    progress = _Progress(args.no_progress)
    try:
        out = pipe(settings, progress=progress, adapters=adapters, **audio)
    finally:
        progress.close()
    drafted = None if settings.draft is None else {"model": _absolute(draft[0]),
                                          "settings": pipe.draft_settings(settings).as_dict()}
    _write(args, out, paths, prompt, source, compiled=pipe.compiled, draft=drafted)
    return 0


def _draft_model(args: argparse.Namespace) -> tuple[Path, DiffusionModelConfig, bool] | None:
    """The draft model's folder and config, and whether ``--draft`` named it (else it is
    the model's default: :func:`longplay.assets.draft_for`); None: no draft. A named draft
    is refused with the options that a draft cannot take; a default one steps aside for
    them (:mod:`longplay.pipelines.drafts`)."""
    if not hasattr(args, "draft"):  # extend, inpaint: edits
        return None
    named = args.draft is not None and str(args.draft) != NO_DRAFT
    path = draft_for(args.model, args.draft)
    if path is None:
        return None
    for option, given in (("--init-audio", args.init_audio is not None),
                          ("--loop", args.loop), ("--section", bool(args.section))):
        if given and named:
            raise SettingsError("draft", f"--draft: {option} is not available with a "
                                         "draft; drop one of the two")
        if given:
            return None
    return path, read_diffusion_config(path), named


def _resolve(config, args: argparse.Namespace, prompt: str, precision: str, audio: dict,
             kwargs: dict, draft: tuple[Path, DiffusionModelConfig, bool] | None = None
             ) -> GenerationSettings:
    """The settings of the command's arguments, checked against the model's config (and
    the draft model's, drafted: :func:`longplay.pipelines.drafts.resolve_drafted`)."""
    arguments = _call_arguments(args, prompt, audio, kwargs)
    if draft is None:
        return resolve_settings(config, precision=precision, **arguments)
    settings = resolve_drafted(config, draft[1], draft_model_name(draft[0]),
                               draft_steps=args.draft_steps,
                               precision=precision, **arguments)
    if settings is None:  # the options that cannot be drafted are dealt with above
        plain = resolve_settings(config, precision=precision, **arguments)
        if not draft[2]:  # the default draft steps aside for a piece of several windows
            return plain
        raise SettingsError("draft", f"--draft: the draft is one window, "
                                     f"{draft[1].max_duration_s:.2f} s at most; "
                                     f"--duration {plain.duration_s:g} s needs "
                                     f"{plain.num_windows}: shorten it or drop --draft")
    return settings


def _call_arguments(args: argparse.Namespace, prompt: str, audio: dict, kwargs: dict) -> dict:
    """The pipeline call's keyword arguments that the command's arguments give."""
    return dict(
        prompt=None if args.section else prompt, negative_prompt=args.negative,
        seconds_start=args.seconds_start, seconds_total=args.seconds_total,
        num_inference_steps=args.steps, guidance_scale=args.cfg, sampler=args.sampler,
        sigma_min=args.sigma_min, sigma_max=args.sigma_max, seed=args.seed,
        num_outputs=args.num_outputs, init_noise_level=args.init_noise_level,
        window=args.window, context_s=args.context, sections=_sections(prompt, args.section),
        guidance_interval=args.guidance_interval,
        unguided_final_steps=args.unguided_final_steps, **audio, **kwargs)


def _absolute(path: Path | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _write(args: argparse.Namespace, out: TextToMusicOutput, paths: list[Path], prompt: str,
           source: Path | None, compiled: tuple[str, ...] = (),
           draft: dict | None = None) -> None:
    """Each output and its sidecar, as one pair: the sidecar moves into place first, the
    audio right after it, with Ctrl-C and SIGTERM held back in between."""
    record = out.settings.as_dict()
    format_name, subtype = output_format(args.output, args.format)
    normalize = out.settings.normalize_by_default if args.normalize is None else args.normalize
    for i, path in enumerate(paths):
        audio, processing = normalize_output(out.audio[i], out.sample_rate,
                                             normalize=normalize)
        seed = out.seeds[i]  # what --seed reproduces (a drafted record's: the draft's)
        sidecar = {
            "prompt": prompt,
            "seed": seed,
            "model": _absolute(args.model),
            "text_encoder": _absolute(args.text_encoder),
            "init_audio": _absolute(getattr(args, "init_audio", None)),
            "input": _absolute(source),
            "joins_s": list(out.joins_s),
            "adapters": list(out.adapters),
            "sample_rate": out.sample_rate,
            "num_samples": int(out.audio.shape[-1]),
            "compile": list(compiled),
            "draft": draft,
            "output": {"format": format_name, "subtype": subtype, **processing.as_dict()},
            "longplay_version": __version__,
            "settings": record,
        }
        with atomic_output_paths(path.with_suffix(".json"), path) as (json_tmp, audio_tmp):
            json_tmp.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
            save_audio(audio_tmp, audio, out.sample_rate, subtype=subtype, atomic=False)
        print(f"wrote {path} ({out.audio.shape[-1] / out.sample_rate:.2f} s, seed {seed})")


def run_generate(args: argparse.Namespace) -> int:
    kwargs: dict = {"duration_s": args.duration}
    if args.loop:
        kwargs["loop"] = True
        if (args.bpm is None) != (args.bars is None):
            raise ValueError("--bpm and --bars go together (the loop's length); or give "
                             "--duration")
        if args.bpm is not None:
            if args.duration is not None:
                raise ValueError("give --duration or --bpm with --bars, not both")
            kwargs["duration_s"] = loop_duration_s(args.bpm, args.bars, args.beats_per_bar)
    elif args.bpm is not None or args.bars is not None:
        raise ValueError("--bpm and --bars set the length of a --loop")
    return _run(args, args.prompt, None, **kwargs)


def run_extend(args: argparse.Namespace) -> int:
    if not args.seconds > 0:
        raise ValueError(f"--seconds must be > 0, got {args.seconds:g}")
    return _run(args, args.prompt, args.input, duration_from_input=args.seconds,
                inpaint_edge_s=args.edge, resample_steps=args.resample_steps,
                jump_length=args.jump_length, splice=not args.no_splice)


def run_inpaint(args: argparse.Namespace) -> int:
    if not 0 <= args.start < args.end:
        raise ValueError(f"need 0 <= --start < --end, got {args.start:g} and {args.end:g}")
    return _run(args, args.prompt, args.input, inpaint_regions=[(args.start, args.end)],
                inpaint_edge_s=args.edge, resample_steps=args.resample_steps,
                jump_length=args.jump_length, splice=not args.no_splice)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run_info(args: argparse.Namespace) -> int:
    args.model = model_or_demo(args.model)
    model = load_diffusion_model(args.model, load_text_encoder=False)
    cfg = model.config
    text = cfg.conditioning.text
    info = {
        "path": str(args.model),
        "objective": cfg.objective,
        "sample_rate": cfg.sample_rate,
        "audio_channels": cfg.audio_channels,
        "window_frames": cfg.window_frames,
        "window_seconds": round(cfg.max_duration_s, 3),
        "latent_rate_hz": round(cfg.vae.latent_rate, 3),
        "vae": {"latent_dim": cfg.vae.latent_dim, "hop_length": cfg.vae.hop_length,
                "channels": cfg.vae.encoder_channels, "channel_mults": list(cfg.vae.channel_mults),
                "parameters": _count(model.vae)},
        "dit": {"width": cfg.dit.width, "depth": cfg.dit.depth, "heads": cfg.dit.num_heads,
                "rotary_dim": model.dit.rotary_dim, "qk_norm": cfg.dit.qk_norm,
                "context_width": model.dit.blocks[0].cross_attn.kv.in_features,
                "parameters": _count(model.dit)},
        "conditioning": {
            "cond_dim": cfg.conditioning.cond_dim,
            "text_encoder": None if text is None else {
                "kind": text.kind, "name": text.name, "max_length": text.max_length,
                "layer": text.layer},
            "timing": {cid: [t.min_seconds, t.max_seconds] for cid, t in cfg.conditioning.timing},
            "cross_attention": list(cfg.conditioning.cross_attention_ids),
            "global": list(cfg.conditioning.global_ids),
            "parameters": _count(model.conditioner),
        },
    }
    defaults = sampling_defaults(cfg)
    info["sampling"] = {"sampler": defaults.sampler, "steps": defaults.num_inference_steps,
                        "guidance_scale": defaults.guidance_scale,
                        "guidance_interval": (None if defaults.guidance_interval is None
                                              else list(defaults.guidance_interval)),
                        "sigma_min": defaults.sigma_min, "sigma_max": defaults.sigma_max,
                        "window": cfg.window}
    info["parameters_total"] = (info["vae"]["parameters"] + info["dit"]["parameters"]
                                + info["conditioning"]["parameters"])
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.model}: {cfg.objective} latent diffusion, {cfg.sample_rate} Hz, "
          f"{cfg.audio_channels} channels")
    print(f"  window      {cfg.window_frames} latent frames = {cfg.max_duration_s:.2f} s "
          f"(latent rate {cfg.vae.latent_rate:.3f} Hz)")
    v, d, c = info["vae"], info["dit"], info["conditioning"]
    print(f"  VAE         {v['parameters'] / 1e6:.2f}M parameters, {v['latent_dim']} latent "
          f"channels, hop {v['hop_length']}")
    print(f"  DiT         {d['parameters'] / 1e6:.2f}M parameters, width {d['width']}, depth "
          f"{d['depth']}, {d['heads']} heads, rotary {d['rotary_dim']}, context "
          f"{d['context_width']}{', q/k norm' if d['qk_norm'] else ''}")
    text_desc = ("none" if text is None else
                 f"{text.kind} '{text.name}' ({text.max_length} tokens, layer {text.layer}; "
                 "weights loaded separately)")
    print(f"  conditioner {c['parameters'] / 1e6:.2f}M parameters, text {text_desc}, timing "
          f"{', '.join(f'{k} [{a:g}, {b:g}]' for k, (a, b) in c['timing'].items())}")
    print(f"  total       {info['parameters_total'] / 1e6:.2f}M parameters (without the text "
          "encoder)")
    sm = info["sampling"]
    interval = ("every step" if sm["guidance_interval"] is None
                else "sigma in ({:g}, {:g}]".format(*sm["guidance_interval"]))
    grid = ("" if sm["sigma_min"] is None
            else f" (sigma {sm['sigma_max']:g} down to {sm['sigma_min']:g})")
    print(f"  defaults    {sm['steps']} steps of {sm['sampler']}{grid}, guidance "
          f"{sm['guidance_scale']:g} ({interval}), window {sm['window']}")
    return 0

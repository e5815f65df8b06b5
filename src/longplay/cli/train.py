"""``longplay train vae|clap|dit|distill|lora CONFIG`` and ``longplay export RUN -o OUT``."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from longplay.adapters import load_adapter, parse_adapter_argument
from longplay.assets import model_or_demo
from longplay.config import (
    CLAPTrainConfig,
    ConfigError,
    DistillTrainConfig,
    DiTTrainConfig,
    LoRATrainConfig,
    VAETrainConfig,
    load_config_file,
)

STAGES = {"vae": VAETrainConfig, "clap": CLAPTrainConfig, "dit": DiTTrainConfig,
          "distill": DistillTrainConfig, "lora": LoRATrainConfig}
"""Each stage's run config (its trainer: :func:`trainer`)."""


def trainer(stage: str):
    """The trainer of ``stage``. The training package is imported here, when a training
    command runs, not with the command line: its engine (lightning) takes seconds to
    import, which ``longplay generate`` and the other commands do not pay."""
    from longplay.training.clap import train_clap
    from longplay.training.distill import train_distill
    from longplay.training.lora import train_lora
    from longplay.training.runner import train_dit
    from longplay.training.vae import train_vae

    return {"vae": train_vae, "clap": train_clap, "dit": train_dit,
            "distill": train_distill, "lora": train_lora}[stage]


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


TEXT_ENCODER_STAGES = ("clap", "dit", "distill", "lora")
"""The stages whose config has ``text_encoder_path`` (``--text-encoder``)."""
MODEL_FIELDS = {"vae": "init_from", "dit": "init_from", "lora": "base"}
"""``--model``: the config field it sets, per stage (the model to fine-tune or adapt)."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train or fine-tune a stage on your audio")
    train.add_argument("stage", choices=tuple(STAGES))
    train.add_argument("config", type=Path, help="YAML or JSON run config (see docs/training.md)")
    train.add_argument("--data", metavar="DIR",
                       help="training data (overrides data.path): a folder of audio or "
                            "latents, or tar shards (a folder, files or fsspec URLs)")
    train.add_argument("--text-encoder", metavar="PATH",
                       help="clap, dit, distill, lora: the text encoder, a local Hugging Face "
                            "folder or a packaged encoder's name (overrides "
                            "text_encoder_path)")
    train.add_argument("--model", metavar="MODEL",
                       help="the model to start from: dit, a model folder to fine-tune, or "
                            "'demo' (sets init_from instead of preset); vae, a VAE to "
                            "fine-tune (init_from); lora, the base model to adapt (base)")
    train.add_argument("--vae", metavar="PATH",
                       help="dit from a preset: the trained VAE whose latents the DiT learns "
                            "(overrides vae_path)")
    train.add_argument("--teacher", metavar="MODEL",
                       help="distill: the model folder to distil (overrides teacher)")
    train.add_argument("-o", "--run-dir", type=Path, default=None,
                       help="run folder (default runs/<stage>-<config name>)")
    train.add_argument("--devices", type=positive_int, default=None, metavar="N",
                       help="devices per node")
    train.add_argument("--num-nodes", type=positive_int, default=None, metavar="N")
    train.add_argument("--strategy", choices=("auto", "ddp", "fsdp"), default=None)
    train.add_argument("--max-steps", type=positive_int, default=None, metavar="N",
                       help="train until this optimiser step (overrides trainer.max_steps)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --run-dir from its last checkpoint")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(run=run_train)

    export = sub.add_parser("export", help="write a training run as a model folder")
    export.add_argument("run_path", type=Path, metavar="RUN", help="run folder or .ckpt file")
    export.add_argument("-o", "--output", type=Path, required=True, help="model folder to write")
    export.add_argument("--no-ema", action="store_true", help="export the raw weights")
    export.add_argument("--copy-text-encoder", action="store_true",
                        help="copy the text encoder into the folder instead of referencing it")
    export.add_argument("--merge-lora", action="store_true",
                        help="a LoRA run or adapter folder: write its base model with the "
                             "adapter merged (a plain model folder) instead of the adapter")
    export.add_argument("--model", metavar="MODEL",
                        help="with --merge-lora: the base model (default: the run's; "
                             "required for an adapter folder)")
    export.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                        help="with --merge-lora: another adapter to merge, with its strength "
                             "(repeatable)")
    export.set_defaults(run=run_export)


def _cli_path(value: str) -> str:
    """A model path given on the command line, made absolute when it exists (relative
    paths on the command line are relative to the working directory, not to the config
    file); names (``demo``, a packaged text encoder) and URLs as given."""
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


def _cli_data_path(value: str) -> str:
    """``--data``: each comma-separated entry (a folder, shard file or glob pattern) made
    absolute; URLs as given."""
    return ",".join(entry if "://" in entry else str(Path(entry).expanduser().absolute())
                    for entry in (e.strip() for e in value.split(",")) if entry)


def _only_for(option: str, stages: tuple[str, ...], stage: str) -> None:
    if stage not in stages:
        raise ConfigError(f"{option} is for `longplay train {'|'.join(stages)}`, not {stage}")


def _override(config, args: argparse.Namespace):
    data = (config.data if args.data is None
            else replace(config.data, path=_cli_data_path(args.data)))
    t = config.trainer
    trainer = replace(
        t,
        devices=t.devices if args.devices is None else args.devices,
        num_nodes=t.num_nodes if args.num_nodes is None else args.num_nodes,
        strategy=t.strategy if args.strategy is None else args.strategy,
        max_steps=t.max_steps if args.max_steps is None else args.max_steps)
    config = replace(config, data=data, trainer=trainer)
    if args.text_encoder is not None:
        _only_for("--text-encoder", TEXT_ENCODER_STAGES, args.stage)
        config = replace(config, text_encoder_path=_cli_path(args.text_encoder))
    if args.teacher is not None:
        _only_for("--teacher", ("distill",), args.stage)
        config = replace(config, teacher=_cli_path(args.teacher))
    if args.vae is not None:
        _only_for("--vae", ("dit",), args.stage)
        config = replace(config, vae_path=_cli_path(args.vae))
    if args.model is not None:
        _only_for("--model", tuple(MODEL_FIELDS), args.stage)
        model = _cli_path(str(model_or_demo(Path(args.model))))
        if args.stage == "lora":
            config = replace(config, base=model)
        else:  # a model to fine-tune instead of a preset from scratch
            config = replace(config, init_from=model, preset=None)
    elif isinstance(config, LoRATrainConfig) and config.base == "demo":
        config = replace(config, base=str(model_or_demo(Path("demo"))))
    return config


def run_train(args: argparse.Namespace) -> int:
    train = trainer(args.stage)
    config = _override(load_config_file(args.config, STAGES[args.stage]), args)
    run_dir = args.run_dir or Path("runs") / f"{args.stage}-{args.config.stem}"
    last = train(config, run_dir, resume=args.resume, enable_progress_bar=not args.no_progress)
    print(f"run {run_dir}: last checkpoint {last}; export it with "
          f"`longplay export {run_dir} -o MODEL_DIR`")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from longplay.training.export import export_run  # the training package: see trainer()

    adapters = []
    for entry in args.lora:
        path, scale = parse_adapter_argument(entry)
        adapters.append((load_adapter(path), scale))
    base = None if args.model is None else model_or_demo(Path(args.model))
    folder = export_run(args.run_path, args.output, use_ema=not args.no_ema,
                        copy_text_encoder=args.copy_text_encoder, merge_lora=args.merge_lora,
                        base=base, adapters=adapters)
    print(f"wrote {folder}")
    return 0

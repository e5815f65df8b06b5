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
from longplay.training.clap import train_clap
from longplay.training.distill import train_distill
from longplay.training.export import export_run
from longplay.training.lora import train_lora
from longplay.training.runner import train_dit
from longplay.training.vae import train_vae

STAGES = {"vae": (VAETrainConfig, train_vae), "clap": (CLAPTrainConfig, train_clap),
          "dit": (DiTTrainConfig, train_dit), "distill": (DistillTrainConfig, train_distill),
          "lora": (LoRATrainConfig, train_lora)}
"""Each stage's run config and trainer."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train or fine-tune a stage on your audio")
    train.add_argument("stage", choices=tuple(STAGES))
    train.add_argument("config", type=Path, help="YAML or JSON run config (see docs/training.md)")
    train.add_argument("--data", metavar="DIR", help="training data (overrides data.path)")
    train.add_argument("--teacher", metavar="MODEL",
                       help="distill: the model folder to distil (overrides teacher)")
    train.add_argument("--model", metavar="MODEL",
                       help="lora: the base model folder to adapt, or 'demo' (overrides base)")
    train.add_argument("-o", "--run-dir", type=Path, default=None,
                       help="run folder (default runs/<stage>-<config name>)")
    train.add_argument("--devices", type=int, default=None, help="devices per node")
    train.add_argument("--num-nodes", type=int, default=None)
    train.add_argument("--strategy", choices=("auto", "ddp", "fsdp"), default=None)
    train.add_argument("--max-steps", type=int, default=None)
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


def _override(config, args: argparse.Namespace):
    data = config.data if args.data is None else replace(config.data, path=args.data)
    t = config.trainer
    trainer = replace(
        t,
        devices=t.devices if args.devices is None else args.devices,
        num_nodes=t.num_nodes if args.num_nodes is None else args.num_nodes,
        strategy=t.strategy if args.strategy is None else args.strategy,
        max_steps=t.max_steps if args.max_steps is None else args.max_steps)
    config = replace(config, data=data, trainer=trainer)
    if args.teacher is not None:
        if not isinstance(config, DistillTrainConfig):
            raise ConfigError(f"--teacher is for `longplay train distill`, not {args.stage}")
        config = replace(config, teacher=args.teacher)
    if args.model is not None:
        if not isinstance(config, LoRATrainConfig):
            raise ConfigError(f"--model is for `longplay train lora`, not {args.stage}")
        config = replace(config, base=str(model_or_demo(Path(args.model))))
    elif isinstance(config, LoRATrainConfig) and config.base == "demo":
        config = replace(config, base=str(model_or_demo(Path("demo"))))
    return config


def run_train(args: argparse.Namespace) -> int:
    config_type, train = STAGES[args.stage]
    config = _override(load_config_file(args.config, config_type), args)
    run_dir = args.run_dir or Path("runs") / f"{args.stage}-{args.config.stem}"
    last = train(config, run_dir, resume=args.resume, enable_progress_bar=not args.no_progress)
    print(f"run {run_dir}: last checkpoint {last}; export it with "
          f"`longplay export {run_dir} -o MODEL_DIR`")
    return 0


def run_export(args: argparse.Namespace) -> int:
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

"""Building and running a training job: model, data, Lightning Trainer, checkpoints,
logs and resumption. A run folder holds ``config.json`` (the resolved config),
``checkpoints/`` (``last.ckpt`` and periodic ``step=N.ckpt``), ``logs/`` (CSV, and
TensorBoard when installed) and ``demos/``."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from longplay.atomic import write_json_atomic
from longplay.builders import (
    DiffusionModel,
    build_diffusion_model,
    build_text_encoder,
    build_vae,
    seeded,
    with_inpainting_input,
)
from longplay.checkpoints import load_diffusion_model, load_vae
from longplay.checkpoints.files import read_json
from longplay.conditioning import PACKAGED_TEXT_ENCODERS, HFTextEncoder, resolve_text_encoder
from longplay.config import (
    ConfigError,
    DiffusionModelConfig,
    DiTTrainConfig,
    dataclass_to_dict,
    model_preset,
)
from longplay.data import (
    AudioFolderDataset,
    LatentDataset,
    PromptBuilder,
    collate_audio,
    collate_latents,
)
from longplay.errors import TextEncoderError
from longplay.training.demos import DemoCallback
from longplay.training.dit import DiTTrainingModule
from longplay.training.ema import EMACallback

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


def build_dit_model(config: DiTTrainConfig) -> DiffusionModel:
    """The model to train: a folder to fine-tune, or a preset built from scratch (its
    initialisation seeded with ``trainer.seed`` in a forked random state); with
    ``inpaint``, given an inpainting model's extra input (zero-initialised)."""
    model = _base_model(config)
    return with_inpainting_input(model) if config.inpaint else model


def _base_model(config: DiTTrainConfig) -> DiffusionModel:
    if config.init_from is not None:
        return load_model_to_train(config.init_from, config.text_encoder_path)
    mconfig: DiffusionModelConfig = model_preset(config.preset)
    with seeded(config.trainer.seed):
        if config.vae_path is not None:
            vae = load_vae(config.vae_path)
            if vae.latent_dim != mconfig.vae.latent_dim:
                raise ConfigError(f"the VAE at {config.vae_path} has {vae.latent_dim} latent "
                                  f"channels; preset {config.preset!r} expects "
                                  f"{mconfig.vae.latent_dim}")
        else:
            logger.warning("no vae_path: the DiT learns the latents of an untrained %r VAE",
                           config.preset)
            vae = build_vae(mconfig.vae)
        text_encoder = None
        if mconfig.conditioning.text is not None:
            mconfig, text_encoder = _with_text_encoder(mconfig, config)
        return build_diffusion_model(mconfig, vae=vae, text_encoder=text_encoder)


def load_model_to_train(path: str | Path, text_encoder_path: str | None) -> DiffusionModel:
    """A model folder to start training from, with its text encoder loaded and recorded
    by its resolved location (the folder's own path may be relative to the folder), so
    that the exported model finds it."""
    model = load_diffusion_model(path, text_encoder_path=text_encoder_path)
    text = model.config.conditioning.text
    if text is not None:
        if model.text_encoder is None:
            raise ConfigError(f"the model {path} needs its text encoder: set "
                              "text_encoder_path")
        text = replace(text, model_path=str(model.text_encoder.path.resolve()))
        model.config = replace(model.config, conditioning=replace(
            model.config.conditioning, text=text))
    return model


def _with_text_encoder(mconfig: DiffusionModelConfig,
                       config: DiTTrainConfig) -> tuple[DiffusionModelConfig, HFTextEncoder]:
    """The preset with the text encoder of the run config, and that encoder loaded."""
    text = mconfig.conditioning.text
    if config.text_encoder_path is None:
        raise ConfigError("text_encoder_path is required: a local Hugging Face folder of the "
                          f"text encoder ({text.kind} '{text.name}') or the name of a packaged "
                          f"one ({', '.join(PACKAGED_TEXT_ENCODERS)})")
    try:
        found = resolve_text_encoder(config.text_encoder_path)
    except TextEncoderError as err:
        raise ConfigError(f"text_encoder_path: {err}") from None
    # Kind and width from the encoder's config.json, without loading its weights. A
    # packaged encoder is recorded by name, so that the exported model stays portable.
    encoder_config = read_json(found.path / "config.json")
    kind = "t5" if encoder_config.get("model_type") == "t5" else "hf"
    width = int(encoder_config.get("d_model") or encoder_config["hidden_size"])
    name = text.name if kind == "t5" else (found.packaged_name or found.path.name)
    text = replace(text, kind=kind, name=name, feature_dim=width,
                   layer=text.layer if config.text_layer is None else config.text_layer,
                   model_path=found.packaged_name or str(found.path.resolve()),
                   projection=text.projection or width != mconfig.conditioning.cond_dim)
    mconfig = replace(mconfig, conditioning=replace(mconfig.conditioning, text=text))
    return mconfig, build_text_encoder(text, found.path)


def build_audio_dataset(config, sample_rate: int, channels: int, num_samples: int):
    """An audio-folder dataset of ``num_samples`` windows, and its collate function."""
    data = config.data
    if data.path is None:
        raise ConfigError("no training data: set data.path in the config or pass --data DIR")
    if data.kind != "audio":
        raise ConfigError(f"this stage trains on audio: data.kind must be 'audio', not "
                          f"{data.kind!r}")
    dataset = AudioFolderDataset(data.path, sample_rate=sample_rate, channels=channels,
                                 num_samples=num_samples, random_crop=data.random_crop,
                                 phase_flip=data.phase_flip, prompt_builder=PromptBuilder(),
                                 seed=config.trainer.seed, min_duration_s=data.min_duration_s)
    if len(dataset) == 0:
        raise ConfigError(f"no usable training audio in {data.path}")
    return dataset, collate_audio


def build_dataset(config: DiTTrainConfig, model_config: DiffusionModelConfig):
    """(dataset with example(index, position), collate function) for the DiT."""
    data = config.data
    if data.path is None:
        raise ConfigError("no training data: set data.path in the config or pass --data DIR")
    seed = config.trainer.seed
    frames = model_config.window_frames
    if config.window_frames is not None:
        if config.window_frames > frames:
            raise ConfigError(f"window_frames {config.window_frames} exceeds the model's window "
                              f"of {frames} latent frames")
        frames = config.window_frames
    if data.kind == "audio":
        dataset = AudioFolderDataset(
            data.path, sample_rate=model_config.sample_rate, channels=model_config.audio_channels,
            num_samples=frames * model_config.vae.hop_length, random_crop=data.random_crop,
            phase_flip=data.phase_flip, prompt_builder=PromptBuilder(), seed=seed,
            min_duration_s=data.min_duration_s)
        collate = collate_audio
    elif data.kind == "latents":
        dataset = LatentDataset(data.path, num_frames=frames,
                                random_crop=data.random_crop, prompt_builder=PromptBuilder(),
                                seed=seed, latent_rate=model_config.vae.latent_rate)
        collate = collate_latents
    else:
        raise ConfigError(f"data.kind {data.kind!r} is not one of 'audio', 'latents'")
    if len(dataset) == 0:
        raise ConfigError(f"no usable training examples in {data.path}")
    return dataset, collate


def _loggers(run_dir: Path) -> list:
    # A new version folder per start, so that a resumed run keeps the earlier logs.
    loggers: list = [CSVLogger(str(run_dir), name="logs")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(run_dir), name="tensorboard"))
    except (ImportError, ModuleNotFoundError):
        pass
    return loggers


def _strategy(t):
    """Lightning's strategy for ``trainer.strategy``. "fsdp" is FSDP2 (``fully_shard``
    over a data-parallel mesh of every process, :meth:`TrainingModule.configure_model`)
    through Lightning's ModelParallelStrategy, which also runs on CPUs (gloo); checkpoints
    are gathered into one file on rank 0, like the other strategies'."""
    if t.strategy != "fsdp":
        return t.strategy
    from lightning.pytorch.strategies import ModelParallelStrategy

    return ModelParallelStrategy(data_parallel_size=t.devices * t.num_nodes,
                                 tensor_parallel_size=1, save_distributed_checkpoint=False)


def make_trainer(config, run_dir: Path, callbacks: list | None = None,
                 enable_progress_bar: bool = True) -> L.Trainer:
    t = config.trainer
    checkpoints = ModelCheckpoint(dirpath=str(run_dir / CHECKPOINT_DIR),
                                  filename="step={step}", auto_insert_metric_name=False,
                                  every_n_train_steps=t.checkpoint_every_n_steps,
                                  save_top_k=-1, save_last=True,
                                  # Always checkpoints/last.ckpt, also when a resumed run
                                  # changes the checkpoint interval (no last-v1.ckpt).
                                  enable_version_counter=False)
    return L.Trainer(
        max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=_strategy(t), precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val, log_every_n_steps=t.log_every_n_steps,
        callbacks=[checkpoints, *(callbacks or [])], logger=_loggers(run_dir),
        enable_progress_bar=enable_progress_bar, enable_model_summary=False,
        default_root_dir=str(run_dir), use_distributed_sampler=False,
        limit_val_batches=0, num_sanity_val_steps=0)


def last_checkpoint(run_dir: Path) -> Path | None:
    path = run_dir / CHECKPOINT_DIR / LAST
    return path if path.exists() else None


def _is_first_process() -> bool:
    """False in the processes Lightning's DDP launcher starts for ranks > 0 (they see the
    run folder after rank 0 may already have written to it)."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK",
                                                                              "0")) == 0


def prepare_run(config, run_dir: str | Path, resume: bool) -> tuple[Path, Path | None]:
    """Check the run folder, write the resolved config; returns (run_dir, checkpoint)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = last_checkpoint(run_dir) if resume else None
    if resume and ckpt is None:
        raise FileNotFoundError(f"--resume: no {CHECKPOINT_DIR}/{LAST} in {run_dir}")
    if not resume and last_checkpoint(run_dir) is not None and _is_first_process():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or "
                              "choose another folder")
    resolved = dataclass_to_dict(config)
    logger.info("resolved config:\n%s", json.dumps(resolved, indent=2))
    if _is_first_process():
        write_json_atomic(run_dir / "config.json", resolved)
    return run_dir, ckpt


def fit(module, config, run_dir: Path, ckpt: Path | None, callbacks: list,
        enable_progress_bar: bool) -> Path:
    """Train ``module`` with EMA and checkpoints; returns the last checkpoint."""
    e = config.ema
    callbacks = [EMACallback(e.max_decay, e.power, e.inv_gamma), *callbacks]
    trainer = make_trainer(config, run_dir, callbacks, enable_progress_bar)
    trainer.fit(module, ckpt_path=str(ckpt) if ckpt else None)
    return run_dir / CHECKPOINT_DIR / LAST


def train_dit(config: DiTTrainConfig, run_dir: str | Path, *, resume: bool = False,
              enable_progress_bar: bool = True, extra_callbacks: list | None = None) -> Path:
    """Train (or resume) a DiT run in ``run_dir``; returns the last checkpoint."""
    run_dir, ckpt = prepare_run(config, run_dir, resume)
    model = build_dit_model(config)
    dataset, collate = build_dataset(config, model.config)
    module = DiTTrainingModule(config, model, dataset, collate)
    callbacks = list(extra_callbacks or [])
    if config.trainer.demo_every_n_steps > 0:
        callbacks.append(DemoCallback(run_dir / "demos", config.demo,
                                      config.trainer.demo_every_n_steps))
    return fit(module, config, run_dir, ckpt, callbacks, enable_progress_bar)

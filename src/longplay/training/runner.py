"""Building and running a training job: model, data, Lightning Trainer, checkpoints,
logs and resumption. A run folder holds ``config.json`` (the resolved config),
``checkpoints/`` (``last.ckpt`` and periodic ``step=N.ckpt``, see
:mod:`longplay.training.checkpointing`), ``logs/`` (CSV, and TensorBoard when installed)
and ``demos/``.

A run is checked before anything is written: the run folder, the checkpoint to resume,
the model and the data are all settled first (:func:`prepare_run`, then the trainers
build model and data), and only :func:`fit` creates the folder and its files."""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
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
    WINDOW_QUANTUM_FRAMES,
    ConfigError,
    DiffusionModelConfig,
    DiTTrainConfig,
    dataclass_to_dict,
    model_preset,
)
from longplay.config.training import DATA_KINDS
from longplay.data import (
    AudioFolderDataset,
    LatentDataset,
    PromptBuilder,
    collate_audio,
    collate_latents,
)
from longplay.data.shards import ShardAudioDataset, find_shards
from longplay.errors import TextEncoderError
from longplay.training.checkpointing import (
    CHECKPOINT_DIR,
    LAST,
    AtomicCheckpointIO,
    RunCheckpoints,
    holds_checkpoints,
    is_first_process,
    last_checkpoint,
    resume_checkpoint,
)
from longplay.training.demos import DemoCallback
from longplay.training.dit import DiTTrainingModule
from longplay.training.ema import EMACallback

logger = logging.getLogger(__name__)

__all__ = ["AUDIO_KINDS", "CHECKPOINT_DIR", "LAST", "build_audio_dataset", "build_dataset",
           "build_dit_model", "fit", "last_checkpoint", "load_model_to_train", "make_trainer",
           "prepare_run", "train_dit"]

AUDIO_KINDS = ("audio", "shards")
"""The ``data.kind`` values (of :data:`~longplay.config.training.DATA_KINDS`) that hold
audio: an audio folder, or tar shards of one (``longplay data pack``). The VAE and CLAP
trainers take only these; the DiT-based ones also take pre-encoded latents."""


def build_dit_model(config: DiTTrainConfig) -> DiffusionModel:
    """The model to train: a folder to fine-tune, or a preset built from scratch (its
    initialisation seeded with ``trainer.seed`` in a forked random state); with
    ``inpaint``, given an inpainting model's extra input (zero-initialised)."""
    model = _base_model(config)
    return with_inpainting_input(model) if config.inpaint else model


def _base_model(config: DiTTrainConfig) -> DiffusionModel:
    if config.init_from is not None:
        if config.vae_path is not None:
            raise ConfigError(f"vae_path ({config.vae_path}) is for a DiT trained from a preset; "
                              f"the model folder to fine-tune ({config.init_from}, init_from or "
                              "--model) brings its own VAE: remove vae_path (or --vae)")
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
            if is_first_process():
                logger.warning("no vae_path: the DiT learns the latents of an untrained %r "
                               "VAE", config.preset)
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


def _audio_windows(config, sample_rate: int, channels: int, num_samples: int):
    """Random windows of ``num_samples`` from an audio folder or tar shards (``data.kind``
    "audio" or "shards"), cut, timed and prompted the same way for both."""
    data = config.data
    if data.short_crop_probability > 0 or data.short_crop_lengths != "uniform":
        # the silence that follows a short piece is the VAE's latent of silence
        raise ConfigError("data.short_crop_probability and data.short_crop_lengths need "
                          "data.kind 'latents' (pre-encode the audio with `longplay data "
                          "encode`), or remove them")
    if data.window_frames_min is not None or data.window_full_share > 0:
        raise ConfigError("data.window_frames_min and data.window_full_share need data.kind "
                          "'latents' (pre-encode the audio with `longplay data encode`), or "
                          "remove them")
    options = dict(sample_rate=sample_rate, channels=channels, num_samples=num_samples,
                   random_crop=data.random_crop, phase_flip=data.phase_flip,
                   prompt_builder=PromptBuilder(), seed=config.trainer.seed,
                   min_duration_s=data.min_duration_s)
    if data.kind == "audio":
        try:
            return AudioFolderDataset(data.path, **options)
        except ValueError as err:
            if Path(data.path).is_dir() and any(Path(data.path).glob("*.tar")):
                raise ConfigError(f"{err} {data.path} holds tar shards: set data.kind to "
                                  "'shards' to train on them") from None
            raise
    try:
        urls = find_shards(data.path)
    except FileNotFoundError as err:
        raise ConfigError(f"data.path (kind shards): {err}") from None
    return ShardAudioDataset(urls, **options)


def _check_data(config, kinds: tuple[str, ...]) -> None:
    data = config.data
    if data.path is None:
        raise ConfigError("no training data: set data.path in the config or pass --data DIR")
    if data.kind not in kinds:
        raise ConfigError(f"data.kind {data.kind!r} is not one of "
                          f"{', '.join(repr(k) for k in kinds)}" +
                          (" (this stage trains on audio)" if "latents" not in kinds else ""))


def build_audio_dataset(config, sample_rate: int, channels: int, num_samples: int):
    """An audio-folder or tar-shard dataset of ``num_samples`` windows, and its collate
    function (the VAE and CLAP trainers)."""
    _check_data(config, AUDIO_KINDS)
    dataset = _audio_windows(config, sample_rate, channels, num_samples)
    if len(dataset) == 0:
        raise ConfigError(f"no usable training audio in {config.data.path}")
    return dataset, collate_audio


def build_dataset(config: DiTTrainConfig, model_config: DiffusionModelConfig):
    """(dataset with example(index, position), collate function) for the DiT: audio
    windows (encoded by the VAE at each step) or pre-encoded latents."""
    _check_data(config, DATA_KINDS)
    data = config.data
    seed = config.trainer.seed
    frames = model_config.window_frames
    if config.window_frames is not None:
        if config.window_frames > frames:
            raise ConfigError(f"window_frames {config.window_frames} exceeds the model's window "
                              f"of {frames} latent frames")
        frames = config.window_frames
    if data.kind in AUDIO_KINDS:
        dataset = _audio_windows(config, model_config.sample_rate, model_config.audio_channels,
                                 frames * model_config.vae.hop_length)
        collate = collate_audio
    else:
        dataset = LatentDataset(data.path, num_frames=frames,
                                random_crop=data.random_crop, prompt_builder=PromptBuilder(),
                                seed=seed, latent_rate=model_config.vae.latent_rate,
                                short_crop_probability=data.short_crop_probability,
                                short_crop_lengths=data.short_crop_lengths,
                                min_frames=data.window_frames_min,
                                full_window_share=data.window_full_share,
                                group_size=config.trainer.batch_size,
                                frame_multiple=WINDOW_QUANTUM_FRAMES)
        collate = collate_latents
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


def _strategy(t, alternating: bool = False):
    """Lightning's strategy for ``trainer.strategy``. "fsdp" is FSDP2 (``fully_shard``
    over a data-parallel mesh of every process, :meth:`TrainingModule.configure_model`)
    through Lightning's ModelParallelStrategy, which also runs on CPUs (gloo); checkpoints
    are gathered into one file on rank 0, like the other strategies'. ``alternating``: the
    module's steps each use only some of its parameters (the VAE's generator and
    discriminator steps), so DDP must not wait for the gradients of the others."""
    if t.strategy == "ddp" and alternating:
        return "ddp_find_unused_parameters_true"
    if t.strategy != "fsdp":
        return t.strategy
    from lightning.pytorch.strategies import ModelParallelStrategy

    return ModelParallelStrategy(data_parallel_size=t.devices * t.num_nodes,
                                 tensor_parallel_size=1, save_distributed_checkpoint=False)


def make_trainer(config, run_dir: Path, callbacks: list | None = None,
                 enable_progress_bar: bool = True, alternating: bool = False) -> L.Trainer:
    """Lightning's Trainer for a run; checkpoints are saved atomically in the run folder
    (:class:`~longplay.training.checkpointing.AtomicCheckpointIO`). Nothing is written
    until it trains."""
    t = config.trainer
    checkpoints = RunCheckpoints(run_dir, t.checkpoint_every_n_steps)
    try:
        return L.Trainer(
            max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices,
            num_nodes=t.num_nodes, strategy=_strategy(t, alternating), precision=t.precision,
            accumulate_grad_batches=t.accumulate_grad_batches,
            gradient_clip_val=t.gradient_clip_val, log_every_n_steps=t.log_every_n_steps,
            callbacks=[checkpoints, *(callbacks or [])], logger=_loggers(run_dir),
            plugins=[AtomicCheckpointIO()],
            enable_progress_bar=enable_progress_bar, enable_model_summary=False,
            default_root_dir=str(run_dir), use_distributed_sampler=False,
            limit_val_batches=0, num_sanity_val_steps=0)
    except MisconfigurationException as err:
        raise ConfigError(f"trainer: {err}") from None


def prepare_run(config, run_dir: str | Path, resume: bool) -> tuple[Path, Path | None]:
    """Check the run folder and choose the checkpoint to resume from, writing nothing;
    returns (run_dir, checkpoint or None). :func:`fit` creates the folder.

    Raises:
        FileExistsError: without ``resume``, the folder already holds a run.
        FileNotFoundError: with ``resume``, it holds no checkpoint.
        ConfigError: with ``resume``, the run already reached ``trainer.max_steps``.
        CheckpointError: with ``resume``, no checkpoint of the run can be read safely.
    """
    run_dir = Path(run_dir)
    ckpt = None
    if resume:
        ckpt, step = resume_checkpoint(run_dir)
        if step >= config.trainer.max_steps:
            raise ConfigError(f"run {run_dir} already reached step {step} of max_steps "
                              f"{config.trainer.max_steps}: nothing to train; raise --max-steps "
                              "(or trainer.max_steps) to continue it")
    elif holds_checkpoints(run_dir) and is_first_process():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or "
                              "choose another folder")
    if is_first_process():
        logger.info("resolved config:\n%s", json.dumps(dataclass_to_dict(config), indent=2))
    return run_dir, ckpt


LIGHTNING_NOISE = (
    r"💡 Tip",
    r"TPU available: False",
    r"GPU available but not used",
    r"Found \d+ module\(s\) in eval mode",  # the frozen VAE, text encoder, teacher: on purpose
    r".*does not have many workers",  # data.num_workers is the user's setting
    r".*LeafSpec.* is deprecated",  # inside Lightning's use of torch's pytree
    r"Checkpoint directory .* exists and is not empty",  # resuming: longplay checked it
    r"The dirpath has changed from",  # a moved run folder: nothing of it is lost
    r"Be aware that when using `ckpt_path`",  # a resumed run with another checkpoint interval
    # The VAE's checkpoints hold the state after its step, which resumes exactly (tested).
    r"Using ModelCheckpoint with manual optimization",
)
"""Lightning's tips and warnings that do not concern a longplay user; its other messages
(devices used, distributed set-up, real warnings) are kept."""
_NOISE = re.compile("|".join(f"(?:{p})" for p in LIGHTNING_NOISE))
_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero",
                      "lightning.fabric.utilities.rank_zero")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _NOISE.match(record.getMessage())


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """While training: Lightning's tips and noise (:data:`LIGHTNING_NOISE`) are dropped,
    from its log messages and its warnings."""
    drop = _DropNoise()
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    for log in loggers:
        log.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for pattern in LIGHTNING_NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for log in loggers:
            log.removeFilter(drop)


def fit(module, config, run_dir: Path, ckpt: Path | None, callbacks: list,
        enable_progress_bar: bool) -> Path:
    """Train ``module`` with EMA and checkpoints; returns the last checkpoint. The run
    folder and its ``config.json`` are written here, once everything is ready."""
    e = config.ema
    callbacks = [EMACallback(e.max_decay, e.power, e.inv_gamma), *callbacks]
    with quiet_lightning():
        trainer = make_trainer(config, run_dir, callbacks, enable_progress_bar,
                               alternating=getattr(module, "alternating", False))
        if is_first_process():
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(run_dir / "config.json", dataclass_to_dict(config))
        # weights_only: a checkpoint never runs pickled code (it was checked by
        # prepare_run, and Lightning reads it the same way).
        trainer.fit(module, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
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

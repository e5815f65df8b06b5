"""Training the VAE (SYSTEM.md section 2): reconstruction (multi-resolution STFT on
mid/side and L/R with A-weighting, plus an optional multi-scale mel loss), KL, and from
``adversarial_start_step`` on the multi-scale STFT discriminators with hinge and
feature-matching losses. Optimiser steps alternate: even steps update the autoencoder,
odd steps the discriminators.

Shape legend: B batch, C audio channels, N samples.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from longplay.autoencoder import (
    AudioVAE,
    MultiScaleSTFTDiscriminator,
    VAELosses,
    VAELossWeights,
)
from longplay.autoencoder.spectral import init_linear_paths
from longplay.builders import build_discriminator, build_vae, seeded
from longplay.checkpoints import read_vae_weights, save_vae
from longplay.checkpoints.vae import vae_from_weights
from longplay.config import (
    ConfigError,
    VAEConfig,
    VAETrainConfig,
    dataclass_from_dict,
    dataclass_to_dict,
    vae_preset,
)
from longplay.training.base import PositionedBatch, TrainingModule, adamw_inverse_lr
from longplay.training.runner import build_audio_dataset, fit, prepare_run

logger = logging.getLogger(__name__)

LINEAR_INIT_WINDOWS = 256
"""Training windows that ``init: pca`` fits the linear paths to (4096 latent frames at
the demo recipe's 32768 samples)."""


class VAETrainingModule(TrainingModule):
    stage = "vae"

    def __init__(self, config: VAETrainConfig, vae: AudioVAE, vae_config: VAEConfig,
                 discriminator: MultiScaleSTFTDiscriminator, dataset, collate) -> None:
        super().__init__(config, dataset, collate)
        self.automatic_optimization = False  # generator and discriminator alternate
        self.alternating = True  # so each step uses only part of the parameters (DDP)
        self.vae_config = vae_config
        self.net = vae.train()
        if config.freeze_encoder:
            self.net.encoder.requires_grad_(False)
        self.init_ema()
        self.discriminator = discriminator
        self.losses = VAELosses(vae_config.sample_rate)
        self.weights = VAELossWeights(*config.loss_weights, mel=config.mel_loss_weight,
                                      low_band=config.low_band_loss_weight,
                                      long_window=config.long_window_loss_weight)

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        g_opt, g_schedule = adamw_inverse_lr(params, self.config.optimizer)
        d_opt, d_schedule = adamw_inverse_lr(self.discriminator.parameters(),
                                             self.config.discriminator_optimizer)
        return ([g_opt, d_opt], [{"scheduler": g_schedule, "interval": "step"},
                                 {"scheduler": d_schedule, "interval": "step"}])

    def training_step(self, positioned: PositionedBatch, batch_idx: int) -> None:
        g = self.step_generator(positioned.positions)
        audio = positioned.batch.audio.to(self.device)  # [B, C, N]
        adversarial = self.global_step >= self.config.adversarial_start_step
        train_discriminator = adversarial and self.global_step % 2 == 1
        (g_opt, d_opt), (g_schedule, d_schedule) = self.optimizers(), self.lr_schedulers()
        with torch.set_grad_enabled(not train_discriminator):
            posterior = self.net.encode(audio, chunk_frames=None)
            noise = torch.randn(posterior.mean.shape, generator=g).to(self.device)
            latents = (posterior.mean if self.global_step < self.config.posterior_warmup_steps
                       else posterior.sample(noise=noise))
            reconstruction = self.net.decode(latents, chunk_frames=None)
        if train_discriminator:
            loss = self.losses.discriminator_losses(audio, reconstruction,
                                                    self.discriminator).total
            optimizer, schedule, name = d_opt, d_schedule, "train/discriminator"
        else:
            losses = self.losses.generator_losses(
                audio, reconstruction, posterior, self.discriminator if adversarial else None,
                self.weights)
            loss, optimizer, schedule, name = losses.total, g_opt, g_schedule, "train/loss"
            self.log_dict({"train/reconstruction": losses.reconstruction.total,
                           "train/kl": losses.kl, "train/mel": losses.mel,
                           "train/low_band": losses.low_band,
                           "train/long_window": losses.long_window},
                          batch_size=audio.shape[0])
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        schedule.step()
        self.log(name, loss, prog_bar=True, batch_size=audio.shape[0])

    def checkpoint_metadata(self) -> dict:
        return {"vae_config": dataclass_to_dict(self.vae_config)}


def vae_config_for_training(config: VAETrainConfig) -> VAEConfig:
    """The architecture a VAE run trains: ``init_from``'s, or the ``preset``'s."""
    if config.init_from is not None:
        return read_vae_weights(config.init_from).config
    return vae_preset(config.preset)


def build_vae_for_training(
        config: VAETrainConfig,
        dataset=None) -> tuple[AudioVAE, VAEConfig, MultiScaleSTFTDiscriminator]:
    """The VAE to train (``init_from`` loaded, or the ``preset`` built from scratch with
    the ``init`` of the config) and its discriminator, initialised in that order in a
    random state forked and seeded with ``trainer.seed``. ``init: pca`` then fits the
    linear paths to ``dataset`` (:func:`fit_linear_paths`, in a random state seeded
    again); None leaves them at PyTorch's defaults, as for a run that resumes, whose
    checkpoint holds them."""
    weights = None if config.init_from is None else read_vae_weights(config.init_from)
    vae_config = vae_preset(config.preset) if weights is None else weights.config
    with seeded(config.trainer.seed):
        if weights is not None:
            vae = vae_from_weights(weights)
        else:
            vae = build_vae(vae_config, init="pytorch" if config.init == "pca" else config.init)
        discriminator = build_discriminator(vae_config.audio_channels,
                                            config.discriminator_filters)
    if config.init == "pca" and config.init_from is None and dataset is not None:
        with seeded(config.trainer.seed):
            fit_linear_paths(vae, dataset)
    return vae, vae_config, discriminator


def fit_linear_paths(vae: AudioVAE, dataset, windows: int = LINEAR_INIT_WINDOWS) -> dict:
    """``init: pca``: set a spectral VAE's linear paths from ``windows`` training windows
    (``dataset.example(i % len(dataset), i)`` for i < windows, the first positions of
    the run's order), logging the share of variance they hold."""
    audio = torch.stack([dataset.example(i % len(dataset), i).audio for i in range(windows)])
    fitted = init_linear_paths(vae.encoder, vae.decoder, audio)
    logger.info("linear paths fitted to %d latent frames: %.1f %% of the variance of the "
                "compressed magnitudes", fitted["frames"], 100 * fitted["explained_variance"])
    return fitted


def train_vae(config: VAETrainConfig, run_dir, *, resume: bool = False,
              enable_progress_bar: bool = True, extra_callbacks: list | None = None) -> Path:
    if config.trainer.accumulate_grad_batches != 1:
        raise ConfigError("VAE training alternates optimisers and does not accumulate "
                          "gradients: set trainer.accumulate_grad_batches to 1")
    run_dir, ckpt = prepare_run(config, run_dir, resume)
    vae_config = vae_config_for_training(config)
    if config.window_samples % vae_config.hop_length:
        raise ConfigError(f"window_samples {config.window_samples} must be a multiple of the "
                          f"VAE hop {vae_config.hop_length}")
    dataset, collate = build_audio_dataset(config, vae_config.sample_rate,
                                           vae_config.audio_channels, config.window_samples)
    vae, vae_config, discriminator = build_vae_for_training(
        config, dataset if ckpt is None else None)
    module = VAETrainingModule(config, vae, vae_config, discriminator, dataset, collate)
    return fit(module, config, run_dir, ckpt, list(extra_callbacks or []), enable_progress_bar)


def export_vae_checkpoint(ckpt: dict, out_dir, *, use_ema: bool = True) -> Path:
    """A VAE training checkpoint's (averaged) weights as a stable-audio-tools autoencoder
    folder."""
    info = ckpt["longplay"]
    vae_config = dataclass_from_dict(VAEConfig, info["vae_config"], "vae_config")
    state = ckpt["state_dict"]
    prefix = "ema." if use_ema and any(k.startswith("ema.") for k in state) else "net."
    with torch.device("meta"):
        vae = build_vae(vae_config)
    vae.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                        strict=True, assign=True)
    return save_vae(vae, replace(vae_config), out_dir)

"""Training the diffusion transformer (SYSTEM.md sections 3-5) as a LightningModule.

The step is one short linear function; the loop (Lightning) owns devices, precision,
accumulation, logging and checkpoints, and the callbacks own EMA and demos.

Shape legend: B batch, C audio channels, N samples, D latent channels, T frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from longplay.checkpoints.diffusion import DiffusionModel
from longplay.conditioning import Conditioning
from longplay.config import DiTTrainConfig, dataclass_to_dict
from longplay.diffusion import (
    diffusion_loss,
    rf_objective_sample,
    sample_training_noise,
    sample_training_t,
    v_objective_sample,
)
from longplay.training.ema import make_ema
from longplay.training.sampler import PositionedDataset, PositionSampler
from longplay.training.schedules import inverse_lr_factor


@dataclass(frozen=True)
class PositionedBatch:
    """A collated batch and the global data positions of its items (they seed the step's
    randomness, so that a resumed run repeats an uninterrupted one exactly)."""

    positions: torch.Tensor  # [B] int64
    batch: object


class PositionedCollate:
    def __init__(self, collate) -> None:
        self.collate = collate

    def __call__(self, items: list) -> PositionedBatch:
        positions, examples = zip(*items, strict=True)
        return PositionedBatch(torch.tensor(positions), self.collate(list(examples)))


class _WithPosition(PositionedDataset):
    def __getitem__(self, position: int):
        return position, super().__getitem__(position)


class DiTTrainingModule(L.LightningModule):
    """The trainable parts (DiT and the conditioner's learned embeddings), their EMA, and
    the frozen VAE and text encoder that turn a batch into latents and conditioning."""

    def __init__(self, config: DiTTrainConfig, model: DiffusionModel, dataset,
                 collate) -> None:
        super().__init__()
        self.config = config
        self.model_config = model.config
        self.net = nn.ModuleDict({"dit": model.dit, "conditioner": model.conditioner})
        self.ema = make_ema(self.net) if config.ema.enabled else None
        self.vae = model.vae.requires_grad_(False).eval()
        self.text_encoder = model.text_encoder  # frozen, outside the state dict
        self.dataset = dataset
        self.collate = collate
        model.dit.gradient_checkpointing = config.trainer.gradient_checkpointing

    # -- data ---------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        accumulate = self.config.trainer.accumulate_grad_batches
        sampler = PositionSampler(self.config.trainer.batch_size, trainer.global_rank,
                                  trainer.world_size, start_step=trainer.global_step * accumulate)
        return DataLoader(_WithPosition(self.dataset, self.config.trainer.seed),
                          batch_size=self.config.trainer.batch_size, sampler=sampler,
                          collate_fn=PositionedCollate(self.collate),
                          num_workers=self.config.data.num_workers)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        """Batches are typed (frozen dataclasses); the step moves what it uses."""
        return batch

    # -- the step -----------------------------------------------------------------------

    def _generator(self, positions: torch.Tensor) -> torch.Generator:
        seed = self.config.trainer.seed * 1_000_003 + int(positions[0]) * 7919 + 17
        return torch.Generator().manual_seed(seed)

    def _latents(self, batch, generator: torch.Generator) -> torch.Tensor:
        if hasattr(batch, "latents"):
            return batch.latents.to(self.device)  # pre-encoded posterior samples
        with torch.no_grad():
            posterior = self.vae.encode(batch.audio.to(self.device))
            noise = torch.randn(posterior.mean.shape, generator=generator).to(self.device)
            return posterior.sample(noise=noise)

    def _conditioning(self, batch, generator: torch.Generator) -> Conditioning:
        features = None
        if self.text_encoder is not None:
            features = self.text_encoder.encode(self.text_encoder.tokenize(batch.prompts))
            features = type(features)(features.tokens.clone().to(self.device),
                                      features.mask.clone().to(self.device))
        seconds = {"seconds_start": batch.seconds_start, "seconds_total": batch.seconds_total}
        seconds = {cid: seconds[cid].to(self.device) for cid in self.net["conditioner"].timing_ids}
        cond = self.net["conditioner"](features, seconds)
        # CFG dropout: the whole cross-attention context of a sample is zeroed.
        keep = torch.rand(cond.batch_size, generator=generator) >= self.config.cfg_dropout
        keep = keep.to(self.device, cond.cross_attn.dtype)[:, None, None]
        return Conditioning(cond.cross_attn * keep, cond.cross_attn_mask, cond.global_cond)

    def training_step(self, positioned: PositionedBatch, batch_idx: int) -> torch.Tensor:
        g = self._generator(positioned.positions)
        batch = positioned.batch
        x0 = self._latents(batch, g)  # [B, D, T]
        cond = self._conditioning(batch, g)
        t = sample_training_t(x0.shape[0], g).to(self.device)  # [B] uniform in [0, 1)
        noise = sample_training_noise(x0.cpu(), g).to(self.device)
        objective = v_objective_sample if self.model_config.objective == "v" else \
            rf_objective_sample
        sample = objective(x0, t, noise)
        prediction = self.net["dit"](sample.x_t, t, cond)
        loss = diffusion_loss(prediction, sample)
        self.log("train/loss", loss, prog_bar=True, batch_size=x0.shape[0])
        return loss

    # -- optimisation -------------------------------------------------------------------

    def configure_optimizers(self):
        o = self.config.optimizer
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas,
                                      weight_decay=o.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: inverse_lr_factor(step, o.inv_gamma, o.power, o.warmup))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["longplay"] = {"stage": "dit", "config": dataclass_to_dict(self.config),
                                  "model_config": dataclass_to_dict(self.model_config)}

    def averaged(self) -> nn.ModuleDict:
        """The weights to export: the EMA when enabled, else the trained ones."""
        return self.ema if self.ema is not None else self.net

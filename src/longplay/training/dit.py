"""Training the diffusion transformer (SYSTEM.md sections 3-5) as a LightningModule.

The step is one short linear function; the loop (Lightning) owns devices, precision,
accumulation, logging and checkpoints, and the callbacks own EMA and demos.

Shape legend: B batch, C audio channels, N samples, D latent channels, T frames.
"""

from __future__ import annotations

import torch
from torch import nn

from longplay.builders import DiffusionModel
from longplay.conditioning import Conditioning
from longplay.config import INPAINT_INPUT_ID, INPAINT_MASK_ID, DiTTrainConfig, dataclass_to_dict
from longplay.diffusion import (
    diffusion_loss,
    get_objective,
    padding_frame_weights,
    sample_training_noise,
    sample_training_t,
)
from longplay.training.base import PositionedBatch, TrainingModule
from longplay.training.masks import random_inpaint_masks


class DiTTrainingModule(TrainingModule):
    """The trainable parts (DiT and the conditioner's learned embeddings), their EMA, and
    the frozen VAE and text encoder that turn a batch into latents and conditioning."""

    stage = "dit"

    def __init__(self, config: DiTTrainConfig, model: DiffusionModel, dataset,
                 collate) -> None:
        super().__init__(config, dataset, collate)
        self.model_config = model.config
        self.objective = get_objective(model.config.objective)
        self.net = nn.ModuleDict({"dit": model.dit, "conditioner": model.conditioner})
        self.init_ema()
        self.vae = model.vae.requires_grad_(False).eval()
        self.text_encoder = model.text_encoder  # frozen, outside the state dict
        model.dit.gradient_checkpointing = config.trainer.gradient_checkpointing

    def shard_units(self, tree: nn.Module) -> list[nn.Module]:
        """Each block's self-attention and feed-forward (the bulk of the weights), then
        the DiT with the rest (the cross-attention, whose context projections the DiT runs
        once for all steps outside the blocks' forward) and the conditioner."""
        blocks = tree["dit"].blocks
        return [*(b.self_attn for b in blocks), *(b.ff for b in blocks), tree["dit"],
                tree["conditioner"]]

    # -- the step -----------------------------------------------------------------------

    def _latents(self, batch, generator: torch.Generator) -> torch.Tensor:
        if hasattr(batch, "latents"):
            return batch.latents.to(self.device)  # pre-encoded posterior samples
        with torch.no_grad():
            posterior = self.vae.encode(batch.audio.to(self.device))
            noise = torch.randn(posterior.mean.shape, generator=generator).to(self.device)
            return posterior.sample(noise=noise)

    def _features(self, batch):
        """The frozen text encoder's features of the batch's prompts (None without one)."""
        if self.text_encoder is None:
            return None
        features = self.text_encoder.encode(self.text_encoder.tokenize(batch.prompts))
        return type(features)(features.tokens.clone().to(self.device),
                              features.mask.clone().to(self.device))

    def _seconds(self, batch, conditioner) -> dict[str, torch.Tensor]:
        """The batch's timing values that ``conditioner`` embeds."""
        seconds = {"seconds_start": batch.seconds_start, "seconds_total": batch.seconds_total}
        return {cid: seconds[cid].to(self.device) for cid in conditioner.timing_ids}

    def _conditioning(self, batch, generator: torch.Generator) -> Conditioning:
        conditioner = self.net["conditioner"]
        cond = conditioner(self._features(batch), self._seconds(batch, conditioner))
        # CFG dropout: the whole cross-attention context of a sample is zeroed.
        keep = torch.rand(cond.batch_size, generator=generator) >= self.config.cfg_dropout
        keep = keep.to(self.device, cond.cross_attn.dtype)[:, None, None]
        return Conditioning(cond.cross_attn * keep, cond.cross_attn_mask, cond.global_cond)

    def _inpainting_input(self, batch, x0: torch.Tensor,
                          generator: torch.Generator) -> torch.Tensor:
        """A random keep mask [B, 1, T] and the masked latents [B, D, T], in the model's
        order of its extra input channels."""
        mask = random_inpaint_masks(
            x0.shape[0], x0.shape[-1], self._valid_frames(batch), generator,
            probabilities=self.config.inpaint_mask_probabilities,
            max_segments=self.config.inpaint_max_segments).to(x0.device, x0.dtype)
        parts = {INPAINT_MASK_ID: mask, INPAINT_INPUT_ID: x0 * mask}
        return torch.cat([parts[name] for name in self.model_config.conditioning.input_concat_ids],
                         dim=1)

    def _valid_frames(self, batch) -> torch.Tensor | None:
        """[B] the latent frames of each window's piece (the rest is padding), or None
        where the batch does not say."""
        valid = getattr(batch, "num_valid_frames", None)
        samples = getattr(batch, "num_valid_samples", None)
        if valid is None and samples is not None:
            valid = -(-samples // self.model_config.vae.hop_length)  # ceil
        return valid

    def _frame_weights(self, batch, frames: int) -> torch.Tensor | None:
        """The loss's frame weights [B, T] under ``padding_loss_share``, or None."""
        share = self.config.padding_loss_share
        if share is None:
            return None
        valid = self._valid_frames(batch)
        if valid is None:
            raise ValueError("padding_loss_share needs to know where each window's piece "
                             "ends, and this dataset does not say (num_valid_frames): train "
                             "on a latent folder (data.kind: latents) or remove the option")
        return padding_frame_weights(valid.to(self.device), frames, share)

    def training_step(self, positioned: PositionedBatch, batch_idx: int) -> torch.Tensor:
        g = self.step_generator(positioned.positions)
        batch = positioned.batch
        x0 = self._latents(batch, g)  # [B, D, T]
        cond = self._conditioning(batch, g)
        if self.model_config.inpainting:  # the mask and the masked latents, never dropped
            cond = cond.with_input(self._inpainting_input(batch, x0, g))
        t = sample_training_t(x0.shape[0], g).to(self.device)  # [B] uniform in [0, 1)
        noise = sample_training_noise(x0.cpu(), g).to(self.device)
        sample = self.objective.training_sample(x0, t, noise)
        prediction = self.net["dit"](sample.x_t, t, cond)
        loss = diffusion_loss(prediction, sample, self._frame_weights(batch, x0.shape[-1]))
        self.log("train/loss", loss, prog_bar=True, batch_size=x0.shape[0])
        return loss

    def checkpoint_metadata(self) -> dict:
        return {"model_config": dataclass_to_dict(self.model_config)}

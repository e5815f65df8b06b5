"""Training the CLAP text-audio model (stage 2): symmetric contrastive loss between
audio windows and their prompts, the text tower starting from a local encoder."""

from __future__ import annotations

from pathlib import Path

import torch

from longplay.builders import build_clap, seeded
from longplay.checkpoints import save_clap
from longplay.conditioning import (
    CLAPModel,
    HFTextEncoder,
    clap_contrastive_loss,
    resolve_text_encoder,
)
from longplay.config import (
    CLAP_FORMAT_VERSION,
    CLAPAudioEncoderConfig,
    CLAPConfig,
    CLAPTrainConfig,
    dataclass_from_dict,
)
from longplay.training.base import PositionedBatch, TrainingModule
from longplay.training.runner import build_audio_dataset, fit, prepare_run

# The audio tower's front end and normalisation, fixed for the trainer.
CLAP_N_FFT = 1024
CLAP_HOP_LENGTH = 512
CLAP_NORM_GROUPS = 8


def clap_model_config(config: CLAPTrainConfig) -> CLAPConfig:
    """The architecture a CLAP run trains."""
    return CLAPConfig(
        format_version=CLAP_FORMAT_VERSION, sample_rate=config.sample_rate,
        embed_dim=config.embed_dim, text_layer=config.text_layer, max_length=config.max_length,
        audio_encoder=CLAPAudioEncoderConfig(
            n_fft=CLAP_N_FFT, hop_length=CLAP_HOP_LENGTH, n_mels=config.n_mels,
            widths=config.audio_widths, norm_groups=CLAP_NORM_GROUPS,
            embed_dim=config.embed_dim))


def build_clap_for_training(config: CLAPTrainConfig) -> CLAPModel:
    """The CLAP to train around the text tower at ``text_encoder_path``, its audio tower
    seeded with ``trainer.seed`` in a forked random state."""
    with seeded(config.trainer.seed):
        text = HFTextEncoder(config.text_encoder_path, max_length=config.max_length,
                             layer=config.text_layer)
        return build_clap(clap_model_config(config), text, train_text=config.train_text)


class CLAPTrainingModule(TrainingModule):
    stage = "clap"

    def __init__(self, config: CLAPTrainConfig, model: CLAPModel, dataset, collate) -> None:
        super().__init__(config, dataset, collate)
        self.net = model
        self.init_ema()

    def training_step(self, positioned: PositionedBatch, batch_idx: int) -> torch.Tensor:
        batch = positioned.batch
        output = self.net(batch.audio.to(self.device), self.net.tokenize(batch.prompts))
        loss = clap_contrastive_loss(output)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.audio.shape[0])
        return loss


def train_clap(config: CLAPTrainConfig, run_dir, *, resume: bool = False,
               enable_progress_bar: bool = True) -> Path:
    run_dir, ckpt = prepare_run(config, run_dir, resume)
    model = build_clap_for_training(config)
    dataset, collate = build_audio_dataset(config, config.sample_rate, 2, config.window_samples)
    module = CLAPTrainingModule(config, model, dataset, collate)
    return fit(module, config, run_dir, ckpt, [], enable_progress_bar)


def export_clap_checkpoint(ckpt: dict, out_dir, *, use_ema: bool = True) -> Path:
    """A CLAP training checkpoint as a CLAP model folder (see ``save_clap``)."""
    config = dataclass_from_dict(CLAPTrainConfig, ckpt["longplay"]["config"], "config")
    model = build_clap_for_training(config)
    state = ckpt["state_dict"]
    prefix = "ema." if use_ema and any(k.startswith("ema.") for k in state) else "net."
    model.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                          strict=True)
    # A frozen tower from a packaged encoder is referenced by name instead of copied.
    packaged = resolve_text_encoder(config.text_encoder_path).packaged_name
    return save_clap(model, out_dir,
                     text_encoder=None if config.train_text else packaged)

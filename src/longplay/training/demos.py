"""Periodic demo generations during DiT training: a few prompts at several guidance
scales, written as audio and spectrogram pictures under ``demos/step=N/``."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch

from longplay.atomic import write_text_atomic
from longplay.audio import save_audio
from longplay.audio.images import save_spectrogram_png
from longplay.builders import DiffusionModel
from longplay.config import DemoConfig
from longplay.pipelines import GenerationError, TextToMusicPipeline

logger = logging.getLogger(__name__)


def demo_pipeline(module) -> TextToMusicPipeline:
    """A pipeline over the module's averaged (EMA) weights."""
    weights = module.averaged()
    model = DiffusionModel(module.model_config, module.vae, weights["conditioner"],
                           weights["dit"], module.text_encoder, Path("."))
    return TextToMusicPipeline(model)


def write_demos(module, out_dir: Path, demo: DemoConfig, seed: int = 0) -> list[Path]:
    """Generate every (prompt, guidance) pair; returns the audio files written."""
    pipe = demo_pipeline(module)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    was_training = module.training
    module.eval()
    try:
        for i, prompt in enumerate(demo.prompts):
            for scale in demo.guidance_scales:
                try:
                    out = pipe(prompt, duration_s=demo.duration_s, num_inference_steps=demo.steps,
                               guidance_scale=scale, sampler=demo.sampler, seed=seed + i)
                except GenerationError as err:
                    logger.warning("demo %r at guidance %g failed: %s", prompt, scale, err)
                    continue
                stem = out_dir / f"prompt{i}_cfg{scale:g}"
                peak = out.audio[0].abs().max().clamp(min=1.0)
                written.append(save_audio(stem.with_suffix(".wav"), out.audio[0] / peak,
                                          out.sample_rate))
                save_spectrogram_png(stem.with_suffix(".png"), out.audio[0], out.sample_rate)
        write_text_atomic(out_dir / "prompts.txt", "\n".join(
            f"prompt{i}: {p}" for i, p in enumerate(demo.prompts)) + "\n")
    finally:
        module.train(was_training)
    return written


class DemoCallback(L.Callback):
    def __init__(self, out_dir: Path, demo: DemoConfig, every_n_steps: int) -> None:
        self.out_dir = out_dir
        self.demo = demo
        self.every = every_n_steps
        self._last = -1

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self._last or step % self.every or not trainer.is_global_zero:
            return
        self._last = step
        with torch.inference_mode():
            write_demos(module, self.out_dir / f"step={step}", self.demo)

"""VAE and CLAP training on the debug settings: finite, falling losses, exact resume,
export to folders that the loaders read back."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import SAO1_TINY
from longplay.audio import save_audio
from longplay.autoencoder import LowBandLoss
from longplay.checkpoints import load_vae, read_vae_weights
from longplay.cli.main import main
from longplay.config import (
    VAE_PRESETS,
    CLAPTrainConfig,
    ConfigError,
    DataConfig,
    EMAConfig,
    OptimizerConfig,
    TrainerConfig,
    VAETrainConfig,
)
from longplay.training.clap import train_clap
from longplay.training.vae import export_vae_checkpoint, train_vae

SR = 44100


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory) -> Path:
    """Six short stereo tones with metadata sidecars."""
    root = tmp_path_factory.mktemp("audio")
    for i, (freq, genre) in enumerate([(110, "bass"), (220, "cello"), (440, "violin"),
                                       (880, "flute"), (330, "piano"), (660, "bells")]):
        t = torch.arange(int(1.2 * SR)) / SR
        tone = 0.4 * torch.sin(2 * math.pi * freq * t) * (1 + 0.3 * torch.sin(2 * math.pi * 3 * t))
        save_audio(root / f"tone{i}.wav", torch.stack([tone, 0.8 * tone]), SR)
        (root / f"tone{i}.json").write_text(json.dumps({"genre": genre, "bpm": 60 + 10 * i}))
    return root


def losses(run_dir: Path, key: str = "train/loss") -> list[float]:
    rows = []
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        rows += [float(r[key]) for r in csv.DictReader(path.open()) if r.get(key)]
    return rows


def vae_config(data: Path, steps: int, adversarial_start: int = 0) -> VAETrainConfig:
    return VAETrainConfig(
        preset="debug", window_samples=8192, adversarial_start_step=adversarial_start,
        discriminator_filters=8,
        optimizer=OptimizerConfig(lr=3e-3, betas=(0.8, 0.99), inv_gamma=1e4, warmup=0.0),
        discriminator_optimizer=OptimizerConfig(lr=1e-3, betas=(0.8, 0.99), inv_gamma=1e4,
                                                warmup=0.0),
        ema=EMAConfig(max_decay=0.99), data=DataConfig(path=str(data), phase_flip=True),
        trainer=TrainerConfig(max_steps=steps, batch_size=2, checkpoint_every_n_steps=2,
                              log_every_n_steps=1))


def test_vae_reconstruction_loss_falls(audio_folder: Path, tmp_path: Path) -> None:
    train_vae(vae_config(audio_folder, 24, adversarial_start=10**6), tmp_path / "run",
              enable_progress_bar=False)
    values = losses(tmp_path / "run")
    assert len(values) == 24 and all(math.isfinite(v) for v in values)
    assert sum(values[-6:]) / 6 < 0.9 * sum(values[:6]) / 6


def test_vae_adversarial_resume_and_export(audio_folder: Path, tmp_path: Path) -> None:
    train_vae(vae_config(audio_folder, 4), tmp_path / "a", enable_progress_bar=False)
    train_vae(vae_config(audio_folder, 2), tmp_path / "b", enable_progress_bar=False)
    train_vae(vae_config(audio_folder, 4), tmp_path / "b", resume=True,
              enable_progress_bar=False)
    a = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)
    for key in a["state_dict"]:  # autoencoder, EMA and discriminator
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert losses(tmp_path / "a", "train/discriminator")  # the discriminator trained
    assert main(["export", str(tmp_path / "a"), "-o", str(tmp_path / "vae")]) == 0
    vae = load_vae(tmp_path / "vae")
    ema = {k[len("ema."):]: v for k, v in a["state_dict"].items() if k.startswith("ema.")}
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in ema.items())


def test_resume_with_another_checkpoint_interval_keeps_one_last(audio_folder: Path,
                                                                 tmp_path: Path) -> None:
    from dataclasses import replace

    config = vae_config(audio_folder, 2, adversarial_start=10**6)
    train_vae(config, tmp_path / "run", enable_progress_bar=False)
    longer = replace(config, trainer=replace(config.trainer, max_steps=3,
                                             checkpoint_every_n_steps=3))
    train_vae(longer, tmp_path / "run", resume=True, enable_progress_bar=False)
    names = sorted(p.name for p in (tmp_path / "run/checkpoints").glob("last*"))
    assert names == ["last.ckpt"]
    assert torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)[
        "global_step"] == 3


def clap_config(data: Path, steps: int) -> CLAPTrainConfig:
    return CLAPTrainConfig(
        text_encoder_path=str(SAO1_TINY / "text_encoder"), max_length=16, embed_dim=32,
        audio_widths=(8, 16), n_mels=32, window_samples=16384,
        optimizer=OptimizerConfig(lr=3e-3, inv_gamma=1e4, warmup=0.0),
        data=DataConfig(path=str(data)),
        trainer=TrainerConfig(max_steps=steps, batch_size=6, checkpoint_every_n_steps=3,
                              log_every_n_steps=1))


def test_clap_contrastive_loss_falls_resumes_and_exports(audio_folder: Path,
                                                         tmp_path: Path) -> None:
    train_clap(clap_config(audio_folder, 20), tmp_path / "a", enable_progress_bar=False)
    values = losses(tmp_path / "a")
    assert len(values) == 20 and all(math.isfinite(v) for v in values)
    assert sum(values[-5:]) / 5 < sum(values[:5]) / 5
    train_clap(clap_config(audio_folder, 3), tmp_path / "b", enable_progress_bar=False)
    train_clap(clap_config(audio_folder, 6), tmp_path / "b", resume=True,
               enable_progress_bar=False)
    train_clap(clap_config(audio_folder, 6), tmp_path / "c", enable_progress_bar=False)
    b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)
    c = torch.load(tmp_path / "c/checkpoints/last.ckpt", weights_only=True)
    assert all(torch.equal(b["state_dict"][k], c["state_dict"][k]) for k in b["state_dict"])
    assert main(["export", str(tmp_path / "a"), "-o", str(tmp_path / "clap")]) == 0
    from longplay.checkpoints import clap_text_encoder_for_conditioning, load_clap

    clap = load_clap(tmp_path / "clap")
    assert clap.embed_audio(torch.zeros(1, 2, 16384) + 0.1).shape == (1, 32)
    encoder = clap_text_encoder_for_conditioning(tmp_path / "clap")
    assert encoder.layer == -2


def dit_config(data: Path, kind: str, steps: int, **kwargs):
    from longplay.config import DiTTrainConfig

    return DiTTrainConfig(
        text_encoder_path=str(SAO1_TINY / "text_encoder"),
        optimizer=OptimizerConfig(lr=2e-3, inv_gamma=1e4, warmup=0.0),
        data=DataConfig(kind=kind, path=str(data)),
        trainer=TrainerConfig(max_steps=steps, batch_size=2, checkpoint_every_n_steps=2,
                              log_every_n_steps=1), **kwargs)


def test_dit_trains_on_raw_audio_and_on_pre_encoded_latents(audio_folder: Path,
                                                            tmp_path: Path) -> None:
    from longplay.training.runner import train_dit

    train_dit(dit_config(audio_folder, "audio", 3), tmp_path / "audio",
              enable_progress_bar=False)
    assert len(losses(tmp_path / "audio")) == 3
    latents = tmp_path / "latents"
    assert main(["data", "encode", str(audio_folder), "--model", str(SAO1_TINY), "-o",
                 str(latents), "--no-progress"]) == 0
    # Fine-tune the public-layout fixture model (its VAE made the latents) on them.
    train_dit(dit_config(latents, "latents", 3, preset=None, init_from=str(SAO1_TINY)),
              tmp_path / "finetune", enable_progress_bar=False)
    values = losses(tmp_path / "finetune")
    assert len(values) == 3 and all(math.isfinite(v) for v in values)
    assert main(["export", str(tmp_path / "finetune"), "-o", str(tmp_path / "model")]) == 0
    assert main(["generate", "violin", "--model", str(tmp_path / "model"), "--steps", "2",
                 "--duration", "1", "-o", str(tmp_path / "x.wav"), "--no-progress"]) == 0


def test_dit_with_a_clap_text_tower_demos_and_checkpointing(audio_folder: Path,
                                                           tmp_path: Path) -> None:
    """The CLAP's text tower (next-to-last layer, its own width) conditions a DiT; demos
    are written during training; gradient checkpointing gives the same step."""
    from dataclasses import replace

    from longplay.config import DemoConfig
    from longplay.training.runner import train_dit

    train_clap(clap_config(audio_folder, 1), tmp_path / "clap_run", enable_progress_bar=False)
    assert main(["export", str(tmp_path / "clap_run"), "-o", str(tmp_path / "clap")]) == 0
    base = dit_config(audio_folder, "audio", 2, text_layer=-2,
                      demo=DemoConfig(prompts=("violin",), guidance_scales=(1.0, 3.0),
                                      steps=2, duration_s=0.5))
    base = replace(base, text_encoder_path=str(tmp_path / "clap" / "text_encoder"),
                   trainer=replace(base.trainer, demo_every_n_steps=2))
    train_dit(base, tmp_path / "plain", enable_progress_bar=False)
    demos = tmp_path / "plain" / "demos" / "step=2"
    assert {p.name for p in demos.iterdir()} >= {"prompt0_cfg1.wav", "prompt0_cfg1.png",
                                                  "prompt0_cfg3.wav", "prompt0_cfg3.png"}
    assert (demos / "prompt0_cfg1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = torch.load(tmp_path / "plain/checkpoints/last.ckpt", weights_only=True)
    text = saved["longplay"]["model_config"]["conditioning"]["text"]
    assert text["layer"] == -2 and text["feature_dim"] == 768  # the tower: the tiny T5
    checkpointed = replace(base, trainer=replace(base.trainer, gradient_checkpointing=True,
                                                 demo_every_n_steps=0))
    train_dit(checkpointed, tmp_path / "ckpt", enable_progress_bar=False)
    other = torch.load(tmp_path / "ckpt/checkpoints/last.ckpt", weights_only=True)
    for key, value in saved["state_dict"].items():
        assert torch.allclose(value, other["state_dict"][key], atol=1e-6), key


def test_dit_with_a_sentence_transformer_style_encoder(audio_folder: Path,
                                                      tmp_path: Path) -> None:
    """Any Hugging Face encoder of any width: features projected to cond_dim, exported as
    an 'hf' text conditioner that longplay generate loads again."""
    from conftest import make_tiny_bert
    from longplay.training.runner import train_dit

    bert = make_tiny_bert(tmp_path / "bert", num_layers=2)
    config = dit_config(audio_folder, "audio", 2, text_layer=-2)
    from dataclasses import replace

    train_dit(replace(config, text_encoder_path=str(bert)), tmp_path / "run",
              enable_progress_bar=False)
    assert main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "model")]) == 0
    sat = json.loads((tmp_path / "model" / "model_config.json").read_text())
    entry = sat["model"]["conditioning"]["configs"][0]
    assert entry["type"] == "hf" and entry["config"]["feature_dim"] == 32
    assert entry["config"]["layer"] == -2
    assert main(["generate", "flute", "--model", str(tmp_path / "model"), "--steps", "2",
                 "--duration", "0.5", "-o", str(tmp_path / "x.wav"), "--no-progress"]) == 0


def test_posterior_warmup_decodes_the_mean(audio_folder: Path, tmp_path: Path,
                                           monkeypatch) -> None:
    from dataclasses import replace

    from longplay.autoencoder import AudioVAE

    decoded: list[bool] = []
    original = AudioVAE.decode

    def spy(self, latents, **kwargs):
        decoded.append(True)
        return original(self, latents, **kwargs)

    seen_means: list[bool] = []
    from longplay.autoencoder.distribution import LatentDistribution

    sample = LatentDistribution.sample

    def spy_sample(self, *args, **kwargs):
        seen_means.append(False)
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(LatentDistribution, "sample", spy_sample)
    monkeypatch.setattr(AudioVAE, "decode", spy)
    config = replace(vae_config(audio_folder, 4, adversarial_start=10**6),
                     posterior_warmup_steps=3)
    train_vae(config, tmp_path / "run", enable_progress_bar=False)
    assert len(decoded) == 4
    assert len(seen_means) == 1  # only step 3 sampled; steps 0-2 decoded the mean
    with pytest.raises(ConfigError, match="posterior_warmup_steps"):
        VAETrainConfig(preset="debug", posterior_warmup_steps=-1)


def spy_on_loss(monkeypatch, loss_class) -> list[float]:
    """The values ``loss_class`` returns from now on, in order."""
    calls: list[float] = []
    original = loss_class.forward

    def spy(self, prediction, target):
        value = original(self, prediction, target)
        calls.append(float(value.detach()))
        return value

    monkeypatch.setattr(loss_class, "forward", spy)
    return calls


def test_vae_training_adds_the_configured_mel_loss(audio_folder: Path, tmp_path: Path,
                                                   monkeypatch) -> None:
    from dataclasses import replace

    from longplay.autoencoder import MultiScaleMelLoss

    calls = spy_on_loss(monkeypatch, MultiScaleMelLoss)
    config = replace(vae_config(audio_folder, 2, adversarial_start=10**6), mel_loss_weight=0.5)
    run = train_vae(config, tmp_path / "run", enable_progress_bar=False)
    assert len(calls) == 2 and all(c > 0 for c in calls)  # one term per generator step
    assert json.loads((tmp_path / "run" / "config.json").read_text())["mel_loss_weight"] == 0.5
    assert run.exists()
    with pytest.raises(ConfigError, match="mel_loss_weight"):
        VAETrainConfig(preset="debug", mel_loss_weight=-1.0)


def test_vae_training_adds_the_low_band_term_and_trains_a_nearest_decoder(
        audio_folder, tmp_path, monkeypatch) -> None:
    from dataclasses import replace

    calls = spy_on_loss(monkeypatch, LowBandLoss)
    monkeypatch.setitem(VAE_PRESETS, "debug-nearest",
                        replace(VAE_PRESETS["debug"], nearest_upsample=True))
    config = replace(vae_config(audio_folder, 2, adversarial_start=10**6),
                     preset="debug-nearest", low_band_loss_weight=0.5)
    run = train_vae(config, tmp_path / "run", enable_progress_bar=False)
    assert len(calls) == 2 and all(c > 0 for c in calls)  # one term per generator step
    assert json.loads((tmp_path / "run" / "config.json").read_text())["low_band_loss_weight"] == 0.5
    with pytest.raises(ConfigError, match="low_band_loss_weight"):
        VAETrainConfig(preset="debug", low_band_loss_weight=-1.0)
    exported = export_vae_checkpoint(torch.load(run, weights_only=True), tmp_path / "vae")
    assert read_vae_weights(exported).config.nearest_upsample


def test_a_spectral_vae_trains_from_pca_with_the_long_window_loss_and_its_adversary(
        audio_folder, tmp_path) -> None:
    from dataclasses import replace

    config = replace(vae_config(audio_folder, 4, adversarial_start=2), preset="debug-spectral",
                     low_band_loss_weight=1.0, mel_loss_weight=1.0, long_window_loss_weight=0.5,
                     init="pca")
    run = train_vae(config, tmp_path / "run", enable_progress_bar=False)
    assert losses(tmp_path / "run", "train/discriminator")
    long_window = losses(tmp_path / "run", "train/long_window")  # logged by generator steps
    assert len(long_window) >= 3 and all(v > 0 for v in long_window)
    assert all(math.isfinite(v) for v in losses(tmp_path / "run"))
    exported = export_vae_checkpoint(torch.load(run, weights_only=True), tmp_path / "vae")
    weights = read_vae_weights(exported)
    assert weights.config.architecture == "spectral"
    vae = load_vae(exported)
    # init: pca set the linear paths before the first step (they start at zero otherwise)
    assert vae.encoder.linear.weight.abs().sum() > 0 and vae.decoder.linear.weight.abs().sum() > 0
    audio = 0.1 * torch.randn(1, 2, 4096)
    with torch.inference_mode():
        assert vae.reconstruct(audio).shape == audio.shape

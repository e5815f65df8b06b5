"""The run configurations of the three trainers (VAE, CLAP, DiT) and their parts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from longplay.errors import ConfigError


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with the inverse-LR schedule of k-diffusion:
    lr(step) = lr * (1 - warmup^(step + 1)) * (1 + step / inv_gamma)^-power."""

    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-3
    inv_gamma: float = 1e6
    power: float = 0.5
    warmup: float = 0.99


@dataclass(frozen=True)
class EMAConfig:
    """EMA with warm-up: decay(step) = min(max_decay, 1 - (1 + step / inv_gamma)^-power)."""

    enabled: bool = True
    max_decay: float = 0.9999
    power: float = 0.75
    inv_gamma: float = 1.0


@dataclass(frozen=True)
class DataConfig:
    """Where training examples come from.

    kind: "audio" (a folder of audio files with metadata), "shards" (tar shards, paths or
    fsspec URLs in ``path`` separated by commas) or "latents" (a folder written by
    ``longplay data encode``). The window is the model's ``sample_size``.
    """

    kind: str = "audio"
    path: str | None = None
    random_crop: bool = True
    phase_flip: bool = False
    min_duration_s: float = 0.0
    num_workers: int = 0


@dataclass(frozen=True)
class TrainerConfig:
    """The engine's settings (PyTorch Lightning)."""

    max_steps: int = 100000
    batch_size: int = 8
    accumulate_grad_batches: int = 1
    precision: str = "32-true"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    gradient_checkpointing: bool = False
    gradient_clip_val: float | None = None
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 1000
    demo_every_n_steps: int = 0
    seed: int = 0


@dataclass(frozen=True)
class DemoConfig:
    """Periodic demo generations during DiT training."""

    prompts: tuple[str, ...] = ("upbeat electronic dance music, 128 BPM",
                                "solo piano, slow and calm")
    guidance_scales: tuple[float, ...] = (1.0, 3.0, 6.0)
    steps: int = 50
    duration_s: float | None = None
    sampler: str | None = None


@dataclass(frozen=True)
class DiTTrainConfig:
    """Training (or fine-tuning) the diffusion transformer.

    Either ``init_from`` (a model folder to fine-tune: architecture and weights, VAE and
    conditioning included) or ``preset`` (an architecture from MODEL_PRESETS, trained
    from scratch, with the VAE from ``vae_path`` or random when it is None).
    """

    preset: str | None = "debug"
    init_from: str | None = None
    vae_path: str | None = None
    text_encoder_path: str | None = None
    text_layer: int | None = None
    """With ``preset``: the encoder layer whose features condition the DiT (default the
    preset's); the feature width is read from the encoder, so any Hugging Face encoder
    (a CLAP text tower, a sentence-transformer) can be used."""
    cfg_dropout: float = 0.1
    window_frames: int | None = None
    """Train on windows of this many latent frames instead of the model's whole window
    (pre-training on short windows, as the paper does before the full window); the
    model's window (its sample_size) is unchanged."""
    inpaint: bool = False
    """Train a model that inpaints: its DiT also takes a keep mask and the masked latents
    (stable-audio-tools' ``diffusion_cond_inpaint``). A model without those inputs gains
    them with zero weights, so it starts as it was."""
    inpaint_mask_probabilities: tuple[float, float, float] = (0.1, 0.8, 0.1)
    """How often a training mask is random segments, everything generated (from
    scratch), or a kept prefix (continuation): stable-audio-tools' defaults."""
    inpaint_max_segments: int = 10
    optimizer: OptimizerConfig = OptimizerConfig()
    ema: EMAConfig = EMAConfig()
    data: DataConfig = DataConfig()
    trainer: TrainerConfig = TrainerConfig()
    demo: DemoConfig = DemoConfig()

    def __post_init__(self) -> None:
        if (self.preset is None) == (self.init_from is None):
            raise ConfigError("give exactly one of preset (train from scratch) and init_from "
                              "(fine-tune a model folder)")
        if not 0 <= self.cfg_dropout < 1:
            raise ConfigError(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")
        if self.window_frames is not None and self.window_frames < 1:
            raise ConfigError(f"window_frames must be a positive number of latent frames, got "
                              f"{self.window_frames}")
        probabilities = self.inpaint_mask_probabilities
        if any(p < 0 for p in probabilities) or not math.isclose(sum(probabilities), 1.0):
            raise ConfigError(f"inpaint_mask_probabilities must be 3 non-negative numbers "
                              f"summing to 1, got {list(probabilities)}")
        if self.inpaint_max_segments < 1:
            raise ConfigError(f"inpaint_max_segments must be >= 1, got "
                              f"{self.inpaint_max_segments}")


@dataclass(frozen=True)
class VAETrainConfig:
    """Training (or fine-tuning) the VAE (SYSTEM.md section 2).

    ``init_from``: a VAE to start from (any source ``load_vae`` reads); else the
    ``preset`` architecture from scratch. ``freeze_encoder`` trains the decoder only
    (as the public model's decoder was fine-tuned). Steps alternate between the
    generator and the discriminator; ``adversarial_start_step`` delays the GAN terms.
    """

    preset: str | None = "debug"
    init_from: str | None = None
    freeze_encoder: bool = False
    window_samples: int = 65536
    loss_weights: tuple[float, float, float, float] = (1.0, 0.1, 5.0, 1e-4)
    """reconstruction, adversarial, feature matching, KL."""
    mel_loss_weight: float = 0.0
    """Weight of an extra multi-scale mel loss (``autoencoder.MultiScaleMelLoss``, the
    Descript Audio Codec's); 0 keeps the objective of SYSTEM.md."""
    adversarial_start_step: int = 0
    posterior_warmup_steps: int = 0
    """For the first N steps the decoder gets the posterior mean instead of a sample: a
    warm-up in which it learns to follow its input before the latent noise is added
    (with the noise from the start, a small VAE settles on the average spectrum)."""
    init: str = "variance_preserving"
    """From scratch: "variance_preserving" (``init_vae_for_training``: the input reaches
    the latent from the first step) or "pytorch" (the default initialisation of the
    layers, as stable-audio-tools)."""
    discriminator_filters: int = 64
    optimizer: OptimizerConfig = OptimizerConfig(lr=1.5e-4, betas=(0.8, 0.99), weight_decay=1e-3,
                                                 inv_gamma=2e5, power=0.5, warmup=0.999)
    discriminator_optimizer: OptimizerConfig = OptimizerConfig(
        lr=3e-4, betas=(0.8, 0.99), weight_decay=1e-3, inv_gamma=2e5, power=0.5, warmup=0.999)
    ema: EMAConfig = EMAConfig()
    data: DataConfig = DataConfig(phase_flip=True)
    trainer: TrainerConfig = TrainerConfig()

    def __post_init__(self) -> None:
        if (self.preset is None) == (self.init_from is None):
            raise ConfigError("give exactly one of preset (train from scratch) and init_from "
                              "(fine-tune a VAE)")
        if not (math.isfinite(self.mel_loss_weight) and self.mel_loss_weight >= 0):
            raise ConfigError(f"mel_loss_weight must be finite and >= 0, got "
                              f"{self.mel_loss_weight}")
        if self.posterior_warmup_steps < 0:
            raise ConfigError(f"posterior_warmup_steps must be >= 0, got "
                              f"{self.posterior_warmup_steps}")
        if self.init not in ("variance_preserving", "pytorch"):
            raise ConfigError(f"init must be 'variance_preserving' or 'pytorch', got "
                              f"{self.init!r}")


@dataclass(frozen=True)
class CLAPTrainConfig:
    """Training the CLAP text-audio model (stage 2): contrastive, with the text tower
    initialised from the local Hugging Face encoder at ``text_encoder_path``."""

    text_encoder_path: str | None = None
    text_layer: int = -2
    train_text: bool = False
    max_length: int = 77
    embed_dim: int = 512
    audio_widths: tuple[int, ...] = (32, 64, 128, 256)
    n_mels: int = 64
    sample_rate: int = 44100
    window_samples: int = 441000
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2,
                                                 inv_gamma=1e6, power=0.5, warmup=0.99)
    ema: EMAConfig = EMAConfig(enabled=False)
    data: DataConfig = DataConfig()
    trainer: TrainerConfig = TrainerConfig()

    def __post_init__(self) -> None:
        if self.text_encoder_path is None:
            raise ConfigError("text_encoder_path is required: a local Hugging Face folder of the "
                              "text tower to start from (e.g. a sentence-transformer or RoBERTa)")


@dataclass(frozen=True)
class DistillTrainConfig:
    """Distilling a v-objective model into a few-step one without guidance: consistency
    distillation with the teacher's guidance built in (``longplay.training.distill``).

    The student starts as a copy of ``teacher`` (a model folder; ``longplay train distill
    --teacher`` overrides it) and learns, on the training data's latents, to give from any
    level of the teacher's grid of ``teacher_steps`` log-linear noise levels (``sigma_min``
    to ``sigma_max``) the same x0 estimate as its slowly moving copy (``target_decay``)
    gives one guided teacher step further down (Euler, guidance ``guidance_scale``). The
    exported model samples with the "consistency" sampler in ``student_steps`` steps and
    guidance 1 by default.
    """

    teacher: str | None = None
    text_encoder_path: str | None = None
    teacher_steps: int = 50
    sigma_min: float = 0.03
    sigma_max: float = 500.0
    guidance_scale: float = 7.0
    target_decay: float = 0.95
    student_steps: int = 4
    window_frames: int | None = None
    """Train on windows of this many latent frames (default the model's window)."""
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4, betas=(0.9, 0.99), weight_decay=1e-3,
                                                 inv_gamma=1e5, power=0.5, warmup=0.9)
    ema: EMAConfig = EMAConfig(max_decay=0.995)
    data: DataConfig = DataConfig(kind="latents")
    trainer: TrainerConfig = TrainerConfig()

    def __post_init__(self) -> None:
        if self.teacher_steps < 2:
            raise ConfigError(f"teacher_steps must be >= 2, got {self.teacher_steps}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ConfigError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min} and "
                              f"{self.sigma_max}")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 1):
            raise ConfigError(f"guidance_scale must be >= 1, got {self.guidance_scale}")
        if not 0 <= self.target_decay < 1:
            raise ConfigError(f"target_decay must be in [0, 1), got {self.target_decay}")
        if self.student_steps < 1:
            raise ConfigError(f"student_steps must be >= 1, got {self.student_steps}")
        if self.window_frames is not None and self.window_frames < 1:
            raise ConfigError(f"window_frames must be a positive number of latent frames, got "
                              f"{self.window_frames}")


@dataclass(frozen=True)
class LoRATrainConfig:
    """Training a LoRA (or DoRA) adapter of a model's diffusion transformer
    (``longplay train lora``, :mod:`longplay.training.lora`).

    ``base`` (a model folder; ``--model`` overrides it) stays frozen: only the adapter's
    low-rank weights are trained, optimised and checkpointed. ``targets``: the blocks'
    linear layers to adapt, a preset ("attention": the self- and cross-attention
    projections; "feed-forward"; "all") or a list of names such as ``self_attn.qkv`` and
    ``ff.proj_in``. ``alpha / rank`` scales the update, as in peft; ``dora`` trains a
    weight-decomposed adapter (DoRA) instead.
    """

    base: str | None = None
    text_encoder_path: str | None = None
    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.0
    targets: str | tuple[str, ...] = "attention"
    dora: bool = False
    cfg_dropout: float = 0.1
    window_frames: int | None = None
    """Train on windows of this many latent frames (default the model's window)."""
    inpaint_mask_probabilities: tuple[float, float, float] = (0.1, 0.8, 0.1)
    """For an inpainting base: as in ``DiTTrainConfig``."""
    inpaint_max_segments: int = 10
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0,
                                                 inv_gamma=1e6, power=0.5, warmup=0.9)
    ema: EMAConfig = EMAConfig(enabled=False)
    """Off by default, as adapters usually are trained; when on, the average covers the
    adapter's weights only."""
    data: DataConfig = DataConfig(kind="latents")
    trainer: TrainerConfig = TrainerConfig()

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"rank must be an integer >= 1, got {self.rank!r}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(f"alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.cfg_dropout < 1:
            raise ConfigError(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")
        if self.window_frames is not None and self.window_frames < 1:
            raise ConfigError(f"window_frames must be a positive number of latent frames, got "
                              f"{self.window_frames}")

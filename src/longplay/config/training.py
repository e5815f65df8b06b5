"""The run configurations of the three trainers (VAE, CLAP, DiT) and their parts."""

from __future__ import annotations

import math
from typing import Annotated

from longplay.config.fields import (
    FilePath,
    Fraction,
    FrameCount,
    ModelPath,
    NonNegativeFloat,
    NonNegativeInt,
    OneOf,
    PositiveFloat,
    PositiveInt,
    Probability,
    Range,
    SampleCount,
    SampleRate,
    Seed,
    TextEncoderPath,
    TokenCount,
    TrainingDataPath,
    Width,
)
from longplay.config.loader import ConfigFieldError, config_dataclass
from longplay.config.model import MODEL_PRESETS, VAE_PRESETS, vae_preset
from longplay.errors import ConfigError

DATA_KINDS = ("audio", "latents", "shards")
SHORT_CROP_LENGTHS = ("uniform", "log-uniform")
"""How the lengths of short pieces are drawn (``data.short_crop_lengths``)."""
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true",
              "transformer-engine", "transformer-engine-float16", "32", "16", "bf16", "64")
"""PyTorch Lightning's precisions (the short names are its aliases)."""
STRATEGIES = ("auto", "ddp", "fsdp")
"""The distributed strategies (``--strategy``); "fsdp" is FSDP2 (training.runner)."""
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
VAE_INITS = ("variance_preserving", "pytorch", "pca")
"""How a VAE trained from scratch starts (``VAETrainConfig.init``)."""


@config_dataclass
class OptimizerConfig:
    """AdamW with the inverse-LR schedule of k-diffusion:
    lr(step) = lr * (1 - warmup^(step + 1)) * (1 + step / inv_gamma)^-power."""

    lr: PositiveFloat = 5e-5
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    weight_decay: NonNegativeFloat = 1e-3
    inv_gamma: PositiveFloat = 1e6
    power: NonNegativeFloat = 0.5
    warmup: Fraction = 0.99


@config_dataclass
class EMAConfig:
    """EMA with warm-up: decay(step) = min(max_decay, 1 - (1 + step / inv_gamma)^-power)."""

    enabled: bool = True
    max_decay: Fraction = 0.9999
    power: PositiveFloat = 0.75
    inv_gamma: PositiveFloat = 1.0


@config_dataclass
class DataConfig:
    """Where training examples come from.

    kind: "audio" (a folder of audio files with metadata), "shards" (tar shards, paths or
    fsspec URLs in ``path`` separated by commas) or "latents" (a folder written by
    ``longplay data encode``). The window is the model's ``sample_size``.
    ``short_crop_probability`` (latents only): the share of windows that hold a short
    piece of whole seconds followed by silence, with the timing conditioning of that
    piece (:class:`~longplay.data.LatentDataset`), so that the model learns to end the
    music at ``seconds_total`` even where the pieces are longer than the window.
    ``short_crop_lengths``: how those pieces' lengths are drawn, "uniform" in whole
    seconds up to the window's, or "log-uniform" (as many per octave of length, so that
    short requests in a long window are trained on as often as long ones).
    ``window_frames_min`` (latents only): vary the window's length per batch, among the
    multiples of 64 latent frames from this up to the training window, and the training
    window itself (the windows that a pipeline's "fit" mode samples); None: every window
    is the training window.
    ``window_full_share`` (with ``window_frames_min``): the share of batches in the
    training window itself, the rest drawn uniformly among all the lengths; 0: uniform.
    """

    kind: Annotated[str, OneOf(DATA_KINDS)] = "audio"
    path: TrainingDataPath | None = None
    random_crop: bool = True
    phase_flip: bool = False
    min_duration_s: NonNegativeFloat = 0.0
    num_workers: NonNegativeInt = 0
    short_crop_probability: Fraction = 0.0
    short_crop_lengths: Annotated[str, OneOf(SHORT_CROP_LENGTHS)] = "uniform"
    window_frames_min: FrameCount | None = None
    window_full_share: Fraction = 0.0


@config_dataclass
class TrainerConfig:
    """The engine's settings (PyTorch Lightning)."""

    max_steps: PositiveInt = 100000
    batch_size: PositiveInt = 8
    accumulate_grad_batches: PositiveInt = 1
    precision: Annotated[str, OneOf(PRECISIONS)] = "32-true"
    devices: PositiveInt = 1
    num_nodes: PositiveInt = 1
    strategy: Annotated[str, OneOf(STRATEGIES)] = "auto"
    accelerator: Annotated[str, OneOf(ACCELERATORS)] = "auto"
    gradient_checkpointing: bool = False
    gradient_clip_val: PositiveFloat | None = None
    log_every_n_steps: PositiveInt = 10
    checkpoint_every_n_steps: PositiveInt = 1000
    demo_every_n_steps: NonNegativeInt = 0
    """0: no demos."""
    seed: Seed = 0


@config_dataclass
class DemoConfig:
    """Periodic demo generations during DiT training."""

    prompts: tuple[str, ...] = ("upbeat electronic dance music, 128 BPM",
                                "solo piano, slow and calm")
    guidance_scales: tuple[PositiveFloat, ...] = (1.0, 3.0, 6.0)
    steps: PositiveInt = 50
    duration_s: PositiveFloat | None = None
    sampler: str | None = None


@config_dataclass
class DiTTrainConfig:
    """Training (or fine-tuning) the diffusion transformer.

    Either ``init_from`` (a model folder to fine-tune: architecture and weights, VAE and
    conditioning included) or ``preset`` (an architecture from MODEL_PRESETS, trained
    from scratch, with the VAE from ``vae_path`` or random when it is None).
    """

    preset: Annotated[str, OneOf(MODEL_PRESETS)] | None = "debug"
    init_from: FilePath | None = None
    vae_path: FilePath | None = None
    text_encoder_path: TextEncoderPath | None = None
    text_layer: int | None = None
    """With ``preset``: the encoder layer whose features condition the DiT (default the
    preset's); the feature width is read from the encoder, so any Hugging Face encoder
    (a CLAP text tower, a sentence-transformer) can be used."""
    cfg_dropout: Fraction = 0.1
    window_frames: FrameCount | None = None
    """Train on windows of this many latent frames instead of the model's whole window
    (pre-training on short windows, as the paper does before the full window); the
    model's window (its sample_size) is unchanged."""
    inpaint: bool = False
    """Train a model that inpaints: its DiT also takes a keep mask and the masked latents
    (stable-audio-tools' ``diffusion_cond_inpaint``). A model without those inputs gains
    them with zero weights, so it starts as it was."""
    inpaint_mask_probabilities: tuple[Probability, Probability, Probability] = (0.1, 0.8, 0.1)
    """How often a training mask is random segments, everything generated (from
    scratch), or a kept prefix (continuation): stable-audio-tools' defaults."""
    inpaint_max_segments: PositiveInt = 10
    padding_loss_share: Fraction | None = None
    """The share of a padded window's loss that its padding carries (the silence after a
    piece shorter than the window: ``data.short_crop_probability``, short tracks), the
    rest its piece's, each spread evenly over its frames
    (``diffusion.padding_frame_weights``). None: every frame alike, as the paper trains;
    a 10 s piece in the 6144-frame window is then 3.5 % of its window's loss."""
    optimizer: OptimizerConfig = OptimizerConfig()
    ema: EMAConfig = EMAConfig()
    data: DataConfig = DataConfig()
    trainer: TrainerConfig = TrainerConfig()
    demo: DemoConfig = DemoConfig()

    def __post_init__(self) -> None:
        if (self.preset is None) == (self.init_from is None):
            raise ConfigError("give exactly one of preset (train from scratch) and init_from "
                              "(fine-tune a model folder)")
        _check_mask_probabilities(self.inpaint_mask_probabilities)


@config_dataclass
class VAETrainConfig:
    """Training (or fine-tuning) the VAE (SYSTEM.md section 2).

    ``init_from``: a VAE to start from (any source ``load_vae`` reads); else the
    ``preset`` architecture from scratch. ``freeze_encoder`` trains the decoder only
    (as the public model's decoder was fine-tuned). Steps alternate between the
    generator and the discriminator; ``adversarial_start_step`` delays the GAN terms.
    """

    preset: Annotated[str, OneOf(VAE_PRESETS)] | None = "debug"
    init_from: FilePath | None = None
    freeze_encoder: bool = False
    window_samples: SampleCount = 65536
    loss_weights: tuple[NonNegativeFloat, NonNegativeFloat, NonNegativeFloat,
                        NonNegativeFloat] = (1.0, 0.1, 5.0, 1e-4)
    """reconstruction, adversarial, feature matching, KL."""
    mel_loss_weight: NonNegativeFloat = 0.0
    """Weight of an extra multi-scale mel loss (``autoencoder.MultiScaleMelLoss``, the
    Descript Audio Codec's); 0 keeps the objective of SYSTEM.md."""
    low_band_loss_weight: NonNegativeFloat = 0.0
    """Weight of an extra loss on DC and the bins below 500 Hz, unweighted
    (``autoencoder.LowBandLoss``); 0 keeps the objective of SYSTEM.md."""
    long_window_loss_weight: NonNegativeFloat = 0.0
    """Weight of an extra STFT loss at windows of 8192 and 4096 samples, unweighted
    (``autoencoder.losses.LONG_WINDOW_FFT_SIZES``); 0 keeps the objective of SYSTEM.md."""
    adversarial_start_step: NonNegativeInt = 0
    posterior_warmup_steps: NonNegativeInt = 0
    """For the first N steps the decoder gets the posterior mean instead of a sample: a
    warm-up in which it learns to follow its input before the latent noise is added
    (with the noise from the start, a small VAE settles on the average spectrum)."""
    init: Annotated[str, OneOf(VAE_INITS)] = "variance_preserving"
    """From scratch: "variance_preserving" (``init_vae_for_training``: the input reaches
    the latent from the first step) or "pytorch" (the default initialisation of the
    layers, as stable-audio-tools), both for an Oobleck VAE (a spectral VAE keeps its
    own); or "pca", for a spectral VAE only: its linear paths set from a principal
    component analysis of ``LINEAR_INIT_WINDOWS`` training windows before the first step
    (``autoencoder.spectral.init_linear_paths``)."""
    discriminator_filters: Width = 64
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
        if self.init == "pca" and self.preset is not None:
            architecture = vae_preset(self.preset).architecture
            if architecture != "spectral":
                raise ConfigError(f"init 'pca' fits the linear paths of a spectral VAE; preset "
                                  f"{self.preset!r} is an {architecture} VAE: choose a "
                                  "spectral preset or another init")


@config_dataclass
class CLAPTrainConfig:
    """Training the CLAP text-audio model (stage 2): contrastive, with the text tower
    initialised from the local Hugging Face encoder at ``text_encoder_path``."""

    text_encoder_path: TextEncoderPath | None = None
    text_layer: int = -2
    train_text: bool = False
    max_length: TokenCount = 77
    embed_dim: Width = 512
    audio_widths: tuple[Width, ...] = (32, 64, 128, 256)
    n_mels: Annotated[int, Range(1, 1024)] = 64
    sample_rate: SampleRate = 44100
    window_samples: SampleCount = 441000
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2,
                                                 inv_gamma=1e6, power=0.5, warmup=0.99)
    ema: EMAConfig = EMAConfig(enabled=False)
    data: DataConfig = DataConfig()
    trainer: TrainerConfig = TrainerConfig()

    def __post_init__(self) -> None:
        if self.text_encoder_path is None:
            raise ConfigError("text_encoder_path is required: a local Hugging Face folder of the "
                              "text tower to start from (e.g. a sentence-transformer or RoBERTa)")


DISTILL_METHODS = ("consistency", "dmd")


@config_dataclass
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

    teacher: FilePath | None = None
    text_encoder_path: TextEncoderPath | None = None
    teacher_steps: Annotated[int, Range(2)] = 50
    sigma_min: PositiveFloat = 0.03
    sigma_max: PositiveFloat = 500.0
    guidance_scale: Annotated[float, Range(1)] = 7.0
    target_decay: Fraction = 0.95
    student_steps: PositiveInt = 4
    student_sigma_min: PositiveFloat | None = None
    """Where the student's sampling grid ends (its ``inference.sigma_min``; None: the
    pipeline's 0.03): its ``student_steps`` levels are log-linear from ``sigma_max`` down
    to this one, which is left out. Choose it on prompts you do not report on
    (``benchmarks/few_step.py --prompt-set validation --student-sigma-min ...``)."""
    phased: bool = False
    """Phased consistency distillation (Wang et al. 2024, "Phased Consistency Models"):
    the teacher's grid is cut into ``student_steps`` phases at the student's own sampling
    levels, and the student learns to map any level to the lower end of its phase (not
    to x0). The exported model samples with deterministic Euler steps between the phase
    ends (the "phased" sampler), so each of its steps follows the teacher's guided path
    instead of drawing fresh noise. Needs ``teacher_steps - 1`` divisible by
    ``student_steps`` (the phase ends are teacher levels) and no ``student_sigma_min``
    (the last phase ends at ``sigma_min``)."""
    method: Annotated[str, OneOf(DISTILL_METHODS)] = "consistency"
    """"consistency" (above), or "dmd": distribution matching distillation without the
    regression loss (Yin et al. 2024, "Improved Distribution Matching Distillation",
    DMD2). The student generates from noise with its own few-step sampler, and learns
    from the difference of two denoisers on its outputs, noised: the guided teacher's
    (the target distribution) and a *fake* one, started from the teacher and trained all
    along on the student's outputs. Optimiser steps alternate: ``fake_updates`` steps of
    the fake denoiser, then one of the student. It matches the distribution the
    teacher's stochastic sampler draws from rather than its ODE's paths, and the training
    latents give only the prompts, timing and window."""
    init_from: FilePath | None = None
    """Start the student from this model folder (a few-step model of the teacher's
    architecture, e.g. one distilled before) instead of from the teacher."""
    fake_updates: PositiveInt = 4
    """dmd: optimiser steps of the fake denoiser per step of the student."""
    fake_warmup_steps: NonNegativeInt = 0
    """dmd: optimiser steps, at the start, of the fake denoiser alone (it starts as the
    teacher, not as a model of the student's outputs)."""
    fake_optimizer: OptimizerConfig = OptimizerConfig(lr=1e-5, betas=(0.0, 0.99),
                                                      weight_decay=0.0, inv_gamma=1e5,
                                                      power=0.5, warmup=0.0)
    """dmd: the fake denoiser's optimiser (``optimizer`` is the student's)."""
    window_frames: FrameCount | None = None
    """Train on windows of this many latent frames (default the model's window)."""
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4, betas=(0.9, 0.99), weight_decay=1e-3,
                                                 inv_gamma=1e5, power=0.5, warmup=0.9)
    ema: EMAConfig = EMAConfig(max_decay=0.995)
    data: DataConfig = DataConfig(kind="latents")
    trainer: TrainerConfig = TrainerConfig()

    def __post_init__(self) -> None:
        if self.method == "dmd" and self.phased:
            raise ConfigFieldError("phased", "phases belong to consistency distillation; "
                                             "with method: dmd leave phased out")
        if self.method == "dmd" and self.trainer.gradient_clip_val is not None:
            raise ConfigFieldError("trainer.gradient_clip_val",
                                   "method: dmd steps two optimisers itself, which "
                                   "Lightning's clipping does not support; leave it out")
        if not self.sigma_min < self.sigma_max:
            raise ConfigFieldError("sigma_max", f"must be above sigma_min {self.sigma_min}, "
                                                f"got {self.sigma_max}")
        if self.phased and (self.teacher_steps - 1) % self.student_steps:
            raise ConfigFieldError("teacher_steps", f"with phased: true, teacher_steps - 1 "
                                                    f"must be a multiple of student_steps "
                                                    f"{self.student_steps} (the phases end on "
                                                    f"teacher levels), got {self.teacher_steps}"
                                                    f"; e.g. {self._phased_teacher_steps()}")
        if self.phased and self.student_sigma_min is not None:
            raise ConfigFieldError("student_sigma_min", "a phased student's last phase ends "
                                                        "at sigma_min; set sigma_min instead")
        if self.student_sigma_min is not None and not self.student_sigma_min < self.sigma_max:
            raise ConfigFieldError("student_sigma_min", f"must be below sigma_max "
                                                        f"{self.sigma_max}, got "
                                                        f"{self.student_sigma_min}")

    def _phased_teacher_steps(self) -> int:
        """The nearest teacher_steps that phased distillation accepts."""
        k = self.student_steps
        return max(1, round((self.teacher_steps - 1) / k)) * k + 1


@config_dataclass
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

    base: ModelPath | None = None
    text_encoder_path: TextEncoderPath | None = None
    rank: Width = 16
    alpha: PositiveFloat = 16.0
    dropout: Fraction = 0.0
    targets: str | tuple[str, ...] = "attention"
    dora: bool = False
    cfg_dropout: Fraction = 0.1
    window_frames: FrameCount | None = None
    """Train on windows of this many latent frames (default the model's window)."""
    inpaint_mask_probabilities: tuple[Probability, Probability, Probability] = (0.1, 0.8, 0.1)
    """For an inpainting base: as in ``DiTTrainConfig``."""
    inpaint_max_segments: PositiveInt = 10
    padding_loss_share: Fraction | None = None
    """As in ``DiTTrainConfig``: the share of a padded window's loss on its padding."""
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0,
                                                 inv_gamma=1e6, power=0.5, warmup=0.9)
    ema: EMAConfig = EMAConfig(enabled=False)
    """Off by default, as adapters usually are trained; when on, the average covers the
    adapter's weights only."""
    data: DataConfig = DataConfig(kind="latents")
    trainer: TrainerConfig = TrainerConfig()

    def __post_init__(self) -> None:
        _check_mask_probabilities(self.inpaint_mask_probabilities)


def _check_mask_probabilities(probabilities: tuple[float, float, float]) -> None:
    if not math.isclose(sum(probabilities), 1.0):
        raise ConfigFieldError("inpaint_mask_probabilities", f"must be 3 non-negative numbers "
                                                             f"summing to 1, got "
                                                             f"{list(probabilities)}")

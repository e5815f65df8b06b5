"""Loading whole text-to-audio models: Stable Audio Open 1.0 / Open Small folders in
the stable-audio-tools layout, and the diffusers layout of Stable Audio Open 1.0."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from longplay.builders import (
    DiffusionModel,
    build_conditioner,
    build_dit,
    build_text_encoder,
    build_vae,
)
from longplay.checkpoints.files import CheckpointError, read_config, read_state_dict
from longplay.checkpoints.formats import (
    TEXT_ENCODER_DIR,
    diffusion_config_from_diffusers,
    diffusion_config_from_sat,
)
from longplay.checkpoints.keymaps import conditioner_module_rows, dit_module_rows
from longplay.checkpoints.remap import (
    find_weight_file,
    list_keys,
    own_to_foreign,
    remap_state,
    state_shapes,
)
from longplay.checkpoints.vae import (
    read_diffusers_vae,
    read_sat_model_state,
    vae_state_to_own_names,
)
from longplay.conditioning import resolve_text_encoder
from longplay.config import DiffusionModelConfig, TextConditionerConfig
from longplay.errors import TextEncoderError
from longplay.layers import rotary_inverse_frequencies
from longplay.transformer import DiffusionTransformer

__all__ = [
    "SAT_CONDITIONER_PREFIX",
    "SAT_DIT_PREFIX",
    "SAT_GAMMA_BETA_MODULES",
    "SAT_LAYERNORM_PARAMS",
    "SAT_VAE_PREFIX",
    "DiffusionModel",
    "load_diffusion_model",
    "read_diffusion_config",
    "resolve_model_text_encoder",
]

logger = logging.getLogger(__name__)

SAT_DIT_PREFIX = "model.model."
SAT_CONDITIONER_PREFIX = "conditioner.conditioners."
SAT_VAE_PREFIX = "pretransform.model."
SAT_GAMMA_BETA_MODULES = ("self_norm", "cross_norm", "ff_norm")
SAT_LAYERNORM_PARAMS = {"weight": "gamma", "bias": "beta"}
"""stable-audio-tools names the DiT's LayerNorm parameters gamma and beta."""


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


def resolve_model_text_encoder(folder: Path, text: TextConditionerConfig,
                               override: str | Path | None = None) -> Path:
    """The text encoder of the model in ``folder``: ``override`` if given, else the
    config's ``model_path`` (relative to the folder), else ``folder/text_encoder``, else
    a packaged encoder of that name. CheckpointError listing what was tried otherwise."""
    candidates = ((override,) if override is not None
                  else (text.model_path, TEXT_ENCODER_DIR, text.name))
    try:
        return resolve_text_encoder(*candidates, base=folder).path
    except TextEncoderError as err:
        raise CheckpointError(f"{folder}: the {text.kind} text encoder '{text.name}' of this "
                              f"model: {err}") from None


def _assemble(config: DiffusionModelConfig, vae_state, cond_state, dit_state, *, source: Path,
              text_path: Path | None, tokenizer_path: Path | None, device,
              dtype: torch.dtype, dit_dtype: torch.dtype) -> DiffusionModel:
    with torch.device("meta"):
        vae, conditioner, dit = (build_vae(config.vae), build_conditioner(config.conditioning),
                                 build_dit(config.dit))
    for module, state, module_dtype in ((vae, vae_state, dtype), (conditioner, cond_state, dtype),
                                        (dit, dit_state, dit_dtype)):
        module.load_state_dict({k: v.to(module_dtype) for k, v in state.items()}, strict=True,
                               assign=True)
    text = config.conditioning.text
    text_encoder = (None if text_path is None or text is None else build_text_encoder(
        text, text_path, device=device, dtype=dtype, tokenizer_path=tokenizer_path))
    return DiffusionModel(config, vae.to(device).eval(), conditioner.to(device).eval(),
                          dit.to(device).eval(), text_encoder, source)


def _load_sat_folder(folder: Path, text_encoder_path, device, dtype, dit_dtype,
                     load_text_encoder: bool) -> DiffusionModel:
    config = read_config(folder / "model_config.json", diffusion_config_from_sat)
    state, weights = read_sat_model_state(folder)
    known = (SAT_DIT_PREFIX, SAT_CONDITIONER_PREFIX, SAT_VAE_PREFIX)
    stray = sorted(k for k in state if not k.startswith(known))
    if stray:
        raise CheckpointError(f"{weights}: unexpected keys ({len(stray)}) outside "
                              f"{', '.join(known)}: {list_keys(stray)}")
    vae_state = vae_state_to_own_names(_split(state, SAT_VAE_PREFIX), config.vae,
                                       "stable-audio-tools", weights)
    with torch.device("meta"):
        conditioner = build_conditioner(config.conditioning)
        dit = build_dit(config.dit)
    text = config.conditioning.text
    cond_rows = conditioner_module_rows(config.conditioning.text_id, conditioner.timing_ids,
                                        conditioner.text_proj is not None)
    cond_state = remap_state(_split(state, SAT_CONDITIONER_PREFIX),
                             own_to_foreign(conditioner, cond_rows, 1), state_shapes(conditioner),
                             "conditioner", weights)
    dit_foreign = _split(state, SAT_DIT_PREFIX)
    inv_freq = dit_foreign.pop("transformer.rotary_pos_emb.inv_freq", None)
    dit_keys = own_to_foreign(dit, dit_module_rows(config.dit.depth), 1, SAT_LAYERNORM_PARAMS,
                              SAT_GAMMA_BETA_MODULES)
    dit_state = remap_state(dit_foreign, dit_keys, state_shapes(dit), "DiT", weights)
    _check_rotary(inv_freq, dit, weights)
    text_path = (resolve_model_text_encoder(folder, text, text_encoder_path)
                 if load_text_encoder and text is not None else None)
    return _assemble(config, vae_state, cond_state, dit_state, source=folder,
                     text_path=text_path, tokenizer_path=None, device=device, dtype=dtype,
                     dit_dtype=dit_dtype)


def _load_diffusers_folder(folder: Path, text_encoder_path, device, dtype, dit_dtype,
                           load_text_encoder: bool) -> DiffusionModel:
    config = diffusion_config_from_diffusers(folder)
    vae_state = read_diffusers_vae(folder / "vae").state_dict
    with torch.device("meta"):
        conditioner = build_conditioner(config.conditioning)
        dit = build_dit(config.dit)
    dit_file = find_weight_file(folder / "transformer", ("diffusion_pytorch_model.safetensors",))
    proj_file = find_weight_file(folder / "projection_model",
                                 ("diffusion_pytorch_model.safetensors",))
    dit_state = remap_state(read_state_dict(dit_file),
                            own_to_foreign(dit, dit_module_rows(config.dit.depth), 2),
                            state_shapes(dit), "DiT", dit_file)
    cond_rows = conditioner_module_rows("prompt", conditioner.timing_ids,
                                        conditioner.text_proj is not None)
    cond_state = remap_state(read_state_dict(proj_file), own_to_foreign(conditioner, cond_rows, 2),
                             state_shapes(conditioner), "projection model", proj_file)
    text_path = tokenizer = None
    if load_text_encoder:
        text_path = (folder / TEXT_ENCODER_DIR if text_encoder_path is None
                     else resolve_model_text_encoder(folder, config.conditioning.text,
                                                     text_encoder_path))
        tokenizer = None if text_encoder_path else folder / "tokenizer"
    return _assemble(config, vae_state, cond_state, dit_state, source=folder, text_path=text_path,
                     tokenizer_path=tokenizer, device=device, dtype=dtype, dit_dtype=dit_dtype)


def load_diffusion_model(path: str | Path, *, text_encoder_path: str | Path | None = None,
                         device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                         dit_dtype: torch.dtype | None = None,
                         load_text_encoder: bool = True) -> DiffusionModel:
    """A text-to-audio model from a Stable Audio Open folder (``model_config.json`` +
    ``model.safetensors``/``model.ckpt``) or a diffusers StableAudioPipeline folder
    (``model_index.json``). The text encoder comes from ``text_encoder_path``, else from
    the folder (see :func:`resolve_model_text_encoder`); it is never downloaded.

    ``dtype`` is the weights' dtype; ``dit_dtype`` (default ``dtype``) the DiT's, so that
    a model run in bfloat16 is loaded that way instead of converted after loading."""
    folder = Path(path)
    dit_dtype = dtype if dit_dtype is None else dit_dtype
    if _layout(folder) == "stable-audio-tools":
        return _load_sat_folder(folder, text_encoder_path, device, dtype, dit_dtype,
                                load_text_encoder)
    return _load_diffusers_folder(folder, text_encoder_path, device, dtype, dit_dtype,
                                  load_text_encoder)


def _layout(folder: Path) -> str:
    """"stable-audio-tools" or "diffusers": the layout of the model folder ``folder``."""
    if not folder.is_dir():
        raise CheckpointError(
            f"model folder {folder} does not exist" if not folder.exists() else
            f"{folder} is a file; a text-to-music model is a folder (model_config.json + "
            "model.safetensors, or a diffusers folder with model_index.json)")
    if (folder / "model_config.json").is_file():
        return "stable-audio-tools"
    if (folder / "model_index.json").is_file():
        return "diffusers"
    raise CheckpointError(f"{folder} holds neither model_config.json (Stable Audio Open / "
                          "stable-audio-tools) nor model_index.json (diffusers)")


def read_diffusion_config(path: str | Path) -> DiffusionModelConfig:
    """The config of a model folder (either layout) without loading any weights: what a
    generation's settings are checked against before the model loads.

    Raises:
        CheckpointError: no model folder, or a config longplay can't use (named).
    """
    folder = Path(path)
    if _layout(folder) == "stable-audio-tools":
        return read_config(folder / "model_config.json", diffusion_config_from_sat)
    return diffusion_config_from_diffusers(folder)

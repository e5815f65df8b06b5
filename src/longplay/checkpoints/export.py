"""Writing model folders in the Stable Audio Open layout (``model_config.json`` +
``model.safetensors`` with stable-audio-tools key names), so that longplay's own models
also open in the reference tools."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from longplay.atomic import atomic_output_paths
from longplay.builders import DiffusionModel
from longplay.checkpoints.diffusion import (
    SAT_CONDITIONER_PREFIX,
    SAT_DIT_PREFIX,
    SAT_GAMMA_BETA_MODULES,
    SAT_LAYERNORM_PARAMS,
    SAT_VAE_PREFIX,
)
from longplay.checkpoints.files import CheckpointError
from longplay.checkpoints.formats import TEXT_ENCODER_DIR, diffusion_config_to_sat
from longplay.checkpoints.keymaps import conditioner_module_rows, dit_module_rows
from longplay.checkpoints.remap import own_to_foreign
from longplay.checkpoints.vae import vae_key_map_of
from longplay.conditioning import packaged_encoder_name
from longplay.layers import rotary_inverse_frequencies


def sat_state_dict(model: DiffusionModel) -> dict[str, torch.Tensor]:
    """All weights of ``model`` under stable-audio-tools names."""
    config = model.config
    out: dict[str, torch.Tensor] = {}
    dit_map = own_to_foreign(model.dit, dit_module_rows(config.dit.depth), 1,
                             SAT_LAYERNORM_PARAMS, SAT_GAMMA_BETA_MODULES)
    for key, tensor in model.dit.state_dict().items():
        out[SAT_DIT_PREFIX + dit_map[key]] = tensor
    out[SAT_DIT_PREFIX + "transformer.rotary_pos_emb.inv_freq"] = rotary_inverse_frequencies(
        model.dit.rotary_dim)
    conditioner = model.conditioner
    rows = conditioner_module_rows(config.conditioning.text_id, conditioner.timing_ids,
                                   conditioner.text_proj is not None)
    cond_map = own_to_foreign(conditioner, rows, 1)
    for key, tensor in conditioner.state_dict().items():
        out[SAT_CONDITIONER_PREFIX + cond_map[key]] = tensor
    vae_map = vae_key_map_of(config.vae)
    for key, tensor in model.vae.state_dict().items():
        foreign = vae_map.foreign_key(key)
        if foreign is None:
            raise CheckpointError(f"no stable-audio-tools name for VAE weight {key}")
        out[SAT_VAE_PREFIX + foreign] = tensor
    return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}


def save_model_folder(model: DiffusionModel, folder: str | Path, *,
                      copy_text_encoder: bool = False, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``model`` as a model folder that ``TextToMusicPipeline.from_pretrained`` and
    stable-audio-tools load. The text encoder is referenced by path in the config
    (``model_path``; by name for an encoder installed as a package), or copied into
    ``folder/text_encoder`` with ``copy_text_encoder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = model.config.conditioning.text
    text_path = None
    if text is not None:
        source = model.text_encoder.path if model.text_encoder is not None else (
            Path(text.model_path) if text.model_path else None)
        if source is None:
            raise CheckpointError("the model's text encoder has no known path to reference")
        if copy_text_encoder:
            _copy_folder(Path(source), folder / TEXT_ENCODER_DIR)
            text_path = TEXT_ENCODER_DIR
        else:
            # An encoder installed as a package is referenced by its name, which stays
            # valid on other machines.
            text_path = packaged_encoder_name(source) or str(Path(source).resolve())
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in sat_state_dict(model).items()}
    config = diffusion_config_to_sat(model.config, text_path)
    # The weights and the config that describes them appear together (the config last).
    with atomic_output_paths(folder / "model.safetensors", folder / "model_config.json") as (
            weights_tmp, config_tmp):
        save_file(tensors, str(weights_tmp))
        config_tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def _copy_folder(source: Path, target: Path) -> None:
    """Copy the folder ``source`` to ``target`` whole or not at all: into a hidden folder
    beside it first, then moved into place (an older ``target`` is replaced only then)."""
    staging = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
    try:
        shutil.copytree(source, staging)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

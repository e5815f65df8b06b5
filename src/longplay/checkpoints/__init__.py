"""Reading and writing model files and folders: the public layouts (stable-audio-tools,
diffusers) through their config formats (:mod:`.formats`) and key maps
(:mod:`.keymaps`), longplay's exports, and the CLAP folder."""

from longplay.checkpoints.clap import (
    clap_text_encoder_for_conditioning,
    load_clap,
    read_clap_config,
    save_clap,
)
from longplay.checkpoints.diffusion import (
    DiffusionModel,
    load_diffusion_model,
    read_diffusion_config,
)
from longplay.checkpoints.export import save_model_folder
from longplay.checkpoints.files import model_fingerprint, read_state_dict, write_safetensors
from longplay.checkpoints.keymaps import VAE_MODULE_TABLE, KeyMap, vae_key_map
from longplay.checkpoints.vae import (
    VAEWeights,
    infer_vae_config,
    load_vae,
    read_vae_weights,
    save_vae,
)
from longplay.errors import CheckpointError

__all__ = [
    "VAE_MODULE_TABLE",
    "CheckpointError",
    "DiffusionModel",
    "KeyMap",
    "VAEWeights",
    "clap_text_encoder_for_conditioning",
    "infer_vae_config",
    "load_clap",
    "load_diffusion_model",
    "load_vae",
    "model_fingerprint",
    "read_clap_config",
    "read_diffusion_config",
    "read_state_dict",
    "read_vae_weights",
    "save_clap",
    "save_model_folder",
    "save_vae",
    "vae_key_map",
    "write_safetensors",
]

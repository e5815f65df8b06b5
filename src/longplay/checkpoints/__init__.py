"""Reading and writing model files, and the key maps of the public layouts."""

from longplay.checkpoints.files import CheckpointError, read_state_dict, write_safetensors
from longplay.checkpoints.keymaps import VAE_MODULE_TABLE, KeyMap, vae_key_map
from longplay.checkpoints.vae import (
    VAEWeights,
    build_vae,
    infer_vae_config,
    load_vae,
    read_vae_weights,
    save_vae,
)

__all__ = [
    "VAE_MODULE_TABLE",
    "CheckpointError",
    "KeyMap",
    "VAEWeights",
    "build_vae",
    "infer_vae_config",
    "load_vae",
    "read_state_dict",
    "read_vae_weights",
    "save_vae",
    "vae_key_map",
    "write_safetensors",
]

"""Loading and saving the audio VAE in the public layouts.

Accepted sources (see ``read_vae_weights``):

* a Stable Audio Open model folder: ``model_config.json`` + ``model.safetensors``
  (or ``model.ckpt``), VAE keys under ``pretransform.model.``;
* a standalone VAE checkpoint (a stable-audio-tools autoencoder folder, or a
  single ``.safetensors``/``.ckpt`` file) with the same keys unprefixed, or under
  ``autoencoder_ema.ema_model.`` / ``autoencoder.`` in a training checkpoint (the
  EMA weights are preferred);
* a Hugging Face diffusers folder: ``vae/config.json`` +
  ``vae/diffusion_pytorch_model.safetensors`` (or the ``vae`` folder itself).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from longplay.atomic import write_json_atomic
from longplay.autoencoder import AudioVAE
from longplay.builders import build_vae
from longplay.checkpoints.files import (
    CheckpointError,
    read_config,
    read_state_dict,
    shared_vae_folder,
    write_safetensors,
)
from longplay.checkpoints.formats import (
    vae_config_from_diffusers,
    vae_config_from_sat_model_config,
    vae_config_to_sat_autoencoder,
)
from longplay.checkpoints.keymaps import KeyMap, vae_key_map
from longplay.checkpoints.remap import find_weight_file, remap_state
from longplay.config import ConfigError, VAEConfig

logger = logging.getLogger(__name__)

SAT_DIFFUSION_PREFIXES = ("pretransform.model.", "diffusion.pretransform.model.")
SAT_AUTOENCODER_PREFIXES = ("autoencoder_ema.ema_model.", "autoencoder.", "")
DIFFUSERS_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
SAT_WEIGHT_NAMES = ("model.safetensors", "model.ckpt")


def read_sat_model_state(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The state dict of the Stable Audio Open model folder ``folder`` and its weight
    file, with the VAE's weights taken from the folder that ``vae_weights_from`` names
    (:func:`shared_vae_folder`), when the config names one.

    Raises:
        CheckpointError: the shared folder is wrong (:func:`shared_vae_folder`), or either
            file holds VAE weights where the other should (named).
    """
    weights = find_weight_file(folder, SAT_WEIGHT_NAMES)
    state = read_state_dict(weights)
    other = shared_vae_folder(folder)
    if other is None:
        return state, weights
    prefix = SAT_DIFFUSION_PREFIXES[0]
    if any(k.startswith(prefix) for k in state):
        raise CheckpointError(f"{weights} holds VAE weights ({prefix}...) although its config "
                              f"shares the VAE of {other}: remove one or the other")
    other_weights = find_weight_file(other, SAT_WEIGHT_NAMES)
    vae = {k: v for k, v in read_state_dict(other_weights).items() if k.startswith(prefix)}
    if not vae:
        raise CheckpointError(f"{other_weights} holds no VAE weights ({prefix}...) to share")
    return {**state, **vae}, weights


@dataclass(frozen=True)
class VAEWeights:
    """A VAE read from disk: its config and its weights under longplay's names."""

    config: VAEConfig
    state_dict: dict[str, torch.Tensor]
    layout: str  # "stable-audio-tools" or "diffusers"
    source: Path


FIRST_VAE_KEYS = {"oobleck": "encoder.layers.0.weight_v", "spectral": "encoder.stem.weight"}
"""The key that tells where a VAE's weights are in a file, by architecture."""


def _select_prefix(state: dict[str, torch.Tensor], prefixes: tuple[str, ...], source: Path,
                   config: VAEConfig | None = None) -> str:
    """The prefix under which ``state`` holds the VAE (of ``config``'s architecture; of
    either when None)."""
    probes = tuple(FIRST_VAE_KEYS.values()) if config is None else (
        FIRST_VAE_KEYS[config.architecture],)
    for prefix in prefixes:
        if any(f"{prefix}{probe}" in state for probe in probes):
            return prefix
    wanted = " or ".join(f"'{p}{probe}'" for p in prefixes for probe in probes)
    raise CheckpointError(f"{source} holds no VAE weights in the stable-audio-tools layout "
                          f"(looked for {wanted})")


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str,
                  other_prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with it removed; with an empty prefix, everything
    outside the other known prefixes."""
    if prefix:
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not any(p and k.startswith(p)
                                                        for p in other_prefixes)}


def infer_vae_config(state: dict[str, torch.Tensor], sample_rate: int = 44100) -> VAEConfig:
    """The VAE architecture from the shapes of stable-audio-tools-layout weights.

    Used for a bare weight file with no config next to it. The sample rate can't be
    read from weights: it defaults to 44100 Hz; ``final_tanh`` is assumed off. A nearest
    upsampling decoder is recognised by its deeper upsampling conv.
    """
    try:
        stem = state["encoder.layers.0.weight_v"]  # [D0, C, 7]
        pattern = re.compile(r"encoder\.layers\.(\d+)\.layers\.4\.weight_v")
        block_ids = sorted(int(m.group(1)) for k in state if (m := pattern.fullmatch(k)))
        downs = [state[f"encoder.layers.{i}.layers.4.weight_v"] for i in block_ids]  # [Do, Di, 2s]
        dec_stem = state["decoder.layers.0.weight_v"]  # [Dn, latent, 7]
        dec_head = state[f"decoder.layers.{len(block_ids) + 2}.weight_v"]  # [C, D0', 7]
    except KeyError as err:
        spectral = ("; a spectral VAE's weights need the model_config.json saved with them"
                    if "encoder.frame_blocks.0.dwconv.weight" in state else "")
        raise CheckpointError(f"can't infer the VAE architecture: weight {err} is missing"
                              f"{spectral}") from None
    if block_ids != list(range(1, len(block_ids) + 1)) or not block_ids:
        raise CheckpointError(f"can't infer the VAE architecture: encoder blocks {block_ids}")
    channels = stem.shape[0]
    widths = [d.shape[0] for d in downs]
    if any(w % channels for w in widths):
        raise CheckpointError(f"can't infer the VAE architecture: block widths {widths} are not "
                              f"multiples of the stem width {channels}")
    return VAEConfig(
        audio_channels=stem.shape[1],
        sample_rate=sample_rate,
        encoder_channels=channels,
        decoder_channels=dec_head.shape[1],
        channel_mults=tuple(w // channels for w in widths),
        strides=tuple(d.shape[-1] // 2 for d in downs),
        latent_dim=dec_stem.shape[1],
        final_tanh=False,
        nearest_upsample="decoder.layers.1.layers.1.1.weight_v" in state,
    )


def vae_key_map_of(config: VAEConfig, layout: str = "stable-audio-tools",
                   shapes: dict[str, tuple[int, ...]] | None = None) -> KeyMap:
    """The key map of the VAE of ``config`` in ``layout``: the Oobleck table
    (:func:`~longplay.checkpoints.keymaps.vae_key_map`), or for a spectral VAE, which only
    longplay reads, its own names, written as they are in the stable-audio-tools layout
    (those of ``shapes``, :func:`build_vae_shapes` of the config when not given)."""
    if config.architecture == "oobleck":
        return vae_key_map(layout, len(config.strides), nearest_upsample=config.nearest_upsample)
    if layout != "stable-audio-tools":
        raise CheckpointError(f"a {config.architecture} VAE has no {layout} layout: save it as a "
                              "stable-audio-tools folder (model_config.json + model.safetensors)")
    shapes = build_vae_shapes(config) if shapes is None else shapes
    return KeyMap(to_own={m: m for m in {k.rpartition(".")[0] for k in shapes}})


def vae_state_to_own_names(foreign: dict[str, torch.Tensor], config: VAEConfig, layout: str,
                  source: Path) -> dict[str, torch.Tensor]:
    """Rename ``foreign`` weights to longplay's names; every key must be accounted for.
    Weights of another architecture than ``config``'s are an error that names the config
    fields they disagree with (when the weights' own architecture can be read)."""
    shapes = build_vae_shapes(config)
    key_map = vae_key_map_of(config, layout, shapes)
    own_to_foreign = {k: key_map.foreign_key(k) for k in shapes}
    try:
        return remap_state(foreign, own_to_foreign, shapes, f"VAE ({layout} layout)", source)
    except CheckpointError as err:
        raise CheckpointError(f"{err}{_disagreeing_fields(foreign, config, layout)}") from None


def _disagreeing_fields(foreign: dict[str, torch.Tensor], config: VAEConfig, layout: str) -> str:
    """"; the weights are of a VAE with audio_channels 2 (the config says 1)..." for the
    fields whose values in the config differ from the weights' (stable-audio-tools layout)."""
    if layout != "stable-audio-tools" or config.architecture != "oobleck":
        return ""
    try:
        found = infer_vae_config(foreign, config.sample_rate)
    except (CheckpointError, ConfigError):
        return ""
    names = ("audio_channels", "encoder_channels", "decoder_channels", "channel_mults",
             "strides", "latent_dim", "nearest_upsample")
    wrong = [f"{n} {getattr(found, n)} (the config says {getattr(config, n)})" for n in names
             if getattr(found, n) != getattr(config, n)]
    return f"; the weights are of a VAE with {', '.join(wrong)}" if wrong else ""


def build_vae_shapes(config: VAEConfig) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the architecture of ``config``, without allocating it."""
    with torch.device("meta"):
        model = build_vae(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _read_sat_folder(folder: Path) -> VAEWeights:
    cfg_path = folder / "model_config.json"
    config = read_config(cfg_path, vae_config_from_sat_model_config)
    state, weights = read_sat_model_state(folder)
    return _read_sat_state(state, weights, config)


def _read_sat_state(state: dict[str, torch.Tensor], source: Path,
                    config: VAEConfig | None) -> VAEWeights:
    prefix = _select_prefix(state, SAT_DIFFUSION_PREFIXES + SAT_AUTOENCODER_PREFIXES, source,
                            config)
    if prefix in SAT_DIFFUSION_PREFIXES:
        foreign = _strip_prefix(state, prefix, ())
    else:
        # A VAE file: everything outside the other wrappers (e.g. a discriminator) is the VAE.
        others = (*(p for p in SAT_AUTOENCODER_PREFIXES if p != prefix), "discriminator.")
        foreign = _strip_prefix(state, prefix, others)
    if prefix:
        logger.info("reading VAE weights under %r from %s", prefix, source)
    if config is None:
        config = infer_vae_config(foreign)
        logger.info("no config next to %s: architecture read from the weights (%s)", source, config)
    return VAEWeights(config, vae_state_to_own_names(foreign, config, "stable-audio-tools", source),
                      "stable-audio-tools", source)


def read_diffusers_vae(folder: Path) -> VAEWeights:
    cfg_path = folder / "config.json"
    config = read_config(cfg_path, vae_config_from_diffusers)
    weights = find_weight_file(folder, DIFFUSERS_WEIGHT_NAMES)
    state = read_state_dict(weights)
    return VAEWeights(config, vae_state_to_own_names(state, config, "diffusers", weights),
                      "diffusers", weights)


def read_vae_weights(path: str | Path) -> VAEWeights:
    """Config and weights (longplay names) of the VAE at ``path``: a model folder
    (Stable Audio Open, stable-audio-tools autoencoder, diffusers pipeline or its
    ``vae`` folder) or a single weight file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"model path {path} does not exist: pass a Stable Audio Open model folder "
            "(model_config.json + model.safetensors), a diffusers folder (vae/config.json), "
            "or a VAE weight file (.safetensors / .ckpt)"
        )
    if path.is_dir():
        if (path / "model_config.json").is_file():
            return _read_sat_folder(path)
        if (path / "vae" / "config.json").is_file():
            return read_diffusers_vae(path / "vae")
        if (path / "config.json").is_file():
            return read_diffusers_vae(path)
        raise CheckpointError(
            f"{path} is not a model folder longplay knows: expected model_config.json "
            "(Stable Audio Open / stable-audio-tools), vae/config.json (diffusers pipeline) "
            "or config.json (diffusers AutoencoderOobleck)"
        )
    config = None
    sibling = path.with_name("model_config.json")
    if sibling.is_file():
        config = read_config(sibling, vae_config_from_sat_model_config)
    return _read_sat_state(read_state_dict(path), path, config)


def load_vae(path: str | Path, *, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> AudioVAE:
    """The VAE at ``path`` (see ``read_vae_weights``), in eval mode."""
    return vae_from_weights(read_vae_weights(path), device=device, dtype=dtype)


def vae_from_weights(weights: VAEWeights, *, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32) -> AudioVAE:
    """The VAE of weights already read (``read_vae_weights``), in eval mode."""
    with torch.device("meta"):
        vae = build_vae(weights.config)
    state = {k: v.to(dtype) for k, v in weights.state_dict.items()}
    vae.load_state_dict(state, strict=True, assign=True)
    return vae.to(device=device).eval()


def save_vae(vae: AudioVAE, config: VAEConfig, folder: str | Path) -> Path:
    """Write ``vae`` as a stable-audio-tools autoencoder folder: ``model_config.json``
    (model_type "autoencoder") + ``model.safetensors`` with unprefixed keys."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key_map = vae_key_map_of(config)
    tensors = {}
    for name, tensor in vae.state_dict().items():
        foreign = key_map.foreign_key(name)
        if foreign is None:
            raise CheckpointError(f"no stable-audio-tools name for VAE weight {name}")
        tensors[foreign] = tensor
    write_safetensors(folder / "model.safetensors", tensors)
    model_config = {
        "model_type": "autoencoder",
        "sample_size": 65536,
        "sample_rate": config.sample_rate,
        "audio_channels": config.audio_channels,
        "model": vae_config_to_sat_autoencoder(config),
    }
    write_json_atomic(folder / "model_config.json", model_config)
    return folder

"""The decoder's nearest upsampling (stable-audio-tools' ``use_nearest_upsample``): its
arithmetic, why it exists (a constant stays constant, so no comb of tones), and that
every checkpoint path reads and writes it in the stable-audio-tools layout."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from conftest import SAO1_TINY
from longplay.autoencoder.blocks import NearestUpsample
from longplay.builders import build_diffusion_model, build_vae
from longplay.checkpoints import (
    load_diffusion_model,
    load_vae,
    read_vae_weights,
    save_model_folder,
    save_vae,
    vae_key_map,
)
from longplay.config import VAE_PRESETS

NEAREST = replace(VAE_PRESETS["debug"], nearest_upsample=True)


def test_nearest_upsample_is_repetition_then_a_same_padded_convolution() -> None:
    """As stable-audio-tools builds it: nn.Upsample(nearest) then a bias-free conv with
    kernel 2 * stride and PyTorch's padding="same"."""
    torch.manual_seed(0)
    block = NearestUpsample(6, 4, 8)
    reference = nn.Sequential(nn.Upsample(scale_factor=8, mode="nearest"),
                              nn.Conv1d(6, 4, 16, padding="same", bias=False))
    with torch.no_grad():
        v = block.weight_v
        reference[1].weight.copy_(block.weight_g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1))
    x = torch.randn(2, 6, 13)
    with pytest.warns(UserWarning, match="same"):
        expected = reference(x)
    assert block(x).shape == (2, 4, 104)
    torch.testing.assert_close(block(x), expected, atol=1e-6, rtol=1e-5)


def interior_ripple(config) -> float:
    """Peak-to-peak of the decoded audio of constant latents, away from the edges, relative
    to its level: a periodic pattern here is a comb of tones at multiples of the stages'
    input rates (what transposed convolutions make of biases)."""
    vae = build_vae(config, seed=0)  # PyTorch's initialisation: non-zero biases
    with torch.inference_mode():
        audio = vae.decode(torch.full((1, config.latent_dim, 48), 0.3), chunk_frames=None)
    interior = audio[..., 20 * 2048: 28 * 2048]
    return float((interior.amax(-1) - interior.amin(-1)).max() / interior.abs().amax())


def test_a_constant_latent_decodes_to_a_constant_only_with_nearest_upsampling() -> None:
    assert interior_ripple(NEAREST) < 1e-4
    assert interior_ripple(VAE_PRESETS["debug"]) > 1e-2


def test_a_nearest_vae_round_trips_in_the_stable_audio_tools_layout(tmp_path: Path) -> None:
    vae = build_vae(NEAREST, seed=1).eval()
    folder = save_vae(vae, NEAREST, tmp_path / "vae")
    keys = set(load_file(str(folder / "model.safetensors")))
    assert "decoder.layers.1.layers.1.1.weight_v" in keys
    assert not any(k.startswith("decoder.layers.1.layers.1.weight") for k in keys)
    assert "decoder.layers.1.layers.1.1.bias" not in keys  # bias-free, as stable-audio-tools
    decoder = json.loads((folder / "model_config.json").read_text())["model"]["decoder"]
    assert decoder["config"]["use_nearest_upsample"] is True
    assert read_vae_weights(folder).config == NEAREST
    latents = torch.randn(1, NEAREST.latent_dim, 5)
    with torch.inference_mode():
        torch.testing.assert_close(load_vae(folder).decode(latents), vae.decode(latents))
    # A bare weight file: the deeper upsampling conv says which decoder it is.
    bare = tmp_path / "bare.safetensors"
    save_file(load_file(str(folder / "model.safetensors")), str(bare))
    assert read_vae_weights(bare).config == NEAREST


def test_transposed_weights_under_a_nearest_config_are_refused_by_name(tmp_path: Path) -> None:
    folder = save_vae(build_vae(VAE_PRESETS["debug"]), VAE_PRESETS["debug"], tmp_path / "vae")
    config_path = folder / "model_config.json"
    config = json.loads(config_path.read_text())
    config["model"]["decoder"]["config"]["use_nearest_upsample"] = True
    config_path.write_text(json.dumps(config))
    with pytest.raises(Exception, match="nearest_upsample False"):
        read_vae_weights(folder)


def test_the_key_table_with_nearest_upsampling() -> None:
    with torch.device("meta"):
        own_keys = list(build_vae(NEAREST).state_dict())
    key_map = vae_key_map("stable-audio-tools", 5, nearest_upsample=True)
    foreign = [key_map.foreign_key(k) for k in own_keys]
    assert None not in foreign and len(set(foreign)) == len(own_keys)
    assert key_map.foreign_key("decoder.blocks.2.upsample.weight_g") == \
        "decoder.layers.3.layers.1.1.weight_g"
    with pytest.raises(ValueError, match="diffusers"):
        vae_key_map("diffusers", 5, nearest_upsample=True)


def test_a_model_folder_with_a_nearest_vae_round_trips(tmp_path: Path) -> None:
    base = load_diffusion_model(SAO1_TINY)
    config = replace(base.config, vae=replace(base.config.vae, nearest_upsample=True))
    model = build_diffusion_model(config, text_encoder=base.text_encoder)
    out = save_model_folder(model, tmp_path / "model")
    reloaded = load_diffusion_model(out)
    assert reloaded.config.vae.nearest_upsample
    latents = torch.randn(1, config.vae.latent_dim, 4)
    with torch.inference_mode():
        torch.testing.assert_close(reloaded.vae.decode(latents), model.vae.decode(latents))

"""Loading the public VAE layouts exactly, and refusing bad checkpoints clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import SAO1_TINY, SAO1_TINY_DIFFUSERS
from longplay.builders import build_vae
from longplay.checkpoints import (
    VAE_MODULE_TABLE,
    CheckpointError,
    load_vae,
    read_vae_weights,
    save_vae,
    vae_key_map,
)
from longplay.config import VAE_PRESETS

# Parity tolerance of the issue: max-abs 1e-4 (the fixture's float32 noise floor is ~4e-6).
PARITY = 1e-4


def sat_vae_state() -> dict[str, torch.Tensor]:
    state = load_file(str(SAO1_TINY / "model.safetensors"))
    prefix = "pretransform.model."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def assert_matches_reference(vae, ref: dict[str, torch.Tensor]) -> None:
    with torch.inference_mode():
        dist = vae.encode(ref["vae.audio_in"], pad=False)
        encoder_out = torch.cat([dist.mean, dist.scale], dim=1)
        assert encoder_out.shape == ref["vae.encoder_out"].shape
        assert (encoder_out - ref["vae.encoder_out"]).abs().max() < PARITY
        sampled = dist.sample(noise=ref["vae.bottleneck_noise"])
        assert (sampled - ref["vae.latents_sampled"]).abs().max() < PARITY
        decoded = vae.decode(ref["vae.latents_in"])
        assert decoded.shape == ref["vae.decoded"].shape
        assert (decoded - ref["vae.decoded"]).abs().max() < PARITY


def test_stable_audio_open_folder_matches_reference(sao1_reference) -> None:
    weights = read_vae_weights(SAO1_TINY)
    assert weights.layout == "stable-audio-tools"
    assert weights.config.latent_dim == 8 and weights.config.hop_length == 2048
    assert_matches_reference(load_vae(SAO1_TINY), sao1_reference)


@pytest.mark.parametrize("path", [SAO1_TINY_DIFFUSERS, SAO1_TINY_DIFFUSERS / "vae"])
def test_diffusers_folder_matches_reference(path: Path, sao1_reference) -> None:
    weights = read_vae_weights(path)
    assert weights.layout == "diffusers"
    assert weights.config == read_vae_weights(SAO1_TINY).config
    assert_matches_reference(load_vae(path), sao1_reference)


def test_both_layouts_give_identical_weights() -> None:
    sat = read_vae_weights(SAO1_TINY).state_dict
    diffusers = read_vae_weights(SAO1_TINY_DIFFUSERS).state_dict
    assert sat.keys() == diffusers.keys()
    for key in sat:
        assert torch.equal(sat[key], diffusers[key]), key


def test_standalone_safetensors_without_config(tmp_path: Path, sao1_reference) -> None:
    path = tmp_path / "vae.safetensors"
    save_file(sat_vae_state(), str(path))
    weights = read_vae_weights(path)  # architecture inferred from the shapes
    assert weights.config == read_vae_weights(SAO1_TINY).config
    assert_matches_reference(load_vae(path), sao1_reference)


def test_standalone_ckpt_loads_with_weights_only(tmp_path: Path, sao1_reference) -> None:
    path = tmp_path / "vae.ckpt"
    torch.save({"state_dict": {f"autoencoder.{k}": v for k, v in sat_vae_state().items()}}, path)
    assert_matches_reference(load_vae(path), sao1_reference)


def test_ckpt_with_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": sat_vae_state(), "callback": Path("x")}, path)
    with pytest.raises(CheckpointError, match=r"weights_only"):
        load_vae(path)


def test_save_and_reload_round_trip(tmp_path: Path, sao1_reference) -> None:
    weights = read_vae_weights(SAO1_TINY)
    vae = load_vae(SAO1_TINY)
    folder = save_vae(vae, weights.config, tmp_path / "my_vae")
    assert set(load_file(str(folder / "model.safetensors"))) == set(sat_vae_state())
    assert read_vae_weights(folder).config == weights.config
    assert_matches_reference(load_vae(folder), sao1_reference)


def copy_fixture(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(SAO1_TINY / "model_config.json", folder)
    return folder


def test_missing_keys_are_listed(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    state = load_file(str(SAO1_TINY / "model.safetensors"))
    del state["pretransform.model.decoder.layers.3.layers.1.weight_g"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): decoder\.layers\.3\.layers\.1"
                                              r"\.weight_g"):
        load_vae(folder)


def test_unexpected_keys_are_listed(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    state = load_file(str(SAO1_TINY / "model.safetensors"))
    state["pretransform.model.decoder.layers.9.weight"] = torch.zeros(3)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): decoder\.layers\.9\.weight"):
        load_vae(folder)


def test_shape_mismatch_is_reported(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    state = load_file(str(SAO1_TINY / "model.safetensors"))
    state["pretransform.model.decoder.layers.6.alpha"] = torch.zeros(5)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"shape mismatches.*decoder\.layers\.6\.alpha"):
        load_vae(folder)


def test_nan_weights_are_refused(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    state = load_file(str(SAO1_TINY / "model.safetensors"))
    state["pretransform.model.encoder.layers.0.bias"][0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"NaN"):
        load_vae(folder)


def test_corrupt_weight_file_is_named(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_vae(folder)


def test_unknown_config_field_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    cfg = json.loads((SAO1_TINY / "model_config.json").read_text())
    cfg["model"]["pretransform"]["config"]["decoder"]["config"]["wobble"] = 3
    (folder / "model_config.json").write_text(json.dumps(cfg))
    shutil.copy(SAO1_TINY / "model.safetensors", folder)
    with pytest.raises(CheckpointError, match=r"unknown field.*wobble"):
        load_vae(folder)


def test_unsupported_bottleneck_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    cfg = json.loads((SAO1_TINY / "model_config.json").read_text())
    cfg["model"]["pretransform"]["config"]["bottleneck"]["type"] = "rvq"
    (folder / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"bottleneck\.type = 'rvq'"):
        load_vae(folder)


def test_missing_path_and_empty_folder_say_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_vae(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"model_config\.json"):
        load_vae(tmp_path)
    folder = copy_fixture(tmp_path)
    with pytest.raises(CheckpointError, match="no weight file"):
        load_vae(folder)


def test_key_table_is_a_bijection_over_the_full_size_model() -> None:
    with torch.device("meta"):
        own_keys = list(build_vae(VAE_PRESETS["stable-audio-open-1.0"]).state_dict())
    for layout in ("stable-audio-tools", "diffusers"):
        key_map = vae_key_map(layout, 5)
        foreign = [key_map.foreign_key(k) for k in own_keys]
        assert None not in foreign
        assert len(set(foreign)) == len(own_keys)
        assert [key_map.own_key(f) for f in foreign] == own_keys


def test_key_table_rows() -> None:
    assert len(VAE_MODULE_TABLE) == 18
    sat, diffusers = vae_key_map("stable-audio-tools", 5), vae_key_map("diffusers", 5)
    cases = {
        "decoder.blocks.0.upsample.weight_v": ("decoder.layers.1.layers.1.weight_v",
                                               "decoder.block.0.conv_t1.weight_v"),
        "decoder.blocks.4.res_units.2.act2.beta": ("decoder.layers.5.layers.4.layers.2.beta",
                                                   "decoder.block.4.res_unit3.snake2.beta"),
        "encoder.blocks.1.res_units.0.conv1.bias": ("encoder.layers.2.layers.0.layers.1.bias",
                                                    "encoder.block.1.res_unit1.conv1.bias"),
        "encoder.head.weight_g": ("encoder.layers.7.weight_g", "encoder.conv2.weight_g"),
        "decoder.act.alpha": ("decoder.layers.6.alpha", "decoder.snake1.alpha"),
    }
    for own, (sat_key, diffusers_key) in cases.items():
        assert sat.foreign_key(own) == sat_key
        assert diffusers.foreign_key(own) == diffusers_key


def test_fixture_chunked_decode_equals_whole_decode(sao1_reference) -> None:
    vae = load_vae(SAO1_TINY)
    latents = torch.randn(1, 8, 45, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = vae.decode(latents, chunk_frames=None)
        chunked = vae.decode(latents, chunk_frames=10)
        audio = whole[..., : 40 * 2048]
        enc_whole = vae.encode(audio, chunk_frames=None).mean
        enc_chunked = vae.encode(audio, chunk_frames=9).mean
    assert (chunked - whole).abs().max() < 1e-5
    assert (enc_chunked - enc_whole).abs().max() < 1e-5

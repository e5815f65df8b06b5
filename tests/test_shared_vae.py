"""A model folder that shares another's VAE (``vae_weights_from`` in its
model_config.json): its weight file holds the DiT and conditioner only, and it loads as
the model with the VAE read from the other folder, which must have the same VAE config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import SAO1_TINY, load_script
from longplay.checkpoints import CheckpointError, model_fingerprint, read_vae_weights
from longplay.checkpoints.diffusion import SAT_VAE_PREFIX, load_diffusion_model


def _variant(tmp_path: Path, *, share: str | None = "../base",
             keep_vae: bool = False) -> tuple[Path, Path]:
    """base (a copy of the tiny model) and variant/ (its DiT and conditioner, sharing the
    base's VAE); the variant's DiT weights are changed, as a distilled model's are."""
    base, variant = tmp_path / "base", tmp_path / "variant"
    shutil.copytree(SAO1_TINY, base)
    variant.mkdir()
    state = load_file(base / "model.safetensors")
    changed = {k: (v + 0.01 if k.startswith("model.") and "rotary" not in k else v)
               for k, v in state.items() if keep_vae or not k.startswith(SAT_VAE_PREFIX)}
    save_file(changed, variant / "model.safetensors")
    config = json.loads((base / "model_config.json").read_text())
    if share is not None:
        config["vae_weights_from"] = share
    (variant / "model_config.json").write_text(json.dumps(config))
    return base, variant


def test_a_variant_loads_with_the_shared_vae(tmp_path) -> None:
    base, variant = _variant(tmp_path)
    a = load_diffusion_model(base, load_text_encoder=False)
    b = load_diffusion_model(variant, load_text_encoder=False)
    for key, value in a.vae.state_dict().items():
        torch.testing.assert_close(b.vae.state_dict()[key], value, rtol=0, atol=0)
    dit_a, dit_b = a.dit.state_dict(), b.dit.state_dict()
    assert any(not torch.equal(dit_a[k], dit_b[k]) for k in dit_a)  # its own DiT
    torch.testing.assert_close(read_vae_weights(variant).state_dict,
                               read_vae_weights(base).state_dict, rtol=0, atol=0)
    # the shared VAE is part of what the variant is: a changed VAE changes its fingerprint
    before = model_fingerprint(variant)
    state = load_file(base / "model.safetensors")
    key = next(k for k in state if k.startswith(SAT_VAE_PREFIX) and state[k].is_floating_point())
    state[key] = state[key] + 1
    save_file(state, base / "model.safetensors")
    assert model_fingerprint(variant) != before


def test_sharing_is_checked_before_loading(tmp_path) -> None:
    base, variant = _variant(tmp_path / "missing", share="../nowhere")
    with pytest.raises(CheckpointError, match="not a model folder"):
        load_diffusion_model(variant, load_text_encoder=False)
    with pytest.raises(CheckpointError, match="not a model folder"):  # the same check
        model_fingerprint(variant)
    base, variant = _variant(tmp_path / "both", keep_vae=True)
    with pytest.raises(CheckpointError, match="holds VAE weights"):
        load_diffusion_model(variant, load_text_encoder=False)
    base, variant = _variant(tmp_path / "other")
    config = json.loads((base / "model_config.json").read_text())
    config["model"]["pretransform"]["config"]["latent_dim"] += 1
    (base / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="pretransform config differs"):
        load_diffusion_model(variant, load_text_encoder=False)
    with pytest.raises(CheckpointError, match="pretransform config differs"):
        read_vae_weights(variant)
    # without the key, a weight file without the VAE is an error that names the keys
    base, variant = _variant(tmp_path / "unshared", share=None)
    with pytest.raises(CheckpointError, match=r"VAE .* missing keys"):
        load_diffusion_model(variant, load_text_encoder=False)


def _bundle_script():
    return load_script("scripts/bundle_demo.py")


def test_rebundling_a_shared_vae_with_other_weights_is_refused(tmp_path) -> None:
    script = _bundle_script()
    base, _ = _variant(tmp_path)  # variant/ shares base/'s VAE
    same = tmp_path / "same"
    shutil.copytree(base, same)
    script._check_sharers(base, same)  # the same VAE: the variant still fits
    other = tmp_path / "other"
    shutil.copytree(base, other)
    state = load_file(other / "model.safetensors")
    key = next(k for k in state if k.startswith(SAT_VAE_PREFIX + "encoder.")
               and state[k].is_floating_point())
    state[key] = state[key] * 2
    save_file(state, other / "model.safetensors")
    with pytest.raises(SystemExit, match="variant shares the VAE"):
        script._check_sharers(base, other)


def test_rebundling_a_shared_vae_with_a_new_decoder_is_accepted(tmp_path, capsys) -> None:
    # a decoder fine-tuned with the encoder frozen decodes the same latents
    script = _bundle_script()
    base, _ = _variant(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(base, other)
    state = load_file(other / "model.safetensors")
    keys = [k for k in state if k.startswith(SAT_VAE_PREFIX + "decoder.")
            and state[k].is_floating_point()]
    assert keys
    state[keys[0]] = state[keys[0]] * 2
    save_file(state, other / "model.safetensors")
    script._check_sharers(base, other)
    assert "variant will decode with the new decoder" in capsys.readouterr().out

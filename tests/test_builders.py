"""Configs become modules in longplay.builders: seeded builds are reproducible and never
touch the caller's random state; copies for inference share the weights."""

from __future__ import annotations

import torch

from longplay.builders import build_conditioner, build_diffusion_model, build_dit, build_vae
from longplay.config import model_preset, vae_preset
from longplay.layers import shared_weights_copy


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_seeded_build_is_reproducible_and_leaves_the_global_state_alone() -> None:
    config = model_preset("debug")
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = build_dit(config.dit, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_dit(config.dit, seed=1)
    c = build_dit(config.dit, seed=2)
    assert _same_weights(a, b) and not _same_weights(a, c)
    assert torch.equal(torch.random.get_rng_state(), state)
    vae = build_vae(vae_preset("debug"), seed=0, init="variance_preserving")
    assert _same_weights(vae, build_vae(vae_preset("debug"), seed=0, init="variance_preserving"))
    assert not _same_weights(vae, build_vae(vae_preset("debug"), seed=0))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_whole_model_builds_its_parts_in_order() -> None:
    """One seed for the model gives the parts a build in that order would give: the
    trainers' configs reproduce the same initial weights."""
    config = model_preset("debug")
    model = build_diffusion_model(config, seed=7)
    torch.manual_seed(7)
    vae, conditioner, dit = (build_vae(config.vae), build_conditioner(config.conditioning),
                             build_dit(config.dit))
    assert _same_weights(model.vae, vae) and _same_weights(model.dit, dit)
    assert _same_weights(model.conditioner, conditioner)


def test_a_shared_weights_copy_owns_its_settings_but_not_its_weights() -> None:
    config = model_preset("debug")
    dit = build_dit(config.dit, seed=0)
    vae = build_vae(config.vae, seed=0)
    copy = shared_weights_copy(dit)
    assert copy is not dit and copy.project_in.weight is dit.project_in.weight
    copy.compile_blocks(None)
    half = shared_weights_copy(dit, torch.bfloat16)
    assert half.project_in.weight.dtype == torch.bfloat16
    assert dit.project_in.weight.dtype == torch.float32  # the original is not converted
    torch.testing.assert_close(half.project_in.weight.float(), dit.project_in.weight,
                               rtol=1e-2, atol=1e-3)
    # Inference state starts fresh in the copy: folded weights and settings of its own.
    with torch.inference_mode():
        vae.decode(torch.zeros(1, config.vae.latent_dim, 4))
    assert vae.decoder.head._folded is not None
    vae_copy = shared_weights_copy(vae)
    assert vae_copy.decoder.head._folded is None
    vae_copy.set_conv_dtype(torch.bfloat16)
    assert vae.conv_dtype is None and vae_copy.conv_dtype == torch.bfloat16
    assert vae_copy.decoder.head.weight_v is vae.decoder.head.weight_v

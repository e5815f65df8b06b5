"""The variance-preserving initialisation for VAE training from scratch."""

from __future__ import annotations

import math

import torch

from longplay.autoencoder.init import init_vae_for_training
from longplay.builders import build_vae
from longplay.config import VAETrainConfig, vae_preset


def _input_share(vae) -> float:
    """How much of the posterior mean depends on the input: the spread across inputs
    relative to the mean's overall spread (near 0 when biases dominate)."""
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(4, 2, 8 * 2048, generator=g) * 0.1
    with torch.no_grad():
        mean = vae.encode(audio, chunk_frames=None).mean  # [4, D, T]
    return float(mean.std(dim=0).mean() / mean.std())


def test_the_input_reaches_the_latent_at_initialisation() -> None:
    torch.manual_seed(0)
    default = build_vae(vae_preset("demo-v1"))
    torch.manual_seed(0)
    initialised = init_vae_for_training(build_vae(vae_preset("demo-v1")))
    assert _input_share(initialised) > 0.5
    assert _input_share(default) < 0.1  # the collapse it avoids (the first demo VAE)
    torch.manual_seed(0)
    assert _input_share(init_vae_for_training(build_vae(vae_preset("demo-oobleck")))) > 0.5
    # The posterior starts narrow: around softplus(-3) = 0.05 instead of softplus(0) = 0.69.
    with torch.no_grad():
        dist = initialised.encode(torch.randn(1, 2, 4096) * 0.1, chunk_frames=None)
        wide = default.encode(torch.randn(1, 2, 4096) * 0.1, chunk_frames=None)
    assert dist.std.median() < 0.1 < 0.5 < wide.std.median()
    # Decoded audio has a sane level (neither vanishing nor exploding).
    with torch.no_grad():
        out = initialised.decode(dist.mean, chunk_frames=None)
    assert 1e-3 < out.std() < 10


def test_convolutions_get_unit_gain_and_zero_bias() -> None:
    vae = init_vae_for_training(build_vae(vae_preset("debug")), input_gain=1.0,
                                generator=torch.Generator().manual_seed(0))
    stem = vae.encoder.stem  # a plain convolution: variance 1 / fan_in
    fan_in = stem.weight_v.shape[1] * stem.weight_v.shape[2]
    assert abs(stem.weight.std().item() * math.sqrt(fan_in) - 1) < 0.2
    assert torch.count_nonzero(stem.bias) == 0


def test_training_config_chooses_the_initialisation() -> None:
    from longplay.training.vae import build_vae_for_training

    vp, _, _ = build_vae_for_training(VAETrainConfig(preset="debug"))
    pytorch, _, _ = build_vae_for_training(VAETrainConfig(preset="debug", init="pytorch"))
    assert torch.count_nonzero(vp.encoder.stem.bias) == 0
    assert torch.count_nonzero(pytorch.encoder.stem.bias) > 0


def test_music_level_audio_gives_activations_of_order_one() -> None:
    """With the input gain, audio at music's RMS (0.1) gives a latent of order 1, where
    the Snake nonlinearity is far from the identity, and output at the input's level."""
    audio = 0.1 * torch.randn(2, 2, 8 * 2048, generator=torch.Generator().manual_seed(2))

    def levels(vae) -> tuple[float, float]:
        with torch.no_grad():
            latent = vae.encode(audio, chunk_frames=None).mean
            return float(latent.std()), float(vae.decode(latent, chunk_frames=None).std())

    torch.manual_seed(0)
    latent, out = levels(init_vae_for_training(build_vae(vae_preset("demo-oobleck"))))
    torch.manual_seed(0)
    latent_unit, _ = levels(init_vae_for_training(build_vae(vae_preset("demo-oobleck")),
                                                  input_gain=1.0, output_gain=1.0))
    assert 0.3 < latent < 5
    assert latent > 4 * latent_unit
    assert 0.01 < out < 1

"""The spectral VAE (longplay.autoencoder.spectral): shapes, chunking, no DC, half
precision, its config and its model_config.json."""

from __future__ import annotations

import json

import pytest
import torch

from longplay.builders import build_vae
from longplay.checkpoints import CheckpointError, load_vae, read_vae_weights, save_vae
from longplay.checkpoints.formats import SPECTRAL_VAE_TYPE
from longplay.checkpoints.vae import vae_key_map_of
from longplay.config import ConfigError, VAEConfig, vae_preset


def spectral_vae(seed: int = 0):
    return build_vae(vae_preset("debug-spectral"), seed=seed).eval()


def test_shapes_follow_the_hop_and_chunks_equal_the_whole() -> None:
    vae = spectral_vae()
    assert vae.hop_length == 2048 and vae.architecture == "spectral"
    audio = 0.1 * torch.randn(2, 2, 40 * 2048 + 5, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = vae.encode(audio, chunk_frames=None)
        chunked = vae.encode(audio, chunk_frames=8, context_frames=16)
        assert whole.mean.shape == (2, 8, 41)  # padded up to whole latent frames
        torch.testing.assert_close(chunked.mean, whole.mean, atol=1e-4, rtol=1e-4)
        out = vae.decode(whole.mean, num_samples=audio.shape[-1], chunk_frames=None)
        pieces = vae.decode(whole.mean, num_samples=audio.shape[-1], chunk_frames=8)
    assert out.shape == audio.shape
    torch.testing.assert_close(pieces, out, atol=1e-5, rtol=1e-4)


def test_decoded_audio_has_no_dc_whatever_the_latents() -> None:
    vae = spectral_vae()
    with torch.no_grad():  # a decoder that would put energy in the DC bin if it could
        vae.decoder.head.bias.fill_(1.0)
    latents = torch.randn(1, 8, 64, generator=torch.Generator().manual_seed(1)) + 3.0
    with torch.inference_mode():
        audio = vae.decode(latents)
    rms = audio.pow(2).mean().sqrt()
    assert rms > 0.01
    assert audio.mean(-1).abs().max() < 1e-3 * rms


def test_half_precision_decodes_in_the_latents_dtype() -> None:
    vae = spectral_vae().to(torch.bfloat16)
    latents = torch.randn(1, 8, 8, dtype=torch.bfloat16)
    with torch.inference_mode():
        audio = vae.decode(latents, chunk_frames=None)
        posterior = vae.encode(audio, chunk_frames=None)
    assert audio.dtype == torch.bfloat16 and torch.isfinite(audio.float()).all()
    assert posterior.mean.shape == latents.shape


def test_config_checks_name_the_field() -> None:
    base = vae_preset("debug-spectral")
    with pytest.raises(ConfigError, match="strides"):
        VAEConfig(architecture="spectral", strides=(2, 4, 256), channel_mults=(1, 1, 1),
                  encoder_blocks=(1, 1), decoder_blocks=(1, 1))
    with pytest.raises(ConfigError, match="decoder_blocks"):
        VAEConfig(**{**base.__dict__, "decoder_blocks": None})
    with pytest.raises(ConfigError, match="nearest_upsample"):
        VAEConfig(**{**base.__dict__, "nearest_upsample": True})
    with pytest.raises(ConfigError, match=r"encoder_blocks.*spectral"):
        VAEConfig(encoder_blocks=(1, 1))  # an Oobleck VAE has no ConvNeXt blocks
    with pytest.raises(ConfigError, match="architecture"):
        VAEConfig(architecture="wavelet")


def test_saved_folder_round_trips_and_names_its_type(tmp_path) -> None:
    vae, config = spectral_vae(), vae_preset("debug-spectral")
    save_vae(vae, config, tmp_path / "vae")
    model = json.loads((tmp_path / "vae" / "model_config.json").read_text())["model"]
    assert model["encoder"]["type"] == model["decoder"]["type"] == SPECTRAL_VAE_TYPE
    assert model["downsampling_ratio"] == 2048
    assert read_vae_weights(tmp_path / "vae").config == config
    loaded = load_vae(tmp_path / "vae")
    audio = 0.1 * torch.randn(1, 2, 8192)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.reconstruct(audio), vae.reconstruct(audio),
                                   atol=0.0, rtol=0.0)
    (tmp_path / "vae" / "model_config.json").unlink()
    with pytest.raises(CheckpointError, match=r"model_config\.json"):
        load_vae(tmp_path / "vae" / "model.safetensors")
    with pytest.raises(CheckpointError, match="diffusers"):
        vae_key_map_of(config, "diffusers")


def test_a_mismatched_model_config_is_refused(tmp_path) -> None:
    vae, config = spectral_vae(), vae_preset("debug-spectral")
    save_vae(vae, config, tmp_path / "vae")
    path = tmp_path / "vae" / "model_config.json"
    cfg = json.loads(path.read_text())
    cfg["model"]["decoder"]["config"]["strides"] = [256, 8]
    path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="share strides"):
        read_vae_weights(tmp_path / "vae")


def test_a_model_folder_with_a_spectral_vae_round_trips(tmp_path) -> None:
    from dataclasses import replace

    from conftest import SAO1_TINY
    from longplay.builders import build_diffusion_model
    from longplay.checkpoints import load_diffusion_model, save_model_folder

    base = load_diffusion_model(SAO1_TINY)
    vae = replace(vae_preset("debug-spectral"), latent_dim=base.config.vae.latent_dim)
    model = build_diffusion_model(replace(base.config, vae=vae), text_encoder=base.text_encoder)
    reloaded = load_diffusion_model(save_model_folder(model, tmp_path / "model"))
    assert reloaded.config.vae == vae
    latents = torch.randn(1, vae.latent_dim, 4)
    with torch.inference_mode():
        torch.testing.assert_close(reloaded.vae.decode(latents), model.vae.decode(latents))


def test_a_decoder_output_steady_across_frames_is_a_steady_tone_not_a_comb() -> None:
    """The head's phases are relative to each bin's carrier, so frames that do not change
    add up to one sinusoid per bin; with absolute phases they would repeat every hop, a
    comb at multiples of sample_rate / hop (86 Hz)."""
    vae = spectral_vae()
    with torch.no_grad():
        vae.decoder.head.weight.zero_()
        bias = vae.decoder.head.bias.view(2, 2, -1)
        bias[:, 0], bias[:, 1] = -20.0, 0.3  # every bin silent, one phase everywhere...
        bias[:, 0, 93] = 2.0  # ...but bin 93: 93 * 44100 / 2048 = 2002.6 Hz
        audio = vae.decode(torch.zeros(1, 8, 16), chunk_frames=None)[0, 0, 4096:-4096]
    spectrum = torch.fft.rfft(audio * torch.hann_window(audio.shape[-1])).abs()
    freqs = torch.fft.rfftfreq(audio.shape[-1], 1 / 44100)
    assert abs(freqs[spectrum.argmax()] - 93 * 44100 / 2048) < 2.0
    far = (freqs - 2002.6).abs() > 50  # beyond the window's main lobe
    assert spectrum[far].max() < 1e-4 * spectrum.max()


SAMPLE_RATE = 44100


def melody(seconds: float, seed: int) -> torch.Tensor:
    """[2, S] quarter-second notes of a C major scale (4 partials, decaying), random order."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(SAMPLE_RATE // 4) / SAMPLE_RATE
    notes = []
    for step in torch.randint(7, (int(4 * seconds),), generator=g).tolist():
        f0 = 261.63 * 2 ** ((0, 2, 4, 5, 7, 9, 11)[step] / 12)
        partials = sum(torch.sin(2 * torch.pi * k * f0 * t) / k for k in range(1, 5))
        notes.append(0.2 * torch.exp(-3 * t) * partials)
    mono = torch.cat(notes)
    return torch.stack([mono, 0.8 * mono])


def test_linear_paths_start_at_zero_and_pca_makes_an_untrained_vae_keep_the_notes() -> None:
    from dataclasses import replace

    from longplay.autoencoder.spectral import LINEAR_INIT_STD, init_linear_paths
    from longplay.evaluation import chroma_correlation

    config = replace(vae_preset("debug-spectral"), latent_dim=24)
    fresh, fitted = build_vae(config, seed=0).eval(), build_vae(config, seed=0).eval()
    assert not fresh.encoder.linear.weight.any() and not fresh.decoder.linear.weight.any()
    train = melody(16, seed=0)[None]
    fitted_info = init_linear_paths(fitted.encoder, fitted.decoder, train)
    assert fitted_info["frames"] == 16 * SAMPLE_RATE // 2048  # whole latent frames
    assert 0.9 < fitted_info["explained_variance"] <= 1.0
    held_out = melody(6, seed=1)
    with torch.inference_mode():
        scores = {name: chroma_correlation(held_out, vae.reconstruct(held_out[None])[0],
                                           SAMPLE_RATE)
                  for name, vae in (("fresh", fresh), ("fitted", fitted))}
        posterior = fitted.encode(train, chunk_frames=None)
    # Before any training: the notes come back (a random VAE's chroma is unrelated).
    assert scores["fitted"] > 0.8 and scores["fresh"] < 0.3
    # Unit-variance latent channels, the stated posterior width, heads zeroed.
    torch.testing.assert_close(posterior.mean.std(dim=(0, 2)), torch.ones(24), atol=0.02,
                               rtol=0)
    torch.testing.assert_close(posterior.std, torch.full_like(posterior.std, LINEAR_INIT_STD))
    assert not fitted.encoder.head.weight.any() and not fitted.decoder.head.weight.any()


def test_linear_path_fit_refuses_too_little_or_silent_audio() -> None:
    from longplay.autoencoder.spectral import init_linear_paths

    vae = spectral_vae()
    with pytest.raises(ValueError, match="latent frames of audio cannot fit 8"):
        init_linear_paths(vae.encoder, vae.decoder, melody(1, seed=0)[None, :, : 4 * 2048])
    with pytest.raises(ValueError, match="silent"):
        init_linear_paths(vae.encoder, vae.decoder, torch.zeros(1, 2, 64 * 2048))


def test_pca_init_is_for_spectral_presets_only() -> None:
    from longplay.config import VAETrainConfig

    with pytest.raises(ConfigError, match="init 'pca' fits the linear paths of a spectral VAE"):
        VAETrainConfig(preset="debug", init="pca")
    assert VAETrainConfig(preset="debug-spectral", init="pca").init == "pca"
    with pytest.raises(ValueError, match="init_linear_paths"):  # needs audio
        build_vae(vae_preset("debug-spectral"), init="pca")

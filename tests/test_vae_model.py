"""The VAE architecture, its latent distribution, and chunked encode/decode."""

from __future__ import annotations

import pytest
import torch

from longplay.autoencoder import AudioVAE, DecodePlan, LatentDistribution
from longplay.builders import build_vae
from longplay.config import VAE_PRESETS, ConfigError, VAEConfig, vae_preset

# Chunked and whole-signal processing compute the same function; they differ only in
# the float32 rounding of convolutions over different lengths.
CHUNK_TOLERANCE = 1e-5


def debug_vae(seed: int = 0) -> AudioVAE:
    torch.manual_seed(seed)
    vae = build_vae(vae_preset("debug")).eval()
    # Non-trivial Snake parameters so that every layer matters.
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith((".alpha", ".beta")):
                p.normal_(0.0, 0.2)
    return vae


def test_full_size_preset_has_the_papers_parameter_count() -> None:
    with torch.device("meta"):
        vae = build_vae(VAE_PRESETS["stable-audio-open-1.0"])
    count = sum(p.numel() for p in vae.parameters())
    assert 155e6 < count < 157e6  # the paper: 156M
    assert vae.hop_length == 2048
    assert abs(vae.latent_rate - 21.533) < 1e-3


def test_preset_lookup_names_known_presets() -> None:
    with pytest.raises(ConfigError, match="debug"):
        vae_preset("nope")


def test_config_rejects_inconsistent_blocks() -> None:
    with pytest.raises(ConfigError, match="one multiplier per strided block"):
        VAEConfig(channel_mults=(1, 2), strides=(2, 4, 8))


def test_encoder_and_decoder_shapes() -> None:
    vae = debug_vae()
    audio = torch.randn(2, 2, 5 * 2048)
    with torch.inference_mode():
        dist = vae.encode(audio)
        assert dist.mean.shape == (2, 8, 5)
        assert dist.scale.shape == (2, 8, 5)
        assert vae.decode(dist.mean).shape == (2, 2, 5 * 2048)


def test_encode_pads_to_the_hop_and_reconstruct_keeps_the_length() -> None:
    vae = debug_vae()
    audio = torch.randn(1, 2, 3 * 2048 + 777)
    with torch.inference_mode():
        assert vae.encode(audio).mean.shape[-1] == 4
        assert vae.encode(audio, pad=False).mean.shape[-1] == 3
        assert vae.reconstruct(audio).shape == audio.shape


def test_encode_rejects_wrong_channels_and_too_short_audio() -> None:
    vae = debug_vae()
    with pytest.raises(ValueError, match=r"\[B, 2, S\]"):
        vae.encode(torch.randn(1, 1, 4096))
    with pytest.raises(ValueError, match="shorter than one latent frame"):
        vae.encode(torch.randn(1, 2, 100), pad=False)


def test_decode_validates_num_samples() -> None:
    vae = debug_vae()
    with pytest.raises(ValueError, match="num_samples"):
        vae.decode(torch.randn(1, 8, 2), num_samples=3 * 2048)


def test_latent_distribution_sample_and_kl() -> None:
    h = torch.randn(2, 16, 7)
    dist = LatentDistribution.from_encoder_output(h)
    std = torch.nn.functional.softplus(h[:, 8:]) + 1e-4
    assert torch.allclose(dist.std, std)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(dist.sample(g1), dist.sample(g2))
    assert not torch.equal(dist.sample(), dist.sample())
    noise = torch.randn(2, 8, 7)
    assert torch.allclose(dist.sample(noise=noise), h[:, :8] + std * noise)
    mean, var = h[:, :8].double(), std.double() ** 2
    expected = (mean**2 + var - var.log() - 1).sum(1).mean()
    assert torch.allclose(dist.kl().double(), expected, rtol=1e-5)
    # The KL of the prior itself is ~0 (std = softplus(s) + 1e-4 = 1 at s = log(e - 1)).
    unit_scale = torch.log(torch.expm1(torch.tensor(1.0 - 1e-4)))
    prior = LatentDistribution(torch.zeros(1, 4, 3), unit_scale.expand(1, 4, 3))
    assert prior.kl().abs() < 1e-6


@pytest.mark.parametrize("num_frames,chunk_frames", [(40, 8), (37, 10), (25, 24), (9, 1)])
def test_chunked_decode_equals_whole_decode(num_frames: int, chunk_frames: int) -> None:
    vae = debug_vae()
    latents = torch.randn(2, 8, num_frames)
    with torch.inference_mode():
        whole = vae.decode(latents, chunk_frames=None)
        chunked = vae.decode(latents, chunk_frames=chunk_frames, context_frames=16)
    assert chunked.shape == whole.shape
    assert (chunked - whole).abs().max() < CHUNK_TOLERANCE


def test_too_little_context_is_not_seamless() -> None:
    """Shows the chunk test above can fail: without context, chunk edges differ."""
    vae = debug_vae()
    latents = torch.randn(1, 8, 32)
    with torch.inference_mode():
        whole = vae.decode(latents, chunk_frames=None)
        no_context = vae.decode(latents, chunk_frames=8, context_frames=0)
    assert (no_context - whole).abs().max() > 1e-3


@pytest.mark.parametrize("num_samples,chunk_frames", [(40 * 2048, 8), (33 * 2048 + 5, 7)])
def test_chunked_encode_equals_whole_encode(num_samples: int, chunk_frames: int) -> None:
    vae = debug_vae(1)
    audio = 0.5 * torch.randn(1, 2, num_samples)
    with torch.inference_mode():
        whole = vae.encode(audio, chunk_frames=None)
        chunked = vae.encode(audio, chunk_frames=chunk_frames)
    assert (chunked.mean - whole.mean).abs().max() < CHUNK_TOLERANCE
    assert (chunked.scale - whole.scale).abs().max() < CHUNK_TOLERANCE


def test_decoder_input_size_is_bounded_by_the_chunk_not_the_duration() -> None:
    """Peak memory follows the largest decoder call: it must not grow with T."""
    vae = debug_vae()
    seen: list[int] = []
    handle = vae.decoder.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]))
    try:
        with torch.inference_mode():
            for num_frames in (50, 400):
                seen.clear()
                calls = []
                vae.decode(torch.randn(1, 8, num_frames), chunk_frames=16, context_frames=16,
                           progress=lambda done, total, c=calls: c.append((done, total)))
                assert max(seen) <= 16 + 2 * 16
                assert calls[-1] == (len(seen), len(seen))
    finally:
        handle.remove()


def test_chunking_is_on_by_default_for_long_inputs() -> None:
    vae = debug_vae()
    seen: list[int] = []
    vae.decoder.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]))
    with torch.inference_mode():
        vae.decode(torch.randn(1, 8, 400))
    assert len(seen) > 1 and max(seen) < 400


# -- Inference: folded weight norm and bf16 convolutions ---------------------------------


def _conv_modules(vae: AudioVAE) -> list:
    """The decoder's weight-normalised convolutions (decode does not use the encoder)."""
    from longplay.layers import WeightNormedConv

    return [m for m in vae.decoder.modules() if isinstance(m, WeightNormedConv)]


def test_inference_folds_the_weight_norm_once_and_matches_the_training_path() -> None:
    vae = debug_vae()
    latents = torch.randn(1, 8, 12)
    assert all(m._folded is None for m in _conv_modules(vae))
    with torch.enable_grad():
        reference = vae.decode(latents, chunk_frames=None).detach()
    assert all(m._folded is None for m in _conv_modules(vae))  # gradients: no cache
    with torch.inference_mode():
        first = vae.decode(latents, chunk_frames=None)
        folded = [m._folded[1] for m in _conv_modules(vae)]
        second = vae.decode(latents, chunk_frames=None)
    torch.testing.assert_close(first, reference, rtol=0, atol=1e-6)
    assert torch.equal(first, second)
    assert all(m._folded[1] is w for m, w in zip(_conv_modules(vae), folded, strict=True))


def test_folded_weights_follow_optimiser_steps_and_loaded_weights() -> None:
    vae = debug_vae()
    latents = torch.randn(1, 8, 12)
    with torch.no_grad():
        before = vae.decode(latents, chunk_frames=None)
    optimizer = torch.optim.SGD(vae.parameters(), lr=0.1)
    vae.decode(latents, chunk_frames=None).square().mean().backward()
    optimizer.step()
    with torch.no_grad():
        after = vae.decode(latents, chunk_frames=None)
    with torch.enable_grad():
        expected = vae.decode(latents, chunk_frames=None).detach()
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=0, atol=1e-6)

    other = debug_vae(seed=1)
    vae.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(latents, chunk_frames=None),
                                   other.decode(latents, chunk_frames=None), rtol=0, atol=1e-6)


def test_bf16_convolutions_stay_close_to_fp32_and_leave_training_alone() -> None:
    from longplay.evaluation import si_sdr

    vae = debug_vae()
    latents = torch.randn(1, 8, 24)
    with torch.inference_mode():
        fp32 = vae.decode(latents, chunk_frames=None)
    assert vae.set_conv_dtype(torch.bfloat16) is vae and vae.conv_dtype == torch.bfloat16
    with torch.inference_mode():
        bf16 = vae.decode(latents, chunk_frames=None)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    assert si_sdr(fp32[0], bf16[0]) > 30.0  # measured: about 45 dB on this random VAE
    assert all(m._folded[1].dtype == torch.bfloat16 for m in _conv_modules(vae))
    with torch.enable_grad():  # gradients: the fp32 weight-norm path, whatever the setting
        torch.testing.assert_close(vae.decode(latents, chunk_frames=None).detach(), fp32,
                                   rtol=0, atol=1e-6)
    vae.set_conv_dtype(None)
    with torch.inference_mode():
        assert torch.equal(vae.decode(latents, chunk_frames=None), fp32)


def test_auto_chunk_fits_the_memory_budget() -> None:
    vae = debug_vae()
    per_frame = vae.decode_bytes_per_frame()
    assert vae.auto_chunk_frames(100, budget_bytes=200 * per_frame) is None  # fits whole
    chunk = vae.auto_chunk_frames(1000, budget_bytes=200 * per_frame, context_frames=16)
    assert chunk == 200 - 32  # the chunk and its two contexts fit the budget
    assert vae.auto_chunk_frames(1000, batch=2, budget_bytes=200 * per_frame,
                                 context_frames=16) == 100 - 32
    assert vae.auto_chunk_frames(1000, budget_bytes=per_frame, context_frames=16) == 32
    assert vae.decode_bytes_per_frame(dtype=torch.bfloat16) == per_frame / 2


def test_a_large_batch_is_decoded_a_few_items_at_a_time_within_the_budget() -> None:
    vae = debug_vae()
    per_frame = vae.decode_bytes_per_frame()
    budget = 200 * per_frame
    # One item: chunks of 168 frames. Eight items together would get 25 frames per
    # item-chunk, below the 64 that keep the overlap small: 2 items at a time (68).
    assert vae.auto_decode_plan(1000, batch=1, budget_bytes=budget, context_frames=16) == (
        DecodePlan(1, 168))
    plan = vae.auto_decode_plan(1000, batch=8, budget_bytes=budget, context_frames=16)
    assert plan == DecodePlan(2, 100 - 32)
    assert plan.batch_size * (plan.chunk_frames + 32) * per_frame <= budget
    assert vae.auto_decode_plan(20, batch=8, budget_bytes=budget) == DecodePlan(8, None)
    tiny = vae.auto_decode_plan(1000, batch=8, budget_bytes=per_frame, context_frames=16)
    assert tiny == DecodePlan(1, 32)  # the floor: one item, the shortest chunk
    with pytest.raises(ValueError, match="batch must be >= 1"):
        vae.auto_decode_plan(10, batch=0)


def test_decode_in_sub_batches_equals_the_whole_batch() -> None:
    torch.manual_seed(0)
    vae = debug_vae().eval()
    latents = torch.randn(5, vae.latent_dim, 40)
    seen: list[tuple[int, int]] = []
    with torch.inference_mode():
        whole = vae.decode(latents, chunk_frames=16, num_samples=40 * vae.hop_length - 7)
        parts = vae.decode(latents, chunk_frames=16, num_samples=40 * vae.hop_length - 7,
                           batch_size=2, progress=lambda i, n: seen.append((i, n)))
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-6)
    assert seen == [(i, 9) for i in range(1, 10)]  # 3 calls x 3 chunks, counted through
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        vae.decode(latents, batch_size=0)


def test_free_memory_is_read_from_the_device(monkeypatch) -> None:
    from longplay.autoencoder import model

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (123 * 2**20, 2**34))
    assert model.available_memory_bytes("cuda") == 123 * 2**20
    host = model.available_memory_bytes("cpu")
    assert host is None or 0 < host < 2**50


def test_auto_chunk_uses_at_most_half_the_available_memory(monkeypatch) -> None:
    from longplay.autoencoder import model

    vae = debug_vae()
    per_frame = vae.decode_bytes_per_frame()
    monkeypatch.setattr(model, "available_memory_bytes",
                        lambda device: int(2 * 300 * per_frame))
    monkeypatch.setattr(model, "DECODE_MEMORY_BUDGET", 10**15)
    assert vae.auto_chunk_frames(10**4, context_frames=16) == 300 - 32
    monkeypatch.setattr(model, "DECODE_MEMORY_BUDGET", 100 * per_frame)
    assert vae.auto_chunk_frames(10**4, context_frames=16) == 100 - 32
    monkeypatch.setattr(model, "available_memory_bytes", lambda device: None)
    assert vae.auto_chunk_frames(10**4, context_frames=16) == 100 - 32


def test_full_size_decode_estimate_keeps_a_4m45s_decode_under_3_gib() -> None:
    with torch.device("meta"):
        vae = build_vae(vae_preset("stable-audio-open-1.0"))
    weights = sum(p.numel() for p in vae.decoder.parameters()) * 4
    chunk = vae.auto_chunk_frames(6144, budget_bytes=model_budget())
    activations = (chunk + 32) * vae.decode_bytes_per_frame()
    # weights + folded copy + activations of one chunk + the 4m45s output buffer
    assert 2 * weights + activations + 285 * 44100 * 2 * 4 < 3 * 2**30


def model_budget() -> float:
    from longplay.autoencoder.model import DECODE_MEMORY_BUDGET

    return DECODE_MEMORY_BUDGET

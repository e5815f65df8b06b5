"""VAE training losses: A-weighting, multi-resolution STFT, mid/side reconstruction,
the multi-scale STFT discriminator, hinge and feature-matching losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from longplay.audio import mel_filterbank, stft_magnitude
from longplay.autoencoder import (
    AWeighting,
    LatentDistribution,
    LowBandLoss,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    MultiScaleSTFTDiscriminator,
    VAELosses,
    VAELossWeights,
    VAEReconstructionLoss,
    a_weighting_fir,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)

SAMPLE_RATE = 44100
NUM_SAMPLES = 4096  # > 1024, enough for the centred 2048-point STFT
SMALL_FFTS = (256, 64)


def _gain_db(taps: np.ndarray, frequency_hz: float, sample_rate: int) -> float:
    """Magnitude response of an FIR at one frequency (its DTFT), in dB."""
    phase = np.exp(-2j * np.pi * frequency_hz * np.arange(len(taps)) / sample_rate)
    return 20 * math.log10(abs(phase @ taps) + 1e-300)


def _sine(frequency_hz: float, num_samples: int = NUM_SAMPLES) -> torch.Tensor:
    return torch.sin(2 * math.pi * frequency_hz * torch.arange(num_samples) / SAMPLE_RATE)


def _stereo(seed: int, batch: int = 2, num_samples: int = NUM_SAMPLES) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, 2, num_samples, generator=generator)


# --- A-weighting ---------------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_a_weighting_fir_has_the_a_weighting_shape(sample_rate: int) -> None:
    taps = a_weighting_fir(sample_rate)
    assert taps.shape == (101,)
    np.testing.assert_allclose(taps, taps[::-1])  # linear phase
    reference = _gain_db(taps, 1000.0, sample_rate)
    assert abs(reference) < 1e-6  # normalised to 0 dB at 1 kHz

    def relative(f: float) -> float:
        return _gain_db(taps, f, sample_rate) - reference

    # IEC 61672 A-weighting: 50 Hz -30.2 dB, 500 Hz -3.2 dB, 4 kHz +1.0 dB.
    assert relative(0.0) < -100  # a zero at DC, as the analog filter
    assert relative(50.0) < -20
    assert relative(100.0) < relative(200.0) < relative(500.0) < 0
    assert abs(relative(500.0) + 3.2) < 1.0
    assert abs(relative(4000.0) - 1.0) < 1.0


def test_a_weighting_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="odd"):
        a_weighting_fir(SAMPLE_RATE, num_taps=100)
    with pytest.raises(ValueError, match="sample_rate"):
        a_weighting_fir(1000)


def test_a_weighting_filters_each_channel_on_its_own() -> None:
    audio = torch.stack([_sine(1000.0), _sine(50.0)])[None]  # [1, 2, S]
    filtered = AWeighting(SAMPLE_RATE)(audio)
    assert filtered.shape == audio.shape
    middle = slice(200, -200)  # away from the zero-padded edges
    rms_in = audio[..., middle].square().mean(-1).sqrt()[0]
    rms_out = filtered[..., middle].square().mean(-1).sqrt()[0]
    assert abs(rms_out[0] / rms_in[0] - 1) < 0.02  # 1 kHz passes at 0 dB
    assert rms_out[1] / rms_in[1] < 0.1  # 50 Hz is attenuated by more than 20 dB


# --- Multi-resolution STFT -----------------------------------------------------------------


def test_stft_loss_is_zero_for_identical_signals() -> None:
    loss = MultiResolutionSTFTLoss(SAMPLE_RATE)
    audio = _stereo(0)
    assert loss(audio, audio.clone()).item() == 0.0


def test_stft_loss_grows_with_the_added_noise() -> None:
    loss = MultiResolutionSTFTLoss(SAMPLE_RATE)
    audio = _stereo(0)
    noise = _stereo(1)
    values = [loss(audio + scale * noise, audio).item() for scale in (0.01, 0.1, 1.0)]
    assert 0 < values[0] < values[1] < values[2]


def test_stft_loss_matches_its_definition_at_one_resolution() -> None:
    loss = MultiResolutionSTFTLoss(SAMPLE_RATE, fft_sizes=(64,), a_weighting=False)
    prediction, target = _stereo(0, num_samples=512), _stereo(1, num_samples=512)

    def magnitude(x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x.reshape(-1, 512), 64, 16, window=torch.hann_window(64),
                          return_complex=True)
        return spec.abs().clamp(min=1e-4)  # [B*C, F, T]

    x, y = magnitude(prediction), magnitude(target)
    convergence = (y - x).norm() / y.norm()  # one ratio over the whole batch, as auraloss
    expected = convergence + (x.log() - y.log()).abs().mean()
    torch.testing.assert_close(loss(prediction, target), expected)


def test_stft_loss_log_term_treats_each_channel_as_a_signal() -> None:
    loss = MultiResolutionSTFTLoss(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    target = _stereo(0)
    prediction = target + 0.05 * _stereo(1)
    # Swapping the channels of both sides changes nothing: the loss pools over signals.
    torch.testing.assert_close(loss(prediction.flip(1), target.flip(1)),
                               loss(prediction, target))
    only_right_wrong = torch.stack([target[:, 0], prediction[:, 1]], dim=1)
    assert 0 < loss(only_right_wrong, target) < loss(prediction, target)


def test_a_near_silent_window_does_not_dominate_the_batch() -> None:
    """The spectral convergence is pooled over the batch (auraloss): one quiet target
    window with an ordinary error must not outweigh the loud rest of the batch."""
    loss = MultiResolutionSTFTLoss(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    target = _stereo(0, batch=4)
    target[3] *= 1e-4  # a rest: RMS about 1e-4 of the others
    prediction = target + 0.05 * _stereo(1, batch=4)
    loud = loss(prediction[:3], target[:3])
    quiet_alone = loss(prediction[3:], target[3:])  # its convergence ratio is in the hundreds
    pooled = loss(prediction, target)
    assert quiet_alone > 100 * loud
    # A mean of per-window losses would be about quiet_alone / 4. Pooled, the quiet
    # window adds its (bounded) log-magnitude error, a quarter of the signals, and next
    # to nothing to the convergence.
    assert pooled < 0.05 * quiet_alone


def test_stft_loss_passes_gradients_to_the_prediction() -> None:
    loss = MultiResolutionSTFTLoss(SAMPLE_RATE)
    target = _stereo(0)
    prediction = (target + 0.1 * _stereo(1)).requires_grad_(True)
    loss(prediction, target).backward()
    assert prediction.grad is not None
    assert torch.isfinite(prediction.grad).all()
    assert prediction.grad.abs().max() > 0


def test_stft_loss_rejects_mismatched_shapes() -> None:
    loss = MultiResolutionSTFTLoss(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    with pytest.raises(ValueError, match="B, C, S"):
        loss(_stereo(0), _stereo(0)[:, :1])


# --- Mid/side + left/right reconstruction --------------------------------------------------


def test_reconstruction_loss_partitions_into_its_weighted_terms() -> None:
    rec_loss = VAEReconstructionLoss(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    mrstft = rec_loss.stft_loss
    audio = _stereo(0)
    reconstruction = audio + 0.1 * _stereo(1)
    result = rec_loss(reconstruction, audio)

    def channel(x: torch.Tensor, c: int) -> torch.Tensor:
        return x[:, c:c + 1]

    def mid(x: torch.Tensor) -> torch.Tensor:
        return channel(x, 0) + channel(x, 1)

    def side(x: torch.Tensor) -> torch.Tensor:
        return channel(x, 0) - channel(x, 1)

    mid_side = (mrstft(mid(reconstruction), mid(audio))
                + mrstft(side(reconstruction), side(audio))) / 2
    left_right = (0.5 * mrstft(channel(reconstruction, 0), channel(audio, 0))
                  + 0.5 * mrstft(channel(reconstruction, 1), channel(audio, 1)))
    torch.testing.assert_close(result.mid_side, mid_side)
    torch.testing.assert_close(result.left_right, left_right)
    torch.testing.assert_close(result.total, mid_side + left_right)


def test_a_side_only_error_leaves_the_mid_term_at_zero() -> None:
    rec_loss = VAEReconstructionLoss(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    mrstft = rec_loss.stft_loss
    audio = _stereo(0)
    error = 0.1 * _stereo(1)[:, :1]
    reconstruction = audio + torch.cat([error, -error], dim=1)  # same L + R, other L - R
    result = rec_loss(reconstruction, audio)
    assert result.mid_side > 0 and result.left_right > 0
    side = reconstruction[:, :1] - reconstruction[:, 1:]
    torch.testing.assert_close(result.mid_side,
                               0.5 * mrstft(side, audio[:, :1] - audio[:, 1:]))


def test_swapped_channels_are_a_left_right_error_only() -> None:
    rec_loss = VAEReconstructionLoss(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    audio = _stereo(0)
    result = rec_loss(audio.flip(1), audio)  # L + R unchanged, L - R negated: same magnitudes
    assert result.mid_side.item() == pytest.approx(0.0, abs=1e-6)
    assert result.left_right > 0.1
    torch.testing.assert_close(result.total, result.left_right)


def test_reconstruction_loss_handles_a_mono_target() -> None:
    rec_loss = VAEReconstructionLoss(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    mono = _stereo(0)[:, :1].expand(-1, 2, -1)  # silent side
    reconstruction = mono + 1e-3 * _stereo(1)
    result = rec_loss(reconstruction, mono)
    assert torch.isfinite(result.total)
    assert rec_loss(mono, mono.clone()).total.item() == 0.0


def test_reconstruction_loss_needs_stereo() -> None:
    rec_loss = VAEReconstructionLoss(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    mono = _stereo(0)[:, :1]
    with pytest.raises(ValueError, match="stereo"):
        rec_loss(mono, mono)


# --- Discriminator -------------------------------------------------------------------------


def test_discriminator_gives_a_logit_map_per_scale_and_features_per_layer() -> None:
    torch.manual_seed(0)
    discriminator = MultiScaleSTFTDiscriminator()
    audio = _stereo(0, num_samples=16384)
    with torch.no_grad():
        output = discriminator(audio)
    assert len(output.logits) == len(output.features) == 5
    for fft_size, logits, features in zip((2048, 1024, 512, 256, 128), output.logits,
                                          output.features, strict=True):
        num_frames = (16384 - fft_size) // (fft_size // 4) + 1
        num_bins = fft_size // 2 + 1
        for _ in range(3):  # three convolutions with frequency stride 2
            num_bins = (num_bins - 1) // 2 + 1
        assert logits.shape == (2, 1, num_frames, num_bins)
        assert len(features) == 5  # input conv, three dilated convs, 3x3 conv
        assert features[0].shape == (2, 64, num_frames, fft_size // 2 + 1)
        assert features[-1].shape == (2, 64, num_frames, num_bins)
        assert all(torch.isfinite(f).all() for f in [logits, *features])


def test_discriminator_parameters_get_gradients() -> None:
    torch.manual_seed(0)
    discriminator = MultiScaleSTFTDiscriminator(filters=8)
    output = discriminator(_stereo(0, num_samples=16384))
    sum(logits.mean() for logits in output.logits).backward()
    for name, parameter in discriminator.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().max() > 0, name


def test_discriminator_rejects_wrong_inputs() -> None:
    discriminator = MultiScaleSTFTDiscriminator(filters=4, fft_sizes=(64,))
    with pytest.raises(ValueError, match="B, 2, S"):
        discriminator(_stereo(0)[:, :1])
    with pytest.raises(ValueError, match="shorter"):
        discriminator(_stereo(0, num_samples=32))


# --- Hinge and feature matching ------------------------------------------------------------


def test_discriminator_hinge_loss() -> None:
    confident = discriminator_hinge_loss([torch.tensor([1.0, 3.0]), torch.ones(2, 3)],
                                         [torch.tensor([-1.0, -5.0]), -torch.ones(4)])
    assert confident.item() == 0.0
    # scale 1: relu(1 - 0.5) + relu(1 - 1) = 0.5; scale 2: 0 + relu(1 + 1) = 2
    value = discriminator_hinge_loss([torch.tensor([0.5]), torch.tensor([2.0])],
                                     [torch.tensor([-1.0]), torch.tensor([1.0])])
    assert value.item() == pytest.approx(1.25)


def test_generator_hinge_loss() -> None:
    assert generator_hinge_loss([torch.tensor([1.0, 4.0]), torch.ones(3)]).item() == 0.0
    # scale 1: mean(relu(1 - [0, -2])) = 2; scale 2: relu(1 - 0.5) = 0.5
    value = generator_hinge_loss([torch.tensor([0.0, -2.0]), torch.tensor([0.5])])
    assert value.item() == pytest.approx(1.25)


def test_feature_matching_loss() -> None:
    real = [[torch.ones(2, 3), 2 * torch.ones(4)], [-torch.ones(5)]]
    assert feature_matching_loss(real, [[f.clone() for f in s] for s in real]).item() == 0.0
    # |2 - 1| / 1 = 1, |3 - 2| / 2 = 0.5, |1 - -1| / 1 = 2; mean over the three layers
    fake = [[2 * torch.ones(2, 3), 3 * torch.ones(4)], [torch.ones(5, requires_grad=True)]]
    real[0][0].requires_grad_(True)
    value = feature_matching_loss(real, fake)
    assert value.item() == pytest.approx(3.5 / 3)
    value.backward()
    assert real[0][0].grad is None  # the real features are targets
    assert fake[1][0].grad is not None


def test_a_few_steps_reduce_the_discriminator_hinge_loss() -> None:
    torch.manual_seed(0)
    discriminator = MultiScaleSTFTDiscriminator(filters=4, fft_sizes=(128, 32))
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=3e-2)
    real = torch.stack([_sine(440.0, 1024), _sine(660.0, 1024)])[None]
    fake = 0.5 * _stereo(1, batch=1, num_samples=1024)

    def hinge() -> torch.Tensor:
        return discriminator_hinge_loss(discriminator(real).logits, discriminator(fake).logits)

    initial = hinge().item()
    for _ in range(10):
        optimizer.zero_grad()
        hinge().backward()
        optimizer.step()
    assert hinge().item() < 0.5 * initial


# --- Multi-scale mel loss -------------------------------------------------------------------


def test_mel_loss_matches_its_definition_at_one_scale() -> None:
    loss = MultiScaleMelLoss(SAMPLE_RATE, scales=((256, 20),))
    x, y = _stereo(0), _stereo(1)
    fb = mel_filterbank(SAMPLE_RATE, 256, 20).float()
    mx, my = fb @ stft_magnitude(x, 256, 64), fb @ stft_magnitude(y, 256, 64)
    expected = ((mx.clamp(min=1e-5).log10() - my.clamp(min=1e-5).log10()).abs().mean()
                + (mx - my).abs().mean())
    torch.testing.assert_close(loss(x, y), expected)
    assert loss(x, x).item() == 0.0


def test_mel_loss_grows_as_a_tone_moves_away_from_the_target() -> None:
    target = _sine(1000.0).expand(1, 2, -1).contiguous()
    mel = MultiScaleMelLoss(SAMPLE_RATE)
    losses = [mel(_sine(f).expand(1, 2, -1).contiguous(), target).item()
              for f in (1120.0, 1500.0, 3000.0)]
    assert losses == sorted(losses) and losses[0] > 0


def test_mel_loss_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="scales"):
        MultiScaleMelLoss(SAMPLE_RATE, scales=())
    with pytest.raises(ValueError, match=r"\[B, C, S\]"):
        MultiScaleMelLoss(SAMPLE_RATE)(_stereo(0), _stereo(1, batch=1))


def test_generator_losses_add_the_weighted_mel_term() -> None:
    losses = VAELosses(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    audio = _stereo(0)
    reconstruction = audio + 0.1 * _stereo(1)
    latents = _latents(2)
    result = losses.generator_losses(audio, reconstruction, latents,
                                     weights=VAELossWeights(mel=2.0))
    torch.testing.assert_close(result.mel, losses.mel_loss(reconstruction, audio))
    assert result.mel > 0
    torch.testing.assert_close(
        result.total, result.reconstruction.total + 1e-4 * result.kl + 2.0 * result.mel)


# --- Low band --------------------------------------------------------------------------------


def test_low_band_loss_is_zero_for_identical_signals_and_sees_dc() -> None:
    loss = LowBandLoss(SAMPLE_RATE, fft_sizes=(2048, 1024))
    audio = _stereo(0, num_samples=8192)
    assert loss(audio, audio) < 1e-6
    # A DC of 0.01 on a 0.1-RMS signal (-20 dB): nearly invisible to the A-weighted
    # MR-STFT loss, plain to this one.
    shifted = audio + 0.01
    mrstft = MultiResolutionSTFTLoss(SAMPLE_RATE, fft_sizes=(2048, 1024))
    assert loss(shifted, audio) > 0.15
    assert mrstft(shifted, audio) < 0.02


def test_low_band_loss_ignores_the_high_band_and_sees_low_phase() -> None:
    loss = LowBandLoss(SAMPLE_RATE, fft_sizes=(2048, 1024), cutoff_hz=500.0)
    low = _sine(110.0, 8192).view(1, 1, -1)
    high = 0.5 * _sine(5000.0, 8192).view(1, 1, -1)
    # Changing only what lies far above the cutoff costs (almost) nothing...
    assert loss(low + high, low) < 0.02
    # ...while the same 110 Hz tone a quarter period late costs the complex term: the
    # magnitudes agree, the phase does not.
    late = torch.cos(2 * math.pi * 110.0 * torch.arange(8192) / SAMPLE_RATE).view(1, 1, -1)
    assert loss(late, low) > 1.0


def test_low_band_loss_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="cutoff_hz"):
        LowBandLoss(SAMPLE_RATE, cutoff_hz=30000.0)
    with pytest.raises(ValueError, match="fft_sizes"):
        LowBandLoss(SAMPLE_RATE, fft_sizes=())


def test_generator_losses_add_the_weighted_low_band_term() -> None:
    losses = VAELosses(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    audio = _stereo(0, num_samples=8192)
    reconstruction = audio + 0.02
    result = losses.generator_losses(audio, reconstruction, _latents(2),
                                     weights=VAELossWeights(low_band=3.0))
    torch.testing.assert_close(result.low_band, losses.low_band_loss(reconstruction, audio))
    assert result.low_band > 0
    torch.testing.assert_close(
        result.total, result.reconstruction.total + 1e-4 * result.kl + 3.0 * result.low_band)
    off = losses.generator_losses(audio, reconstruction, _latents(2))
    assert off.low_band == 0


# --- The training objective ----------------------------------------------------------------


def _latents(seed: int) -> LatentDistribution:
    generator = torch.Generator().manual_seed(seed)
    return LatentDistribution(mean=torch.randn(2, 4, 8, generator=generator),
                              scale=torch.randn(2, 4, 8, generator=generator))


def test_generator_losses_without_a_discriminator_are_reconstruction_and_kl() -> None:
    losses = VAELosses(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    audio = _stereo(0)
    reconstruction = audio + 0.1 * _stereo(1)
    latents = _latents(2)
    result = losses.generator_losses(audio, reconstruction, latents)
    torch.testing.assert_close(result.kl, latents.kl())
    torch.testing.assert_close(result.total, result.reconstruction.total + 1e-4 * result.kl)
    assert result.adversarial.item() == 0.0 and result.feature_matching.item() == 0.0
    assert result.mel.item() == 0.0  # off by default: the objective of SYSTEM.md


def test_generator_losses_weigh_the_adversarial_terms() -> None:
    torch.manual_seed(0)
    losses = VAELosses(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    discriminator = MultiScaleSTFTDiscriminator(filters=4, fft_sizes=(256, 64))
    audio = _stereo(0)
    reconstruction = (audio + 0.1 * _stereo(1)).requires_grad_(True)
    weights = VAELossWeights(reconstruction=2.0, adversarial=0.3, feature_matching=4.0, kl=0.1)
    result = losses.generator_losses(audio, reconstruction, _latents(2), discriminator, weights)
    expected = (2.0 * result.reconstruction.total + 0.3 * result.adversarial
                + 4.0 * result.feature_matching + 0.1 * result.kl)
    torch.testing.assert_close(result.total, expected)
    assert result.adversarial > 0 and result.feature_matching > 0

    result.total.backward()
    assert reconstruction.grad is not None and reconstruction.grad.abs().max() > 0
    assert all(p.grad is None and p.requires_grad for p in discriminator.parameters())


def test_discriminator_losses_do_not_reach_the_generator() -> None:
    torch.manual_seed(0)
    losses = VAELosses(SAMPLE_RATE, fft_sizes=SMALL_FFTS)
    discriminator = MultiScaleSTFTDiscriminator(filters=4, fft_sizes=(256, 64))
    audio = _stereo(0)
    reconstruction = (audio + 0.1 * _stereo(1)).requires_grad_(True)
    result = losses.discriminator_losses(audio, reconstruction, discriminator)
    expected = discriminator_hinge_loss(discriminator(audio).logits,
                                        discriminator(reconstruction).logits)
    torch.testing.assert_close(result.total, expected)
    result.total.backward()
    assert reconstruction.grad is None
    assert all(p.grad is not None for p in discriminator.parameters())


def test_loss_weights_default_to_the_system_values_and_reject_negatives() -> None:
    assert VAELossWeights() == VAELossWeights(reconstruction=1.0, adversarial=0.1,
                                              feature_matching=5.0, kl=1e-4, mel=0.0,
                                              low_band=0.0)
    with pytest.raises(ValueError, match="kl"):
        VAELossWeights(kl=-1.0)
    with pytest.raises(ValueError, match="mel"):
        VAELossWeights(mel=float("nan"))
    with pytest.raises(ValueError, match="low_band"):
        VAELossWeights(low_band=-0.5)

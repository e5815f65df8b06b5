"""Tests of longplay.diffusion.objectives (training-time corruption, targets and loss)."""

from __future__ import annotations

import math

import pytest
import torch

from longplay.diffusion import (
    diffusion_loss,
    padding_frame_weights,
    rf_objective_sample,
    rf_to_denoised,
    rf_to_noise,
    sample_training_noise,
    sample_training_t,
    v_objective_sample,
    v_to_denoised,
    v_to_noise,
)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    x0 = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    t = torch.tensor([0.05, 0.5, 0.97], dtype=torch.float64)
    return x0, noise, t


def test_v_objective_definition() -> None:
    x0, noise, t = _batch()
    sample = v_objective_sample(x0, t, noise)
    for b in range(3):
        a, s = math.cos(math.pi * t[b].item() / 2), math.sin(math.pi * t[b].item() / 2)
        torch.testing.assert_close(sample.x_t[b], a * x0[b] + s * noise[b], rtol=0, atol=1e-14)
        torch.testing.assert_close(sample.target[b], a * noise[b] - s * x0[b], rtol=0, atol=1e-14)
    assert torch.equal(sample.t, t)


def test_v_objective_round_trips_float64() -> None:
    x0, noise, t = _batch()
    sample = v_objective_sample(x0, t, noise)
    torch.testing.assert_close(v_to_denoised(sample.x_t, sample.target, t), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(v_to_noise(sample.x_t, sample.target, t), noise, rtol=0, atol=1e-12)


def test_rf_objective_definition_and_round_trips_float64() -> None:
    x0, noise, t = _batch()
    sample = rf_objective_sample(x0, t, noise)
    tb = t.view(-1, 1, 1)
    torch.testing.assert_close(sample.x_t, (1 - tb) * x0 + tb * noise, rtol=0, atol=1e-14)
    torch.testing.assert_close(sample.target, noise - x0, rtol=0, atol=0)
    torch.testing.assert_close(rf_to_denoised(sample.x_t, sample.target, t), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(rf_to_noise(sample.x_t, sample.target, t), noise, rtol=0, atol=1e-12)


def test_objectives_at_the_ends_of_time() -> None:
    x0, noise, _ = _batch()
    zero, one = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    assert torch.equal(rf_objective_sample(x0, zero, noise).x_t, x0)
    assert torch.equal(rf_objective_sample(x0, one, noise).x_t, noise)
    assert torch.equal(v_objective_sample(x0, zero, noise).x_t, x0)
    torch.testing.assert_close(v_objective_sample(x0, one, noise).x_t, noise, rtol=0, atol=1e-15)


def test_loss_is_zero_for_a_perfect_prediction_and_mse_otherwise() -> None:
    x0, noise, t = _batch()
    sample = v_objective_sample(x0, t, noise)
    assert diffusion_loss(sample.target.clone(), sample).item() == 0.0
    assert diffusion_loss(sample.target + 0.5, sample).item() == pytest.approx(0.25, rel=1e-12)
    with pytest.raises(ValueError, match="shape"):
        diffusion_loss(sample.target[:, :2], sample)
    with pytest.raises(ValueError, match="shape"):
        v_objective_sample(x0, t, noise[:2])


def test_training_draws_come_from_the_generator_only() -> None:
    state = torch.random.get_rng_state()
    t1 = sample_training_t(1000, torch.Generator().manual_seed(3))
    t2 = sample_training_t(1000, torch.Generator().manual_seed(3))
    x0 = torch.zeros(2, 3, 4)
    n1 = sample_training_noise(x0, torch.Generator().manual_seed(4))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(t1, t2) and t1.shape == (1000,)
    assert t1.min() >= 0 and t1.max() < 1 and abs(t1.mean().item() - 0.5) < 0.05
    assert n1.shape == x0.shape and n1.dtype == x0.dtype
    assert not torch.equal(n1, sample_training_noise(x0, torch.Generator().manual_seed(5)))


def test_padding_frame_weights_split_each_padded_window_by_the_share() -> None:
    frames, share = 10, 0.3
    w = padding_frame_weights(torch.tensor([2, 10, 7]), frames, share)
    assert w.shape == (3, frames)
    torch.testing.assert_close(w.sum(dim=1), torch.full((3,), float(frames)))
    # The padding (frames from num_valid on) carries `share` of each padded row.
    assert float(w[0, 2:].sum()) == pytest.approx(share * frames)
    assert float(w[2, 7:].sum()) == pytest.approx(share * frames)
    assert torch.equal(w[1], torch.ones(frames))  # no padding: every frame alike
    assert len(set(w[0, :2].tolist())) == 1 and len(set(w[0, 2:].tolist())) == 1
    with pytest.raises(ValueError, match=r"padding_share must be in \[0, 1\)"):
        padding_frame_weights(torch.tensor([2]), frames, 1.0)


def test_weighted_diffusion_loss_is_the_weighted_mean_of_the_frames() -> None:
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 6, generator=g), torch.randn(2, 4, 6, generator=g)
    sample = v_objective_sample(x0, torch.tensor([0.3, 0.7]), noise)
    prediction = torch.randn(2, 4, 6, generator=g)
    ones = torch.ones(2, 6)
    torch.testing.assert_close(diffusion_loss(prediction, sample, ones),
                               diffusion_loss(prediction, sample))
    w = padding_frame_weights(torch.tensor([2, 6]), 6, 0.5)
    per_frame = ((prediction - sample.target) ** 2).mean(dim=1)
    expected = (per_frame * w).sum() / w.sum()
    torch.testing.assert_close(diffusion_loss(prediction, sample, w), expected)
    assert not torch.allclose(expected, diffusion_loss(prediction, sample))
    with pytest.raises(ValueError, match="frame_weights has shape"):
        diffusion_loss(prediction, sample, torch.ones(2, 5))

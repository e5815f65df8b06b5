"""Tests of longplay.diffusion.denoisers (preconditioning of v and rectified-flow networks)."""

from __future__ import annotations

import torch

from longplay.diffusion import RFDenoiser, VDenoiser, alpha_sigma, sigma_to_t, t_to_sigma


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(21)
    x0 = torch.randn(3, 2, 7, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 2, 7, generator=g, dtype=torch.float64)
    t = torch.tensor([0.1, 0.6, 0.95], dtype=torch.float64)
    return x0, eps, t


def test_vdenoiser_with_an_oracle_v_network_recovers_x0() -> None:
    x0, eps, t = _data()
    alpha, sigma = (a.view(-1, 1, 1) for a in alpha_sigma(t))
    seen = {}

    def oracle(x_in: torch.Tensor, t_in: torch.Tensor) -> torch.Tensor:
        seen["x"], seen["t"] = x_in, t_in
        return alpha * eps - sigma * x0  # the true v

    s = t_to_sigma(t)
    out = VDenoiser(oracle)(x0 + s.view(-1, 1, 1) * eps, s)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)
    # the network saw the cosine-schedule state and time
    torch.testing.assert_close(seen["x"], alpha * x0 + sigma * eps, rtol=0, atol=1e-12)
    torch.testing.assert_close(seen["t"], t, rtol=0, atol=1e-14)


def test_vdenoiser_scalings_are_the_cosine_coefficients() -> None:
    t = torch.linspace(0, 0.99, 12, dtype=torch.float64)
    alpha, sigma = alpha_sigma(t)
    c_skip, c_out, c_in = VDenoiser(lambda x, t: x).scalings(t_to_sigma(t))
    torch.testing.assert_close(c_in, alpha, rtol=1e-12, atol=0)
    torch.testing.assert_close(c_skip, alpha**2, rtol=1e-12, atol=0)
    torch.testing.assert_close(c_out, -sigma, rtol=1e-12, atol=1e-15)


def test_rfdenoiser_with_an_oracle_velocity_recovers_x0() -> None:
    x0, eps, t = _data()
    tb = t.view(-1, 1, 1)
    out = RFDenoiser(lambda x, t_in: eps - x0)((1 - tb) * x0 + tb * eps, t)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)


def test_denoisers_accept_a_scalar_noise_level_for_the_whole_batch() -> None:
    x = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0))
    calls = []

    def model(x_in: torch.Tensor, t_in: torch.Tensor) -> torch.Tensor:
        calls.append(t_in)
        return x_in * 2

    assert torch.equal(RFDenoiser(model)(x, torch.tensor(0.25)), x - 0.25 * (x * 2))
    assert calls[-1].shape == (4,)
    VDenoiser(model)(x, torch.tensor(3.0))
    assert calls[-1].shape == (4,)
    torch.testing.assert_close(calls[-1], sigma_to_t(torch.full((4,), 3.0)))

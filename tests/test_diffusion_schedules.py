"""Tests of longplay.diffusion.schedules against the stable-audio-tools 0.0.20 fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longplay.diffusion import (
    alpha_sigma,
    log_linear_sigmas,
    logsnr_shift_t_grid,
    rf_t_grid,
    sigma_to_t,
    t_to_sigma,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _reference(name: str, key: str) -> torch.Tensor:
    return load_file(str(FIXTURES / name / "reference.safetensors"))[key]


def test_log_linear_sigmas_match_k_diffusion_fixture() -> None:
    expected = _reference("sao1_tiny", "sample.sigmas_dpmpp2m")  # steps 8, 0.3 .. 500, then 0
    got = log_linear_sigmas(8, 0.3, 500.0)
    assert got.shape == (9,) and got.dtype == torch.float32
    assert got[-1] == 0
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)


def test_log_linear_sigmas_are_geometric() -> None:
    s = log_linear_sigmas(5, 0.1, 10.0, dtype=torch.float64)
    ratios = s[1:-1] / s[:-2]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 0.01**0.25), rtol=1e-12, atol=0)
    assert s[0].item() == pytest.approx(10.0, rel=1e-14)
    assert s[-2].item() == pytest.approx(0.1, rel=1e-14)


def test_logsnr_t_grid_without_endpoint_matches_v_fixture() -> None:
    expected = _reference("sao1_tiny", "sample.t_euler")  # steps 8, no final 0
    got = logsnr_shift_t_grid(8, include_endpoint=False)
    assert got.shape == (8,)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert got[0] == 1


def test_logsnr_t_grid_with_endpoint_matches_rf_fixture() -> None:
    expected = _reference("saos_tiny", "sample.t_schedule")  # steps 8, 1 -> 0
    got = logsnr_shift_t_grid(8, include_endpoint=True)
    assert got.shape == (9,)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert got[0] == 1 and got[-1] == 0


def test_logsnr_t_grid_interior_is_uniform_in_logsnr() -> None:
    t = logsnr_shift_t_grid(10, include_endpoint=True, dtype=torch.float64)
    logsnr = torch.log((1 - t[1:-1]) / t[1:-1])  # logit of 1 - t
    steps = logsnr[1:] - logsnr[:-1]
    torch.testing.assert_close(steps, torch.full_like(steps, 8.2 / 10), rtol=1e-10, atol=0)
    assert logsnr[-1].item() == pytest.approx(2.0 - 8.2 / 10, rel=1e-12)
    no_end = logsnr_shift_t_grid(10, include_endpoint=False, dtype=torch.float64)
    assert torch.equal(no_end, t[:-1])


def test_rf_t_grid_is_plain_linspace() -> None:
    assert torch.equal(rf_t_grid(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))


@pytest.mark.parametrize("fn", [rf_t_grid, lambda s: log_linear_sigmas(s, 0.1, 1.0)])
def test_grids_reject_zero_steps(fn) -> None:
    with pytest.raises(ValueError, match="steps"):
        fn(0)


def test_cosine_schedule_and_sigma_round_trip_float64() -> None:
    t = torch.linspace(0, 0.999, 101, dtype=torch.float64)
    alpha, sigma = alpha_sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t), rtol=0, atol=1e-15)
    s = t_to_sigma(t)
    torch.testing.assert_close(s, sigma / alpha, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(sigma_to_t(s), t, rtol=0, atol=1e-13)
    ve = torch.logspace(-3, 3, 50, dtype=torch.float64)
    torch.testing.assert_close(t_to_sigma(sigma_to_t(ve)), ve, rtol=1e-12, atol=0)
    assert alpha_sigma(torch.tensor(0.0)) == (1.0, 0.0)

"""Tests of longplay.diffusion.samplers with analytic denoisers for Gaussian data.

Data x0 ~ N(MU, S^2) independently per element. Then
* VE: E[x0 | x0 + s eps] = (S^2 x + s^2 MU) / (S^2 + s^2), and the probability-flow ODE maps
  x(s_max) to MU + (x(s_max) - MU) S / sqrt(S^2 + s_max^2) at s = 0;
* RF: x_t = (1 - t) x0 + t eps, E[x0 | x_t] = MU + (1-t) S^2 (x_t - (1-t) MU) / ((1-t)^2 S^2 + t^2),
  and the flow maps x_1 ~ N(0, 1) to MU + S x_1 at t = 0.
Everything runs in float64 on tiny tensors.
"""

from __future__ import annotations

import inspect
import math
from itertools import pairwise

import pytest
import torch

from longplay.diffusion import (
    SAMPLERS,
    RFDenoiser,
    SamplerStep,
    VDenoiser,
    alpha_sigma,
    get_sampler,
    log_linear_sigmas,
    logsnr_shift_t_grid,
    rf_t_grid,
    sample_consistency,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_3m_sde,
    sample_euler,
    sample_pingpong,
    sample_rf_dpmpp,
    sample_rf_euler,
    sample_v_ddim,
    t_to_sigma,
)

MU, S = 0.3, 0.5
SIGMA_MAX = 80.0
F64 = torch.float64


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _rms(a: torch.Tensor) -> float:
    return a.pow(2).mean().sqrt().item()


def ve_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s2 = sigma.view(-1, 1, 1) ** 2
    return (S**2 * x + s2 * MU) / (S**2 + s2)


def ve_exact(x_start: torch.Tensor) -> torch.Tensor:
    return MU + (x_start - MU) * S / math.sqrt(S**2 + SIGMA_MAX**2)


def ve_start(z: torch.Tensor) -> torch.Tensor:
    """A draw from the exact marginal at SIGMA_MAX (mean MU, std sqrt(S^2 + SIGMA_MAX^2))."""
    return MU + z * math.sqrt(S**2 + SIGMA_MAX**2)


def rf_posterior_mean(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    a = 1 - t.view(-1, 1, 1)
    tb = t.view(-1, 1, 1)
    return MU + a * S**2 / (a**2 * S**2 + tb**2) * (x - a * MU)


def rf_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (x - rf_posterior_mean(x, t)) / t.view(-1, 1, 1)


def rf_flow_map(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The exact ODE endpoint from (x, t): what an ideal distilled (consistency) model outputs."""
    a = 1 - t.view(-1, 1, 1)
    tb = t.view(-1, 1, 1)
    return MU + S * (x - a * MU) / torch.sqrt(a**2 * S**2 + tb**2)


def v_network(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The exact v for the cosine schedule x_t = alpha x0 + sigma eps (needs t > 0)."""
    alpha, sigma = (c.view(-1, 1, 1) for c in alpha_sigma(t))
    x0 = MU + alpha * S**2 / (alpha**2 * S**2 + sigma**2) * (x - alpha * MU)
    return (alpha * x - x0) / sigma


# ------------------------------------------------------------------------------------------
# deterministic VE samplers


def test_euler_and_dpmpp_2m_converge_to_the_exact_ode_solution() -> None:
    x = ve_start(_randn(2, 3, 16, seed=0))
    exact = ve_exact(x)
    errors: dict[str, list[float]] = {"euler": [], "dpmpp-2m": []}
    for steps in (8, 16, 32, 64):
        sigmas = log_linear_sigmas(steps, 1e-3, SIGMA_MAX, dtype=F64)
        errors["euler"].append(_rms(sample_euler(ve_denoiser, x, sigmas) - exact))
        errors["dpmpp-2m"].append(_rms(sample_dpmpp_2m(ve_denoiser, x, sigmas) - exact))
    euler, dpm = errors["euler"], errors["dpmpp-2m"]
    # Euler is first order: each doubling of the steps roughly halves the error
    assert all(1.6 < a / b < 2.4 for a, b in pairwise(euler))
    # DPM-Solver++(2M) is more accurate at every budget and converges faster (second order)
    assert all(d < e / 3 for d, e in zip(dpm, euler, strict=True))
    assert dpm[-1] < 5e-3 and dpm[-2] / dpm[-1] > 3


@pytest.mark.parametrize("name", ["euler", "dpmpp-2m", "rf-euler", "rf-dpmpp", "v-ddim"])
def test_deterministic_samplers_follow_a_straight_path_exactly(name: str) -> None:
    """An oracle that knows the noise eps of one path: every solver must stay on it exactly
    (the path is a straight line in the solver's own variables, so no discretisation error)."""
    x0, eps = _randn(2, 3, 5, seed=20), _randn(2, 3, 5, seed=21)
    spec = get_sampler(name)
    if spec.kind == "ve":
        sigmas = log_linear_sigmas(6, 0.05, 20.0, dtype=F64)
        out = spec.fn(lambda x, s: x - s.view(-1, 1, 1) * eps, x0 + sigmas[0] * eps, sigmas)
    elif spec.kind == "rf":
        grid = logsnr_shift_t_grid(6, include_endpoint=True, dtype=F64)
        out = spec.fn(RFDenoiser(lambda x, t: eps - x0), eps, grid)
    else:
        grid = logsnr_shift_t_grid(6, include_endpoint=False, dtype=F64)

        def v_true(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            alpha, sigma = (c.view(-1, 1, 1) for c in alpha_sigma(t))
            return alpha * eps - sigma * x0

        out = spec.fn(VDenoiser(v_true), eps, grid)
    # rf-dpmpp bounds 1 - t by 1e-10 in its log-SNR (as the reference does), which moves its
    # first step off the exact path by about 1e-10 * t_1 / (1 - t_1) ~ 2e-8 of the signal.
    atol = 1e-7 if name == "rf-dpmpp" else 1e-12
    torch.testing.assert_close(out, x0, rtol=0, atol=atol)


def test_callback_reports_every_step_before_the_update() -> None:
    x = ve_start(_randn(1, 2, 4, seed=1))
    sigmas = log_linear_sigmas(5, 0.1, SIGMA_MAX, dtype=F64)
    steps: list[SamplerStep] = []
    out = sample_dpmpp_2m(ve_denoiser, x, sigmas, callback=steps.append)
    assert [s.i for s in steps] == list(range(5))
    assert torch.equal(steps[0].x, x) and steps[0].sigma == sigmas[0]
    torch.testing.assert_close(steps[2].denoised, ve_denoiser(steps[2].x, sigmas[2:3]))
    assert torch.equal(out, steps[-1].denoised)  # the final step to sigma 0 is the denoised value
    with pytest.raises(AttributeError):
        steps[0].i = 7  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    [torch.tensor([1.0, 2.0, 0.0]), torch.tensor([2.0, 1.0, -0.5]), torch.tensor([[1.0, 0.0]])],
)
def test_grids_are_validated(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="sigmas"):
        sample_euler(ve_denoiser, torch.zeros(1, 1, 2), bad)


def test_a_grid_ending_above_zero_runs_part_of_the_way() -> None:
    """A one-step solver over [a, b] then [b, 0] is the run over [a, b, 0]."""
    sigmas = log_linear_sigmas(6, 0.05, SIGMA_MAX, dtype=F64)
    x = ve_start(_randn(1, 2, 4, seed=11))
    whole = sample_euler(ve_denoiser, x, sigmas)
    halfway = sample_euler(ve_denoiser, x, sigmas[:4])
    assert torch.equal(sample_euler(ve_denoiser, halfway, sigmas[3:]), whole)


# ------------------------------------------------------------------------------------------
# SDE samplers


@pytest.mark.parametrize("sampler", [sample_dpmpp_2m_sde, sample_dpmpp_3m_sde])
def test_sde_samplers_are_seeded_and_sample_the_data_distribution(sampler) -> None:
    x = ve_start(_randn(4, 4, 1024, seed=2))
    sigmas = log_linear_sigmas(40, 1e-2, SIGMA_MAX, dtype=F64)
    state = torch.random.get_rng_state()
    out = sampler(ve_denoiser, x, sigmas, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    again = sampler(ve_denoiser, x, sigmas, generator=torch.Generator().manual_seed(5))
    other = sampler(ve_denoiser, x, sigmas, generator=torch.Generator().manual_seed(6))
    assert torch.equal(out, again)
    assert not torch.allclose(out, other)
    assert out.mean().item() == pytest.approx(MU, abs=0.02)
    assert out.std().item() == pytest.approx(S, abs=0.02)
    # the deterministic ODE solution from the same start is a different point
    assert _rms(out - ve_exact(x)) > 0.3


def _exact_output_moments(sampler, steps: int) -> tuple[float, float]:
    """Mean and std of an SDE sampler's output for Gaussian data, without Monte Carlo error.

    With the Gaussian denoiser every update is affine, so the output is c + a x + sum_i b_i z_i
    for the start x ~ N(MU, S^2 + SIGMA_MAX^2) and the step noises z_i ~ N(0, 1). Batch item 0
    runs with x = 0 and z = 0 (gives c), item 1 with x = 1 (gives c + a), item i + 2 with
    z_i = 1 (gives c + b_i).
    """
    sigmas = log_linear_sigmas(steps, 1e-2, SIGMA_MAX, dtype=F64)
    k = steps + 2
    x = torch.zeros(k, 1, 1, dtype=F64)
    x[1] = 1

    def basis_noise(i: int, x_now: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(k, 1, 1, dtype=F64)
        z[i + 2] = 1
        return z

    out = sampler(ve_denoiser, x, sigmas, noise_fn=basis_noise).flatten()
    c, a, b = out[0], out[1] - out[0], out[2:] - out[0]
    var = a**2 * (S**2 + SIGMA_MAX**2) + b.pow(2).sum()
    return (c + a * MU).item(), var.sqrt().item()


@pytest.mark.parametrize(
    ("sampler", "std_10_steps"),
    # reference stds: k-diffusion's own sample_dpmpp_2m_sde / sample_dpmpp_3m_sde (eta 1,
    # midpoint) run on the same grid, denoiser and unit noises through its noise_sampler hook
    [(sample_dpmpp_2m_sde, 0.5169876281007231), (sample_dpmpp_3m_sde, 0.6907508863961781)],
)
def test_sde_output_distribution_matches_k_diffusion_and_converges(
    sampler, std_10_steps: float
) -> None:
    mean, std = _exact_output_moments(sampler, 10)
    assert mean == pytest.approx(MU, abs=1e-12)  # the mean is exact at any step count
    assert std == pytest.approx(std_10_steps, rel=1e-10)
    errors = [abs(_exact_output_moments(sampler, n)[1] - S) for n in (20, 40, 80)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1.2e-3
    assert errors[1] / errors[2] > 3.5  # about second order


@pytest.mark.parametrize("sampler", [sample_dpmpp_2m_sde, sample_dpmpp_3m_sde, sample_pingpong,
                                     sample_consistency])
def test_stochastic_samplers_demand_a_noise_source(sampler) -> None:
    sigmas = torch.tensor([1.0, 0.5, 0.0], dtype=F64)
    with pytest.raises(ValueError, match="generator"):
        sampler(ve_denoiser, torch.zeros(1, 1, 2, dtype=F64), sigmas)


@pytest.mark.parametrize("sampler", [sample_dpmpp_2m_sde, sample_dpmpp_3m_sde])
def test_sde_noise_injection_draws_once_per_nonfinal_step(sampler) -> None:
    x = ve_start(_randn(1, 2, 8, seed=3))
    sigmas = log_linear_sigmas(6, 0.1, SIGMA_MAX, dtype=F64)
    noises = _randn(6, 1, 2, 8, seed=4)
    asked: list[int] = []

    def noise_fn(i: int, x_now: torch.Tensor) -> torch.Tensor:
        asked.append(i)
        return noises[i]

    out = sampler(ve_denoiser, x, sigmas, noise_fn=noise_fn)
    assert asked == [0, 1, 2, 3, 4]  # no draw for the final step to sigma 0
    again = sampler(ve_denoiser, x, sigmas, noise_fn=lambda i, _: noises[i])
    assert torch.equal(out, again)
    shifted = sampler(ve_denoiser, x, sigmas, noise_fn=lambda i, _: noises[i + 1])
    assert not torch.allclose(out, shifted)


# ------------------------------------------------------------------------------------------
# rectified-flow samplers


def test_rf_samplers_converge_to_the_exact_flow() -> None:
    x1 = _randn(2, 3, 16, seed=7)
    exact = MU + S * x1
    denoiser = RFDenoiser(rf_velocity)
    euler, dpm = [], []
    for steps in (8, 16, 32):
        grid = rf_t_grid(steps, dtype=F64)
        euler.append(_rms(sample_rf_euler(denoiser, x1, grid) - exact))
        dpm.append(_rms(sample_rf_dpmpp(denoiser, x1, grid) - exact))
    assert all(1.6 < a / b < 2.4 for a, b in pairwise(euler))
    assert all(d < e / 2 for d, e in zip(dpm, euler, strict=True))
    assert dpm[0] > dpm[1] > dpm[2] and dpm[-1] < 0.01


def test_rf_samplers_on_the_logsnr_grid_start_at_t_1_and_end_with_a_denoising_step() -> None:
    x1 = _randn(4, 4, 256, seed=8)
    grid = logsnr_shift_t_grid(16, include_endpoint=True, dtype=F64)
    # exact flow down to the last nonzero t (~0.18 here), then its posterior mean
    t_last = grid[-2:-1].expand(4)
    a, tb = 1 - t_last.view(-1, 1, 1), t_last.view(-1, 1, 1)
    x_last = a * MU + torch.sqrt(a**2 * S**2 + tb**2) * x1
    target = rf_posterior_mean(x_last, t_last)
    denoiser = RFDenoiser(rf_velocity)
    euler = sample_rf_euler(denoiser, x1, grid)
    dpm = sample_rf_dpmpp(denoiser, x1, grid)
    assert torch.isfinite(euler).all() and torch.isfinite(dpm).all()  # lambda(1) = -inf is fine
    assert _rms(dpm - target) < 0.01 < _rms(euler - target) / 2
    # the final denoising at t_last shrinks the spread below S, as the posterior mean must
    assert dpm.std().item() == pytest.approx(target.std().item(), rel=0.02)
    assert dpm.std().item() < 0.95 * S


def test_rf_dpmpp_final_step_returns_the_denoised_value_exactly() -> None:
    x1 = _randn(1, 2, 8, seed=9)
    steps: list[SamplerStep] = []
    grid = logsnr_shift_t_grid(8, include_endpoint=True, dtype=F64)
    out = sample_rf_dpmpp(RFDenoiser(rf_velocity), x1, grid, callback=steps.append)
    assert len(steps) == 8 and steps[-1].sigma == grid[-2]
    assert torch.equal(out, steps[-1].denoised)


def test_pingpong_with_injected_noise_matches_the_recurrence() -> None:
    x1 = _randn(2, 2, 8, seed=10)
    grid = logsnr_shift_t_grid(8, include_endpoint=True, dtype=F64)
    noises = _randn(8, 2, 2, 8, seed=11)
    asked: list[int] = []

    def noise_fn(i: int, x_now: torch.Tensor) -> torch.Tensor:
        asked.append(i)
        return noises[i]

    denoiser = RFDenoiser(rf_velocity)
    out = sample_pingpong(denoiser, x1, grid, noise_fn=noise_fn)
    assert asked == list(range(8))  # one draw per step, the last one included
    x = x1
    for i in range(8):
        denoised = denoiser(x, grid[i].expand(2))
        x = (1 - grid[i + 1]) * denoised + grid[i + 1] * noises[i]
    assert torch.equal(out, x)
    assert torch.equal(out, sample_pingpong(denoiser, x1, grid, noise_fn=lambda i, _: noises[i]))


def test_pingpong_with_an_ideal_distilled_model_samples_the_data_distribution() -> None:
    x1 = _randn(4, 4, 1024, seed=12)
    grid = logsnr_shift_t_grid(4, include_endpoint=True, dtype=F64)
    denoiser = RFDenoiser(lambda x, t: (x - rf_flow_map(x, t)) / t.view(-1, 1, 1))
    out = sample_pingpong(denoiser, x1, grid, generator=torch.Generator().manual_seed(13))
    again = sample_pingpong(denoiser, x1, grid, generator=torch.Generator().manual_seed(13))
    assert torch.equal(out, again)
    assert out.mean().item() == pytest.approx(MU, abs=0.02)
    assert out.std().item() == pytest.approx(S, abs=0.02)


# ------------------------------------------------------------------------------------------
# v-DDIM


def test_v_ddim_approaches_the_exact_flow_as_the_grid_refines() -> None:
    z = _randn(2, 3, 16, seed=14)
    exact = MU + S * z  # the cosine-schedule flow maps x(t=1) = z to MU + S z
    errors = []
    for steps in (8, 16, 32):
        grid = rf_t_grid(steps, dtype=F64)[:-1]  # 1 .. 1/steps, returns x0 at the last point
        errors.append(_rms(sample_v_ddim(VDenoiser(v_network), z, grid) - exact))
    assert all(1.6 < a / b < 2.4 for a, b in pairwise(errors))
    assert errors[-1] < 0.05


def test_v_ddim_is_euler_on_the_ve_ode() -> None:
    z = _randn(2, 2, 8, seed=15)
    t_grid = torch.tensor([0.9, 0.7, 0.45, 0.2, 0.05], dtype=F64)
    denoiser = VDenoiser(v_network)
    ddim = sample_v_ddim(denoiser, z, t_grid)
    sigmas = torch.cat([t_to_sigma(t_grid), torch.zeros(1, dtype=F64)])
    alpha0 = math.cos(math.pi * 0.9 / 2)
    euler = sample_euler(denoiser, z / alpha0, sigmas)
    torch.testing.assert_close(ddim, euler, rtol=0, atol=1e-10)


def test_v_ddim_needs_a_vdenoiser() -> None:
    grid = logsnr_shift_t_grid(4, include_endpoint=False, dtype=F64)
    with pytest.raises(TypeError, match="VDenoiser"):
        sample_v_ddim(RFDenoiser(rf_velocity), torch.zeros(1, 1, 2, dtype=F64), grid)


# ------------------------------------------------------------------------------------------
# registry


def test_registry_names_kinds_and_signatures() -> None:
    assert set(SAMPLERS) == {
        "euler",
        "consistency",
        "phased",
        "dpmpp-2m",
        "dpmpp-2m-sde",
        "dpmpp-3m-sde",
        "rf-euler",
        "rf-dpmpp",
        "pingpong",
        "v-ddim",
    }
    kinds = {name: spec.kind for name, spec in SAMPLERS.items()}
    assert kinds["dpmpp-2m"] == "ve" and kinds["pingpong"] == "rf" and kinds["v-ddim"] == "v-ddim"
    stochastic = {name for name, spec in SAMPLERS.items() if spec.stochastic}
    assert stochastic == {"consistency", "dpmpp-2m-sde", "dpmpp-3m-sde", "pingpong"}
    reference = inspect.signature(sample_euler)
    for name, spec in SAMPLERS.items():
        assert spec.name == name and get_sampler(name) is spec
        assert inspect.signature(spec.fn) == reference, name


def test_registry_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="dpmpp-3m-sde") as info:
        get_sampler("dpm++")
    assert "'dpm++'" in str(info.value)


@pytest.mark.parametrize("name", ["euler", "dpmpp-2m", "dpmpp-2m-sde", "dpmpp-3m-sde",
                                  "rf-euler", "rf-dpmpp", "pingpong", "consistency",
                                  "phased"])
def test_sampling_loops_read_no_tensor_values_on_the_host(name: str, monkeypatch) -> None:
    """On a GPU, reading a tensor's value (bool, float, item) in the loop would stall the
    device once per step: the loops branch on a host copy of the grid made up front."""
    from longplay.diffusion import samplers

    spec = get_sampler(name)
    if spec.kind == "rf":
        sigmas, denoiser = rf_t_grid(6).to(F64), RFDenoiser(rf_velocity)
        denoiser = rf_flow_map if name == "pingpong" else denoiser
    else:
        sigmas, denoiser = log_linear_sigmas(6, 0.1, SIGMA_MAX).to(F64), ve_denoiser
    x = _randn(2, 3, 4, seed=0) * float(sigmas[0])
    generator = torch.Generator().manual_seed(0)
    monkeypatch.setattr(samplers, "_check_grid", lambda *a, **k: None)  # validation may read

    def refuse(self, *args):
        raise AssertionError("a tensor value was read on the host inside the sampling loop")

    for method in ("__bool__", "__float__", "__int__", "item"):
        monkeypatch.setattr(torch.Tensor, method, refuse)
    out = spec.fn(denoiser, x, sigmas, generator=generator)
    monkeypatch.undo()
    assert out.shape == x.shape and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------
# consistency sampling


def test_consistency_sampler_denoises_then_renoises_with_the_given_noise() -> None:
    """Algorithm 1 of Song et al. 2023 written out: x <- D(x; s_i) + s_{i+1} z_i, the last
    step returning D itself; one evaluation per level, no noise drawn for the last."""
    sigmas = torch.tensor([80.0, 5.0, 0.5, 0.0], dtype=F64)
    x = _randn(2, 3, 8, seed=1) * 80.0
    noises = _randn(2, 2, 3, 8, seed=2)
    calls: list[float] = []

    def denoiser(x_now: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls.append(float(sigma[0]))
        return 0.5 * x_now / (1 + sigma.view(-1, 1, 1))  # any function of (x, sigma)

    out = sample_consistency(denoiser, x, sigmas, noise_fn=lambda i, x_now: noises[i])
    expected = x
    for i in range(3):
        expected = 0.5 * expected / (1 + sigmas[i])
        if i < 2:
            expected = expected + noises[i] * sigmas[i + 1]
    assert calls == [80.0, 5.0, 0.5]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_consistency_grid_spends_no_evaluation_at_sigma_min() -> None:
    spec = get_sampler("consistency")
    grid = spec.grid(4, sigma_min=0.03, sigma_max=500.0, dtype=F64)
    full = log_linear_sigmas(5, 0.03, 500.0, dtype=F64)
    assert grid.tolist() == [*full[:4].tolist(), 0.0]  # 500 ... 0.29, then 0
    assert float(grid[-2]) > 0.03 * 5
    one = spec.grid(1, sigma_min=0.03, sigma_max=500.0, dtype=F64)
    assert one.tolist() == pytest.approx([500.0, 0.0], rel=1e-12)
    from_init = spec.grid(2, sigma_min=0.03, sigma_max=500.0, top=2.0, dtype=F64)
    assert float(from_init[0]) == pytest.approx(2.0, rel=1e-12) and len(from_init) == 3


def test_phased_sampler_takes_euler_steps_on_the_consistency_grid() -> None:
    """A phased student's sampler: deterministic Euler steps between its phase ends, which
    are the consistency sampler's grid (sigma_min left out), the last step returning the
    x0 estimate."""
    spec = get_sampler("phased")
    assert not spec.stochastic and spec.kind == "ve"
    grid = spec.grid(4, sigma_min=0.03, sigma_max=500.0, dtype=F64)
    torch.testing.assert_close(grid, get_sampler("consistency").grid(
        4, sigma_min=0.03, sigma_max=500.0, dtype=F64), rtol=0, atol=0)
    x = _randn(2, 3, 8, seed=3) * 500.0

    def denoiser(x_now: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return 0.5 * x_now / (1 + sigma.view(-1, 1, 1))

    expected = x
    for i in range(4):
        d = denoiser(expected, grid[i].expand(2))
        expected = d + (grid[i + 1] / grid[i]) * (expected - d)
    torch.testing.assert_close(spec.fn(denoiser, x, grid), expected, rtol=1e-12, atol=1e-9)

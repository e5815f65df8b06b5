"""The objective registry: which samplers fit which objective, how every sampler's run
starts (from noise or from known latents), and that the states agree with the training
corruption of the objective they belong to."""

from __future__ import annotations

import pytest
import torch

from longplay.diffusion import (
    OBJECTIVES,
    SAMPLERS,
    RFDenoiser,
    VDenoiser,
    get_objective,
    get_sampler,
    rf_objective_sample,
    v_objective_sample,
)

F64 = torch.float64


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_every_config_name_has_one_record() -> None:
    assert set(OBJECTIVES) == {"v", "rectified_flow", "rf_denoiser"}
    assert get_objective("rf_denoiser") is get_objective("rectified_flow")
    assert get_objective("v").denoiser is VDenoiser
    assert get_objective("rectified_flow").denoiser is RFDenoiser
    with pytest.raises(ValueError, match=r"unknown diffusion objective 'eps'.*rectified_flow"):
        get_objective("eps")


def test_each_sampler_fits_exactly_one_objective() -> None:
    v, rf = get_objective("v"), get_objective("rectified_flow")
    assert set(v.sampler_names) | set(rf.sampler_names) == set(SAMPLERS)
    assert not set(v.sampler_names) & set(rf.sampler_names)
    assert "v-ddim" in v.sampler_names and "pingpong" in rf.sampler_names
    for objective in (v, rf):
        assert objective.defaults.sampler in objective.sampler_names
        assert objective.sampler(objective.defaults.sampler).kind in objective.sampler_kinds


def test_stable_audio_tools_names_are_aliases_for_flow_models_only() -> None:
    rf, v = get_objective("rectified_flow"), get_objective("v")
    assert rf.sampler("euler") is get_sampler("rf-euler")
    assert rf.sampler("dpmpp") is get_sampler("rf-dpmpp")
    assert {"euler", "dpmpp"} <= set(rf.accepted_sampler_names)
    assert v.sampler("euler") is get_sampler("euler")  # the VE Euler of v models
    with pytest.raises(ValueError, match="unknown sampler 'dpmpp'; choose one of"):
        v.sampler("dpmpp")
    with pytest.raises(ValueError, match="'pingpong' does not fit my model; use one of"):
        v.sampler("pingpong", model="my model")


def test_init_noise_levels_are_checked_by_the_objective() -> None:
    v, rf = get_objective("v"), get_objective("rectified_flow")
    assert v.init_noise_level_bounds(0.03, 500.0) == (0.03, 500.0)
    assert rf.init_noise_level_bounds(0.03, 500.0) == (0.0, 1.0)
    v.check_init_noise_level(2.0, 0.03, 500.0)
    rf.check_init_noise_level(1.0, 0.03, 500.0)
    for objective, level in ((v, 0.01), (v, 600.0), (rf, 0.0), (rf, 1.5)):
        with pytest.raises(ValueError, match="init_noise_level must be in"):
            objective.check_init_noise_level(level, 0.03, 500.0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_starts_from_noise_in_its_own_scaling(name: str) -> None:
    spec = get_sampler(name)
    objective = next(o for o in OBJECTIVES.values() if spec.kind in o.sampler_kinds)
    noise = _randn(2, 3, 5, seed=0)
    start = objective.start(spec, noise, 6, sigma_min=0.1, sigma_max=80.0)
    assert start.init_noise_level is None
    if spec.kind == "ve":
        assert start.grid.shape == (7,) and start.grid[0] == pytest.approx(80.0)
        torch.testing.assert_close(start.x, noise * start.grid[0])
    else:
        assert start.grid[0] == 1 and start.grid.shape == (7 if spec.kind == "rf" else 6,)
        torch.testing.assert_close(start.x, noise)


@pytest.mark.parametrize("name", ["dpmpp-2m", "rf-euler"])
def test_a_run_from_known_latents_starts_at_the_init_level(name: str) -> None:
    spec = get_sampler(name)
    objective = next(o for o in OBJECTIVES.values() if spec.kind in o.sampler_kinds)
    noise, init = _randn(1, 3, 5, seed=1), _randn(1, 3, 5, seed=2)
    default = objective.start(spec, noise, 4, sigma_min=0.1, sigma_max=80.0, init_latents=init)
    assert default.init_noise_level == objective.default_init_noise_level
    start = objective.start(spec, noise, 4, sigma_min=0.1, sigma_max=80.0, init_latents=init,
                            init_noise_level=0.4)
    assert start.grid[0] == pytest.approx(0.4) and start.init_noise_level == 0.4
    expected = init + 0.4 * noise if spec.kind == "ve" else 0.6 * init + 0.4 * noise
    torch.testing.assert_close(start.x, expected.to(start.x.dtype))


def test_v_ddim_cannot_start_part_way() -> None:
    spec, v = get_sampler("v-ddim"), get_objective("v")
    assert not spec.supports_init
    with pytest.raises(ValueError, match="not available with the 'v-ddim' sampler"):
        v.start(spec, _randn(1, 2, 3, seed=0), 4, sigma_min=0.1, sigma_max=80.0,
                init_latents=_randn(1, 2, 3, seed=1))
    with pytest.raises(ValueError, match="always starts from pure noise"):
        spec.grid(4, top=0.5)


@pytest.mark.parametrize("name", ["rf-euler", "v-ddim", "dpmpp-2m"])
def test_noised_states_are_the_objectives_corruption(name: str) -> None:
    """A sampler's state at a level is the training corruption of its objective at the
    matching time (VE: x_t / alpha at sigma = tan(pi t / 2))."""
    spec = get_sampler(name)
    x0, eps = _randn(2, 3, 5, seed=3), _randn(2, 3, 5, seed=4)
    t = torch.tensor([0.3, 0.7], dtype=F64)
    if spec.kind == "rf":
        torch.testing.assert_close(spec.noised(x0, eps, t), rf_objective_sample(x0, t, eps).x_t)
    elif spec.kind == "v-ddim":
        torch.testing.assert_close(spec.noised(x0, eps, t), v_objective_sample(x0, t, eps).x_t)
    else:
        alpha = torch.cos(t * torch.pi / 2).view(-1, 1, 1)
        sigma = torch.tan(t * torch.pi / 2)
        torch.testing.assert_close(spec.noised(x0, eps, sigma),
                                   v_objective_sample(x0, t, eps).x_t / alpha)


def test_training_samples_come_from_the_record() -> None:
    x0, eps, t = _randn(2, 3, 4, seed=5), _randn(2, 3, 4, seed=6), torch.rand(2, dtype=F64)
    for name, reference in (("v", v_objective_sample), ("rf_denoiser", rf_objective_sample)):
        got, expected = get_objective(name).training_sample(x0, t, eps), reference(x0, t, eps)
        torch.testing.assert_close(got.x_t, expected.x_t)
        torch.testing.assert_close(got.target, expected.target)

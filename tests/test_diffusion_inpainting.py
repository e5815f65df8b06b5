"""Training-free inpainting (longplay.diffusion.inpainting): soft masks, the replacement
method through the x0 estimate for every sampler, and RePaint's resampling."""

from __future__ import annotations

import pytest
import torch

from longplay.diffusion import (
    OBJECTIVES,
    SAMPLERS,
    InpaintingModel,
    get_sampler,
    inpainting_start,
    sample_with_resampling,
    soft_keep_mask,
)

F64 = torch.float64
B, D, T = 2, 3, 12


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _objective(name: str):
    spec = get_sampler(name)
    return spec, next(o for o in OBJECTIVES.values() if spec.kind in o.sampler_kinds)


def network(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Any smooth function of the state and time: a stand-in for a trained network."""
    mixed = x.roll(1, dims=-1) * 0.3 + x * 0.5
    return torch.tanh(mixed) * (1 + t.view(-1, 1, 1))


def noise_source(seed: int):
    generator = torch.Generator().manual_seed(seed)

    def draw(i: int, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype)

    return draw


def test_soft_mask_ramps_inside_the_kept_region() -> None:
    keep = torch.tensor([1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1], dtype=torch.bool)
    hard = soft_keep_mask(keep, 0)
    assert torch.equal(hard, keep.float())
    soft = soft_keep_mask(keep, 2)
    expected = torch.tensor([1, 1, 1, 2 / 3, 1 / 3, 0, 0, 0, 1 / 3, 2 / 3, 1, 1])
    torch.testing.assert_close(soft, expected)
    # Circular: the generated frame at the end reaches the start across the seam.
    seam = torch.tensor([1, 1, 1, 1, 1, 0], dtype=torch.bool)
    assert soft_keep_mask(seam, 1, circular=True)[0] == 0.5 and soft_keep_mask(seam, 1)[0] == 1
    assert torch.equal(soft_keep_mask(torch.ones(2, 5, dtype=torch.bool), 3), torch.ones(2, 5))
    assert torch.equal(soft_keep_mask(torch.zeros(5, dtype=torch.bool), 3), torch.zeros(5))
    with pytest.raises(ValueError, match="edge_frames"):
        soft_keep_mask(keep, -1)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_the_kept_region_follows_the_noised_known_latents(name: str) -> None:
    """At every step the state's kept region is the known latents at the current level
    (for the deterministic samplers with the starting noise), and the run ends on them."""
    spec, objective = _objective(name)
    known, noise = _randn(B, D, T, seed=1), _randn(B, D, T, seed=2)
    keep = torch.zeros(B, 1, T, dtype=F64)
    keep[..., :5] = 1  # keep the first five frames, generate the rest
    model = InpaintingModel(network, known, keep, objective.from_denoised)
    grid = objective.start(spec, noise, 6, sigma_min=0.05, sigma_max=20.0).grid.to(F64)
    x = inpainting_start(spec, noise, grid, known, keep)
    states = []
    out = spec.fn(objective.denoiser(model), x, grid,
                  noise_fn=noise_source(3), callback=lambda step: states.append(step))
    for step in states:
        if spec.kind == "v-ddim":
            continue  # the callback's x is the cosine state; checked through denoised below
        expected = spec.noised(known, noise, step.sigma)[..., :5]
        if not spec.stochastic or step.i == 0:
            torch.testing.assert_close(step.x[..., :5], expected, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(step.denoised[..., :5], known[..., :5], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out[..., :5], known[..., :5], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(out[..., 5:], known[..., 5:], atol=1e-2)


@pytest.mark.parametrize("name", ["dpmpp-3m-sde", "pingpong", "v-ddim"])
def test_an_empty_mask_changes_nothing_and_a_full_one_returns_the_known(name: str) -> None:
    spec, objective = _objective(name)
    known, noise = _randn(B, D, T, seed=4), _randn(B, D, T, seed=5)
    start = objective.start(spec, noise, 5, sigma_min=0.05, sigma_max=20.0)

    def run(model):
        return spec.fn(objective.denoiser(model), start.x, start.grid.to(F64),
                       noise_fn=noise_source(6))

    plain = run(network)
    nothing = run(InpaintingModel(network, known, torch.zeros(B, 1, T, dtype=F64),
                                  objective.from_denoised))
    assert torch.equal(nothing, plain)
    everything = run(InpaintingModel(network, known, torch.ones(B, 1, T, dtype=F64),
                                     objective.from_denoised))
    torch.testing.assert_close(everything, known, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["euler", "dpmpp-2m-sde", "rf-euler", "pingpong"])
def test_resampling_once_is_the_plain_run_and_more_evaluates_more(name: str) -> None:
    spec, objective = _objective(name)
    known, noise = _randn(B, D, T, seed=7), _randn(B, D, T, seed=8)
    keep = torch.zeros(B, 1, T, dtype=F64)
    keep[..., :4] = 1
    denoiser = objective.denoiser(InpaintingModel(network, known, keep,
                                                  objective.from_denoised))
    start = objective.start(spec, noise, 6, sigma_min=0.05, sigma_max=20.0)
    grid = start.grid.to(F64)
    plain = spec.fn(denoiser, start.x, grid, noise_fn=noise_source(9))
    once = sample_with_resampling(spec, denoiser, start.x, grid, jump_length=2,
                                  resample_steps=1, noise_fn=noise_source(9))
    assert torch.equal(once, plain)
    steps: list[int] = []
    resampled = sample_with_resampling(spec, denoiser, start.x, grid, jump_length=2,
                                       resample_steps=3, noise_fn=noise_source(9),
                                       callback=lambda step: steps.append(step.i))
    assert steps == list(range(18))  # 6 steps, each segment of 2 sampled 3 times
    assert torch.isfinite(resampled).all() and not torch.allclose(resampled, plain)
    torch.testing.assert_close(resampled[..., :4], known[..., :4], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["euler", "rf-euler"])
def test_jumping_back_is_the_forward_process(name: str) -> None:
    """Known latents noised to b, then jumped back to a, have the noise of level a."""
    spec = get_sampler(name)
    x0 = torch.full((20000,), 0.7, dtype=F64)
    low, high = (0.5, 3.0) if spec.kind == "ve" else (0.2, 0.6)
    x_low = spec.noised(x0, _randn(20000, seed=10), low)
    x_high = spec.renoise(x_low, low, high, _randn(20000, seed=11))
    reference = spec.noised(x0, _randn(20000, seed=12), high)
    assert float(x_high.mean()) == pytest.approx(float(reference.mean()), abs=0.05)
    assert float(x_high.std()) == pytest.approx(float(reference.std()), rel=0.03)
    with pytest.raises(ValueError, match="cannot run part of the way"):
        get_sampler("v-ddim").renoise(x_low, 0.2, 0.6, x_low)

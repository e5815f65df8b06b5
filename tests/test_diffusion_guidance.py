"""Tests of longplay.diffusion.guidance (classifier-free guidance wrapper)."""

from __future__ import annotations

import pytest
import torch

from longplay.diffusion import GuidanceInterval, cfg_model, guided


class ToyBatched:
    """A [cond; uncond] batched 'network': cond items give x * t, uncond items give -x."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append((x, t))
        half = x.shape[0] // 2
        tb = t.view(-1, 1, 1)
        return torch.cat([x[:half] * tb[:half], -x[half:]])


def test_guidance_combines_one_batched_call() -> None:
    batched = ToyBatched()
    x = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.2, 0.5, 0.9])
    out = guided(lambda x, t: x, batched, 7.0)(x, t)
    cond, uncond = x * t.view(-1, 1, 1), -x
    torch.testing.assert_close(out, uncond + 7.0 * (cond - uncond))
    assert len(batched.calls) == 1
    seen_x, seen_t = batched.calls[0]
    assert torch.equal(seen_x, torch.cat([x, x])) and torch.equal(seen_t, torch.cat([t, t]))


def test_scale_one_is_the_conditional_model_without_an_extra_pass() -> None:
    batched = ToyBatched()

    def model_cond(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x + 1

    assert guided(model_cond, batched, 1.0) is model_cond
    with pytest.raises(ValueError, match="scale 1"):
        cfg_model(batched, 1.0)
    assert batched.calls == []


def test_scale_zero_is_unconditional_and_scalar_t_is_broadcast() -> None:
    batched = ToyBatched()
    x = torch.randn(2, 1, 3, generator=torch.Generator().manual_seed(2))
    out = cfg_model(batched, 0.0)(x, torch.tensor(0.5))
    assert torch.equal(out, -x)
    assert batched.calls[0][1].shape == (4,)


def test_a_batched_model_that_drops_the_doubling_is_rejected() -> None:
    model = cfg_model(lambda x, t: x[: x.shape[0] // 2], 3.0)
    with pytest.raises(ValueError, match="doubled batch"):
        model(torch.zeros(2, 1, 3), torch.zeros(2))


def test_guidance_interval_guides_only_inside_and_costs_one_pass_outside() -> None:
    """Kynkäänniemi et al. 2024: guided for t in (t_lo, t_hi], the conditional model
    (one pass, no unconditional branch) elsewhere; the bounds are exclusive below."""
    batched = ToyBatched()
    cond_calls: list[float] = []

    def model_cond(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond_calls.append(float(t[0]))
        return x * t.view(-1, 1, 1)

    fn = guided(model_cond, batched, 5.0, interval=(0.25, 0.5))
    assert isinstance(fn, GuidanceInterval)
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(2))
    for level in (0.75, 0.5, 0.375, 0.25, 0.125):  # exact in float32
        t = torch.full((2,), level)
        out = fn(x, t)
        if 0.25 < level <= 0.5:
            torch.testing.assert_close(out, -x + 5.0 * (x * level + x))
        else:
            torch.testing.assert_close(out, x * level)
    assert cond_calls == [0.75, 0.25, 0.125] and len(batched.calls) == 2
    assert guided(model_cond, batched, 1.0, interval=(0.25, 0.5)) is model_cond
    with pytest.raises(ValueError, match="t_lo < t_hi"):
        GuidanceInterval(model_cond, model_cond, 0.5, 0.5)

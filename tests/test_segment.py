"""Tests of longplay.audio.segment."""

from __future__ import annotations

import pytest
import torch

from longplay.audio import Segment, crop, pad_or_trim, random_crop


def _ramp(channels: int, num_samples: int) -> torch.Tensor:
    """[C, S] with distinct values so that offsets can be read back from the samples."""
    base = torch.arange(1, num_samples + 1, dtype=torch.float32)
    return torch.stack([base * (c + 1) for c in range(channels)])


def test_timing_conditioning_values() -> None:
    sr = 44100
    audio = torch.zeros(1, round(61.2 * sr))  # 61.2 s mono, ~10 MB
    seg = crop(audio, 1024, sr, offset_samples=round(3.7 * sr))
    assert seg.offset_s == pytest.approx(3.7)
    assert seg.seconds_start == 3
    assert seg.seconds_total == 62
    assert seg.total_samples == 2_698_920


def test_crop_timing_from_real_audio() -> None:
    sr = 100  # small rate keeps the tensors tiny while exercising the same arithmetic
    audio = _ramp(2, 6120)  # 61.2 s
    seg = crop(audio, 50, sr, offset_samples=370)  # 3.7 s
    assert seg.offset_s == pytest.approx(3.7)
    assert (seg.seconds_start, seg.seconds_total) == (3, 62)
    assert torch.equal(seg.audio, audio[:, 370:420])
    assert seg.num_valid_samples == 50 and seg.total_samples == 6120
    assert seg.padding_mask.all()


def test_seconds_boundaries_are_exact() -> None:
    sr = 44100
    exact = Segment(torch.zeros(1, 4), 3 * sr, 4, sr, 60 * sr)
    assert (exact.seconds_start, exact.seconds_total) == (3, 60)
    just_before = Segment(torch.zeros(1, 4), 3 * sr - 1, 4, sr, 60 * sr + 1)
    assert (just_before.seconds_start, just_before.seconds_total) == (2, 61)


def test_crop_pads_past_end_with_zeros() -> None:
    audio = _ramp(2, 100)
    seg = crop(audio, 30, 10, offset_samples=80)
    assert seg.audio.shape == (2, 30)
    assert seg.num_valid_samples == 20
    assert torch.equal(seg.audio[:, :20], audio[:, 80:])
    assert torch.count_nonzero(seg.audio[:, 20:]) == 0
    assert seg.padding_mask.tolist() == [True] * 20 + [False] * 10


def test_crop_returns_copy() -> None:
    audio = _ramp(1, 20)
    seg = crop(audio, 5, 10, offset_samples=2)
    seg.audio.zero_()
    assert audio[0, 2] == 3.0


@pytest.mark.parametrize(
    ("num_samples", "offset", "match"),
    [(0, 0, "num_samples"), (10, -1, "offset_samples"), (10, 100, "offset_samples")],
)
def test_crop_validation(num_samples: int, offset: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        crop(torch.zeros(1, 100), num_samples, 10, offset_samples=offset)


def test_crop_empty_audio_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        crop(torch.zeros(2, 0), 10, 10)
    with pytest.raises(ValueError, match="empty"):
        random_crop(torch.zeros(2, 0), 10, 10)


def test_random_crop_reproducible_and_varied() -> None:
    audio = _ramp(2, 1000)
    first = random_crop(audio, 100, 10, generator=torch.Generator().manual_seed(123))
    again = random_crop(audio, 100, 10, generator=torch.Generator().manual_seed(123))
    assert first.offset_samples == again.offset_samples
    assert torch.equal(first.audio, again.audio)
    offsets = {
        random_crop(audio, 100, 10, generator=torch.Generator().manual_seed(seed)).offset_samples
        for seed in range(20)
    }
    assert len(offsets) > 1
    assert all(0 <= o <= 900 for o in offsets)
    # content matches the reported offset
    assert torch.equal(first.audio, audio[:, first.offset_samples : first.offset_samples + 100])
    assert first.num_valid_samples == 100


def test_random_crop_covers_last_offset() -> None:
    audio = _ramp(1, 12)
    gen = torch.Generator().manual_seed(0)
    offsets = {random_crop(audio, 10, 10, generator=gen).offset_samples for _ in range(200)}
    assert offsets == {0, 1, 2}


def test_random_crop_short_audio_is_padded() -> None:
    audio = _ramp(2, 30)
    seg = random_crop(audio, 100, 10, generator=torch.Generator().manual_seed(5))
    assert seg.offset_samples == 0
    assert seg.num_valid_samples == 30
    assert seg.audio.shape == (2, 100)
    assert torch.equal(seg.audio[:, :30], audio)
    assert torch.count_nonzero(seg.audio[:, 30:]) == 0
    assert (seg.seconds_start, seg.seconds_total) == (0, 3)


def test_pad_or_trim() -> None:
    audio = torch.ones(2, 3, 10)
    assert pad_or_trim(audio, 10) is audio
    trimmed = pad_or_trim(audio, 4)
    assert trimmed.shape == (2, 3, 4)
    padded = pad_or_trim(audio, 15)
    assert padded.shape == (2, 3, 15)
    assert torch.equal(padded[..., :10], audio)
    assert torch.count_nonzero(padded[..., 10:]) == 0
    with pytest.raises(ValueError, match="non-negative"):
        pad_or_trim(audio, -1)

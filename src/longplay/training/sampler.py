"""A data order that is a pure function of (seed, position), so that a resumed run sees
exactly the examples an uninterrupted one would have seen.

Global sample position p (counted over all ranks) belongs to epoch p // N; within an
epoch the order is a seeded permutation. Rank r of W takes, at each step, the
positions ``step * B * W + r * B + j`` for j < B, where B is the per-rank batch size
times the gradient-accumulation factor.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset


class PositionedDataset(Dataset):
    """Wraps a dataset with ``example(index, position)``: item k of this dataset is the
    example at global position k, so crops and prompts depend on the position too."""

    def __init__(self, dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self._epoch_cache: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:  # positions are unbounded; samplers index by position
        return len(self.dataset)

    def index_of(self, position: int) -> int:
        n = len(self.dataset)
        epoch = position // n
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch_cache = (epoch, torch.randperm(n, generator=generator))
        return int(self._epoch_cache[1][position % n])

    def __getitem__(self, position: int):
        return self.dataset.example(self.index_of(position), position)


class PositionSampler:
    """Yields global positions for one rank from ``start_step`` on, forever."""

    def __init__(self, batch_size: int, rank: int = 0, world_size: int = 1,
                 start_step: int = 0) -> None:
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            base = (step * self.world_size + self.rank) * self.batch_size
            yield from range(base, base + self.batch_size)
            step += 1

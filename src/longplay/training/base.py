"""What the three trainers share: the exactly resumable data order, typed batches,
AdamW with the inverse-LR schedule, EMA of ``net``, and the run's metadata in every
checkpoint."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from longplay.config import OptimizerConfig, dataclass_to_dict
from longplay.training.ema import make_ema, update_ema
from longplay.training.sampler import PositionedDataset, PositionSampler
from longplay.training.schedules import inverse_lr_factor


@dataclass(frozen=True)
class PositionedBatch:
    """A collated batch and the global data positions of its items (they seed the step's
    randomness, so that a resumed run repeats an uninterrupted one exactly)."""

    positions: torch.Tensor  # [B] int64
    batch: object


class PositionedCollate:
    def __init__(self, collate) -> None:
        self.collate = collate

    def __call__(self, items: list) -> PositionedBatch:
        positions, examples = zip(*items, strict=True)
        return PositionedBatch(torch.tensor(positions), self.collate(list(examples)))


class _WithPosition(PositionedDataset):
    def __getitem__(self, position: int):
        return position, super().__getitem__(position)


def adamw_inverse_lr(params, o: OptimizerConfig):
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: inverse_lr_factor(step, o.inv_gamma, o.power, o.warmup))
    return optimizer, schedule


class TrainingModule(L.LightningModule):
    """Base of the stage modules: subclasses set ``self.net`` (the trained weights) before
    calling ``init_ema`` and implement ``training_step``."""

    stage = "base"

    def __init__(self, config, dataset, collate) -> None:
        super().__init__()
        self.config = config
        self.dataset = dataset
        self.collate = collate
        self.ema: nn.Module | None = None

    def configure_model(self) -> None:
        """Under ``--strategy fsdp`` (Lightning's ModelParallelStrategy with a data-parallel
        device mesh): shard the trained modules and their average with FSDP2's
        ``fully_shard``, each unit that runs a forward pass of its own (``shard_units``).
        Nothing happens under the other strategies."""
        mesh = getattr(self, "_device_mesh", None)
        if mesh is None or getattr(self, "_sharded", False):
            return
        from torch.distributed.fsdp import fully_shard

        # The feed-forward returns a view, which FSDP2 warns about in case the caller adds
        # to it in place; the blocks add out of place.
        warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view")
        for tree in (self.net, self.ema):
            if tree is None:
                continue
            for unit in self.shard_units(tree):
                fully_shard(unit, mesh=mesh["data_parallel"])
        self._sharded = True

    def shard_units(self, tree: nn.Module) -> list[nn.Module]:
        """The modules of ``tree`` (``net`` or ``ema``) that FSDP shards, innermost first:
        by default each child module (its whole forward gathers its weights at once)."""
        return list(tree.children())

    def init_ema(self) -> None:
        self.ema = make_ema(self.net) if self.config.ema.enabled else None

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        accumulate = self.config.trainer.accumulate_grad_batches
        micro_batches = trainer.global_step * accumulate * self.batches_per_step
        sampler = PositionSampler(self.config.trainer.batch_size, trainer.global_rank,
                                  trainer.world_size, start_step=micro_batches)
        return DataLoader(_WithPosition(self.dataset, self.config.trainer.seed),
                          batch_size=self.config.trainer.batch_size, sampler=sampler,
                          collate_fn=PositionedCollate(self.collate),
                          num_workers=self.config.data.num_workers)

    batches_per_step = 1
    """Batches consumed per counted optimiser step (the VAE's alternating G/D uses 1)."""

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        """Batches are typed (frozen dataclasses); steps move what they use."""
        return batch

    def step_generator(self, positions: torch.Tensor, salt: int = 0) -> torch.Generator:
        """The step's random source, a function of the seed and the batch's positions."""
        seed = self.config.trainer.seed * 1_000_003 + int(positions[0]) * 7919 + 17 + salt
        return torch.Generator().manual_seed(seed)

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer, schedule = adamw_inverse_lr(params, self.config.optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def checkpoint_metadata(self) -> dict:
        return {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["longplay"] = {"stage": self.stage, "config": dataclass_to_dict(self.config),
                                  **self.checkpoint_metadata()}

    def update_average(self, decay: float) -> None:
        """ema <- decay * ema + (1 - decay) * net (the EMA callback's step)."""
        update_ema(self.ema, self.net, decay)

    def averaged(self) -> nn.Module:
        """The weights to export: the EMA when enabled, else the trained ones."""
        return self.ema if self.ema is not None else self.net

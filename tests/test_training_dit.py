"""DiT training on the debug preset: the loss falls, a resumed run equals an uninterrupted
one, and the exported model folder generates through the CLI."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from conftest import SAO1_TINY
from longplay.cli.main import main
from longplay.config import (
    DataConfig,
    DiTTrainConfig,
    EMAConfig,
    OptimizerConfig,
    TrainerConfig,
    load_config_file,
)
from longplay.training import runner

TEXT_ENCODER = SAO1_TINY / "text_encoder"


@dataclass(frozen=True)
class Example:
    latents: torch.Tensor
    seconds_start: float
    seconds_total: float
    prompt: str


@dataclass(frozen=True)
class Batch:
    latents: torch.Tensor
    seconds_start: torch.Tensor
    seconds_total: torch.Tensor
    prompts: list[str]


class ToyLatents:
    """Four fixed 'songs' of latents with captions: enough to overfit."""

    def __len__(self) -> int:
        return 4

    def example(self, index: int, position: int) -> Example:
        g = torch.Generator().manual_seed(index)
        base = torch.randn(8, 1, generator=g) * torch.linspace(-1, 1, 32)  # [8, 32]
        return Example(base, float(index), 30.0, f"song number {index}")


def collate(items: list[Example]) -> Batch:
    return Batch(torch.stack([i.latents for i in items]),
                 torch.tensor([i.seconds_start for i in items]),
                 torch.tensor([i.seconds_total for i in items]), [i.prompt for i in items])


@pytest.fixture(autouse=True)
def toy_data(monkeypatch) -> None:
    monkeypatch.setattr(runner, "build_dataset", lambda config, model_config: (ToyLatents(),
                                                                               collate))


def config(steps: int, accumulate: int = 1) -> DiTTrainConfig:
    return DiTTrainConfig(
        preset="debug", text_encoder_path=str(TEXT_ENCODER),
        optimizer=OptimizerConfig(lr=2e-3, inv_gamma=1e4, warmup=0.0),
        ema=EMAConfig(max_decay=0.99),
        data=DataConfig(kind="latents", path="unused"),
        trainer=TrainerConfig(max_steps=steps, batch_size=4, checkpoint_every_n_steps=3,
                              log_every_n_steps=1, accumulate_grad_batches=accumulate))


def losses(run_dir: Path) -> list[float]:
    rows = []
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        rows += [float(r["train/loss"]) for r in csv.DictReader(path.open()) if r["train/loss"]]
    return rows


def test_loss_is_finite_and_falls(tmp_path: Path) -> None:
    runner.train_dit(config(40), tmp_path / "run", enable_progress_bar=False)
    values = losses(tmp_path / "run")
    assert len(values) == 40 and all(torch.isfinite(torch.tensor(values)))
    assert sum(values[-10:]) / 10 < 0.8 * sum(values[:10]) / 10
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["longplay"]["config"]["trainer"]["max_steps"] == 40  # config in every ckpt
    assert json.loads((tmp_path / "run" / "config.json").read_text())["preset"] == "debug"


def test_bf16_mixed_precision_trains_on_cpu_with_fp32_weights(tmp_path: Path) -> None:
    """The demo DiT configs train in bf16 autocast (about 1.6x faster steps on CPUs with
    AVX512-BF16): the loss falls and the weights and their average stay float32."""
    base = config(40)
    bf16 = replace(base, trainer=replace(base.trainer, precision="bf16-mixed"))
    runner.train_dit(bf16, tmp_path / "run", enable_progress_bar=False)
    values = losses(tmp_path / "run")
    assert len(values) == 40 and all(torch.isfinite(torch.tensor(values)))
    assert sum(values[-10:]) / 10 < 0.8 * sum(values[:10]) / 10
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert {v.dtype for v in saved["state_dict"].values() if v.is_floating_point()} == {
        torch.float32}


@pytest.mark.parametrize("accumulate", [1, 2])
def test_resumed_run_equals_uninterrupted_run(tmp_path: Path, accumulate: int) -> None:
    runner.train_dit(config(6, accumulate), tmp_path / "a", enable_progress_bar=False)
    runner.train_dit(config(3, accumulate), tmp_path / "b", enable_progress_bar=False)
    runner.train_dit(config(6, accumulate), tmp_path / "b", resume=True,
                     enable_progress_bar=False)
    a = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:  # model, EMA and frozen parts alike
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert losses(tmp_path / "a")[3:] == losses(tmp_path / "b")[3:]


def test_a_run_is_not_overwritten_and_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no checkpoints/last\.ckpt"):
        runner.train_dit(config(1), tmp_path / "new", resume=True, enable_progress_bar=False)
    runner.train_dit(config(1), tmp_path / "run", enable_progress_bar=False)
    with pytest.raises(FileExistsError, match="--resume"):
        runner.train_dit(config(2), tmp_path / "run", enable_progress_bar=False)


def test_train_export_generate_through_the_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "dit.yaml"
    cfg.write_text(f"""
preset: debug
text_encoder_path: {TEXT_ENCODER}
optimizer: {{lr: 0.002, inv_gamma: 10000.0, warmup: 0.0}}
data: {{kind: latents, path: unused}}
trainer: {{max_steps: 4, batch_size: 2, checkpoint_every_n_steps: 2, log_every_n_steps: 1}}
""")
    run = tmp_path / "run"
    assert main(["train", "dit", str(cfg), "-o", str(run), "--no-progress"]) == 0
    model = tmp_path / "model"
    assert main(["export", str(run), "-o", str(model)]) == 0
    sat_config = json.loads((model / "model_config.json").read_text())
    assert sat_config["model"]["conditioning"]["configs"][0]["config"]["model_path"] == str(
        TEXT_ENCODER.resolve())
    out = tmp_path / "song.wav"
    assert main(["generate", "song number 1", "--model", str(model), "--duration", "1",
                 "--steps", "3", "--seed", "0", "-o", str(out), "--no-progress"]) == 0
    assert out.is_file()


def test_strict_config_files(tmp_path: Path) -> None:
    from longplay.config import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text("preset: debug\ntrainer: {max_step: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) in .*trainer: max_step"):
        load_config_file(path, DiTTrainConfig)
    path.write_text("preset: debug\ntrainer: {max_steps: three}\n")
    with pytest.raises(ConfigError, match=r"trainer\.max_steps must be a positive integer"):
        load_config_file(path, DiTTrainConfig)
    path.write_text("preset: debug\ninit_from: somewhere\n")
    with pytest.raises(ConfigError, match="exactly one of preset"):
        load_config_file(path, DiTTrainConfig)
    assert replace(config(1)).trainer.max_steps == 1


def test_training_step_after_inference_at_the_same_length() -> None:
    """Demos run under inference_mode between training steps; the rotary tables they
    cache must not reach the next backward pass (inference tensors can't be saved)."""
    from longplay.conditioning import Conditioning
    from longplay.transformer import DiffusionTransformer

    dit = DiffusionTransformer(io_channels=8, width=64, depth=2, num_heads=2, cond_token_dim=32,
                               global_cond_dim=8)
    cond = Conditioning(torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.bool),
                        torch.randn(2, 8))
    x, t = torch.randn(2, 8, 12), torch.rand(2)
    with torch.inference_mode():
        dit(x, t, cond)
    dit(x, t, cond).square().mean().backward()
    assert dit.project_in.weight.grad is not None


@dataclass(frozen=True)
class PaddedBatch(Batch):
    num_valid_frames: torch.Tensor


def test_padding_loss_share_weighs_each_windows_piece_and_padding(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """padding_loss_share trains on windows whose batches say where their piece ends
    (the loss falls), and is refused by name on a dataset that does not say."""
    shared = replace(config(20), padding_loss_share=0.5)
    with pytest.raises(ValueError, match="padding_loss_share needs to know where"):
        runner.train_dit(shared, tmp_path / "plain", enable_progress_bar=False)

    def padded(items: list[Example]) -> PaddedBatch:
        plain = collate(items)
        return PaddedBatch(plain.latents, plain.seconds_start, plain.seconds_total,
                           plain.prompts, torch.tensor([8, 32, 20, 4][:len(items)]))

    monkeypatch.setattr(runner, "build_dataset",
                        lambda config, model_config: (ToyLatents(), padded))
    runner.train_dit(shared, tmp_path / "run", enable_progress_bar=False)
    values = losses(tmp_path / "run")
    assert len(values) == 20 and all(torch.isfinite(torch.tensor(values)))
    assert sum(values[-5:]) / 5 < sum(values[:5]) / 5

"""Training a LoRA or DoRA adapter of a model's diffusion transformer
(``longplay train lora CONFIG --model BASE``).

The base model (DiT, conditioner, VAE, text encoder) is loaded from its folder and stays
frozen: peft's layers wrap the targeted linear layers of the DiT, and only their
low-rank weights require gradients, so they are all the optimiser sees. The checkpoint
holds the adapter's weights (and their average, when EMA is on) and the base's identity,
never the base: a resumed run reloads the base from its folder and refuses one whose
weights changed. The step is the DiT trainer's (:mod:`longplay.training.dit`).

``longplay export RUN -o FOLDER`` writes the adapter in peft's format
(:mod:`longplay.adapters`); ``--merge-lora`` writes the base with the adapter merged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from longplay.adapters import (
    BaseIdentity,
    LoRAAdapter,
    base_identity,
    is_adapter_key,
    lora_config,
    merge_adapters,
    resolve_targets,
    save_adapter,
)
from longplay.adapters.lora import PEFT_PREFIX, peft_config_dict
from longplay.builders import DiffusionModel, seeded
from longplay.checkpoints import save_model_folder
from longplay.config import ConfigError, LoRATrainConfig, dataclass_to_dict
from longplay.errors import AdapterError, CheckpointError
from longplay.training.dit import DiTTrainingModule
from longplay.training.runner import build_dataset, fit, load_model_to_train, prepare_run

logger = logging.getLogger(__name__)

ADAPTER_NAME = "default"
"""The name of the trained adapter inside the DiT (peft's default)."""


def adapter_peft_config(config: LoRATrainConfig, base_name: str | None = None):
    """peft's ``LoraConfig`` of the run."""
    try:
        return lora_config(rank=config.rank, alpha=config.alpha, dropout=config.dropout,
                           targets=config.targets, dora=config.dora, base_name=base_name)
    except AdapterError as err:
        raise ConfigError(str(err)) from None


def load_base(config: LoRATrainConfig) -> DiffusionModel:
    """The base model folder of ``config`` (``--model``), with its text encoder."""
    if config.base is None:
        raise ConfigError("no base model: set base in the config or pass --model MODEL (a "
                          "model folder, or 'demo' for the bundled one)")
    return load_model_to_train(config.base, config.text_encoder_path)


class AdapterAverage(nn.Module):
    """The EMA of the adapter's weights only (the frozen base needs no average)."""

    def __init__(self, named: dict[str, nn.Parameter]) -> None:
        super().__init__()
        self.weights = nn.ParameterDict({
            _slot(name): nn.Parameter(p.detach().clone(), requires_grad=False)
            for name, p in named.items()})


def _slot(name: str) -> str:
    return name.replace(".", "-")  # ParameterDict keys hold no dots


def _unslot(slot: str) -> str:
    return slot.replace("-", ".")


class LoRATrainingModule(DiTTrainingModule):
    """The base DiT with the adapter injected (``net``: DiT and conditioner, frozen but
    for the adapter), the adapter's EMA, and the frozen VAE and text encoder."""

    stage = "lora"

    def __init__(self, config: LoRATrainConfig, model: DiffusionModel, dataset,
                 collate) -> None:
        from peft import inject_adapter_in_model

        base = base_identity(model.dit, dataclass_to_dict(model.config.dit),
                             Path(str(config.base)).name)
        peft_config = adapter_peft_config(config, str(config.base))
        model.dit.requires_grad_(False)
        model.conditioner.requires_grad_(False)
        with seeded(config.trainer.seed):  # A's random start, the same on every run
            inject_adapter_in_model(peft_config, model.dit, adapter_name=ADAPTER_NAME)
        super().__init__(config, model, dataset, collate)
        self.base = base
        self.peft_config = peft_config
        # Only the adapter is in the checkpoint: loading it leaves the rest as loaded.
        self.strict_loading = False
        trainable = [n for n, p in self.net.named_parameters() if p.requires_grad]
        if not trainable or not all(is_adapter_key(n) for n in trainable):
            raise AdapterError(f"the adapter's target modules matched nothing trainable in "
                               f"this DiT ({config.targets!r})")

    def adapter_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.net.named_parameters() if is_adapter_key(n)}

    def init_ema(self) -> None:
        self.ema = (AdapterAverage(self.adapter_parameters()) if self.config.ema.enabled
                    else None)

    def update_average(self, decay: float) -> None:
        for name, p in self.adapter_parameters().items():
            value = p.detach()
            if hasattr(value, "full_tensor"):  # sharded by FSDP; the average is whole
                value = value.full_tensor()
            self.ema.weights[_slot(name)].detach().lerp_(value, 1.0 - decay)

    def shard_units(self, tree: nn.Module) -> list[nn.Module]:
        """The DiT's units (the adapter inside them); the adapter's average stays whole."""
        return [] if isinstance(tree, AdapterAverage) else super().shard_units(tree)

    def averaged_adapter(self, use_ema: bool = True) -> dict:
        """The adapter's weights (under ``net``'s names): the average or the raw ones."""
        if use_ema and self.ema is not None:
            return {_unslot(k): v.detach() for k, v in self.ema.weights.items()}
        return {n: p.detach() for n, p in self.adapter_parameters().items()}

    def checkpoint_metadata(self) -> dict:
        config = peft_config_dict(self.peft_config)
        return {"model_config": dataclass_to_dict(self.model_config),
                "base": str(self.config.base), "base_identity": self.base.metadata(),
                "peft_config": config}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                    if is_adapter_key(k) or k.startswith("ema.")}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = BaseIdentity.from_metadata(checkpoint.get("longplay", {}).get(
            "base_identity", {}))
        if saved is None:
            raise CheckpointError("this checkpoint is not from a `longplay train lora` run")
        if saved.dit_sha256 != self.base.dit_sha256:
            raise CheckpointError(
                f"the base model {self.config.base} is not the one this run started from "
                f"(its DiT's weights changed: sha256 {self.base.dit_sha256[:12]}, was "
                f"{saved.dit_sha256[:12]}); resume with the original base")
        if "state_dict" not in checkpoint:
            return  # FSDP: the strategy loads the weights into the sharded model itself
        expected = {f"net.{n}" for n in self.adapter_parameters()}
        missing = expected - set(checkpoint["state_dict"])
        if missing:
            raise CheckpointError(f"the checkpoint lacks adapter weights ({sorted(missing)[0]}"
                                  "): it was written with another rank or other targets")


def train_lora(config: LoRATrainConfig, run_dir: str | Path, *, resume: bool = False,
               enable_progress_bar: bool = True, extra_callbacks: list | None = None) -> Path:
    """Train (or resume training) an adapter of ``config.base`` in ``run_dir``; returns the
    last checkpoint. Export it with ``longplay export RUN -o ADAPTER_DIR``."""
    try:
        resolve_targets(config.targets)  # before anything loads
    except AdapterError as err:
        raise ConfigError(f"targets: {err}") from None
    model = load_base(config)
    run_dir, ckpt = prepare_run(config, run_dir, resume)
    dataset, collate = build_dataset(config, model.config)
    module = LoRATrainingModule(config, model, dataset, collate)
    return fit(module, config, run_dir, ckpt, list(extra_callbacks or []), enable_progress_bar)


# -- export -----------------------------------------------------------------------------------

def peft_key(name: str) -> str:
    """The adapter-file key (peft's ``get_peft_model_state_dict`` naming) of a parameter of
    the training module's DiT: ``dit.blocks.0.self_attn.qkv.lora_A.default.weight`` ->
    ``base_model.model.blocks.0.self_attn.qkv.lora_A.weight``; DoRA's
    ``lora_magnitude_vector.default.weight`` -> ``lora_magnitude_vector``."""
    if not name.startswith("dit."):
        raise CheckpointError(f"unexpected adapter weight {name!r} (outside the DiT)")
    key = name[len("dit."):].replace(f".{ADAPTER_NAME}.", ".")
    if key.endswith(".lora_magnitude_vector.weight"):
        key = key[: -len(".weight")]
    return PEFT_PREFIX + key


def adapter_from_checkpoint(path: Path, ckpt: dict, use_ema: bool = True) -> LoRAAdapter:
    """The adapter a `longplay train lora` checkpoint holds (its average when there is one
    and ``use_ema``)."""
    info = ckpt["longplay"]
    state = ckpt["state_dict"]
    ema = {k[len("ema.weights."):]: v for k, v in state.items() if k.startswith("ema.weights.")}
    if use_ema and ema:
        named = {_unslot(k): v for k, v in ema.items()}
    else:
        named = {k[len("net."):]: v for k, v in state.items()
                 if k.startswith("net.") and is_adapter_key(k)}
    if not named:
        raise CheckpointError(f"{path} holds no adapter weights")
    base = BaseIdentity.from_metadata(info.get("base_identity", {}))
    return LoRAAdapter(path, dict(info["peft_config"]),
                       {peft_key(k): v.clone() for k, v in named.items()}, base)


def export_adapter(adapter: LoRAAdapter, out_dir: str | Path) -> Path:
    """Write ``adapter`` as an adapter folder in peft's format."""
    return save_adapter(out_dir, adapter.peft_config(), adapter.state, adapter.base)


def export_merged(base: str | Path, adapters: list[tuple[LoRAAdapter, float]],
                  out_dir: str | Path, *, text_encoder_path: str | None = None,
                  copy_text_encoder: bool = False) -> Path:
    """Write the model folder ``base`` with ``adapters`` (each with its scale) merged into
    its DiT: a plain model that needs no adapter to load."""
    model = load_model_to_train(base, text_encoder_path)
    identity = base_identity(model.dit, dataclass_to_dict(model.config.dit), Path(base).name)
    for adapter, _ in adapters:
        adapter.check_base(identity)
    merge_adapters(model.dit, adapters)
    return save_model_folder(model, out_dir, copy_text_encoder=copy_text_encoder)

"""``longplay export RUN -o MODEL_DIR``: a training run's averaged weights as a model folder."""

from __future__ import annotations

from pathlib import Path

import torch

from longplay.adapters import ADAPTER_CONFIG, LoRAAdapter, load_adapter
from longplay.builders import DiffusionModel, build_conditioner, build_dit, build_vae
from longplay.checkpoints import save_model_folder
from longplay.config import DiffusionModelConfig, dataclass_from_dict
from longplay.errors import CheckpointError
from longplay.training.checkpointing import read_run_checkpoint
from longplay.training.clap import export_clap_checkpoint
from longplay.training.lora import adapter_from_checkpoint, export_adapter, export_merged
from longplay.training.vae import export_vae_checkpoint

__all__ = ["export_run", "read_run_checkpoint"]


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def export_run(run: str | Path, out_dir: str | Path, *, use_ema: bool = True,
               copy_text_encoder: bool = False, merge_lora: bool = False,
               base: str | Path | None = None,
               adapters: list[tuple[LoRAAdapter, float]] | None = None) -> Path:
    """Write a run's weights as a model folder (a VAE, CLAP or DiT run), or as an adapter
    folder (a LoRA run). ``merge_lora``: the LoRA run's base (or ``base``) with its
    adapter and ``adapters`` merged, as a model folder; ``run`` may then also be an adapter
    folder."""
    extra = list(adapters or [])
    if (Path(run) / ADAPTER_CONFIG).is_file():
        if not merge_lora:
            raise CheckpointError(f"{run} is already an adapter folder; pass --merge-lora (and "
                                  "--model BASE) to merge it into its base model")
        if base is None:
            raise CheckpointError("merging an adapter folder needs its base model: --model")
        return export_merged(base, [(load_adapter(run), 1.0), *extra], out_dir,
                             copy_text_encoder=copy_text_encoder)
    path, ckpt = read_run_checkpoint(run)
    if ckpt["longplay"]["stage"] == "lora":
        adapter = adapter_from_checkpoint(path, ckpt, use_ema)
        if not merge_lora:
            if extra:
                raise CheckpointError("--lora adds adapters to merge: pass --merge-lora")
            return export_adapter(adapter, out_dir)
        return export_merged(base or ckpt["longplay"]["base"], [(adapter, 1.0), *extra],
                             out_dir, copy_text_encoder=copy_text_encoder)
    if merge_lora or extra:
        raise CheckpointError(f"{path} is not a `longplay train lora` run: --merge-lora and "
                              "--lora apply to adapters")
    info = ckpt["longplay"]
    stage = info["stage"]
    state = ckpt["state_dict"]
    if stage in ("dit", "distill"):  # a distilled model records its own sampling defaults
        mconfig = dataclass_from_dict(DiffusionModelConfig, info["model_config"], "model_config")
        prefix = "ema." if use_ema and any(k.startswith("ema.") for k in state) else "net."
        with torch.device("meta"):
            vae, conditioner, dit = (build_vae(mconfig.vae),
                                     build_conditioner(mconfig.conditioning),
                                     build_dit(mconfig.dit))
        vae.load_state_dict(_part(state, "vae."), strict=True, assign=True)
        conditioner.load_state_dict(_part(state, prefix + "conditioner."), strict=True,
                                    assign=True)
        dit.load_state_dict(_part(state, prefix + "dit."), strict=True, assign=True)
        model = DiffusionModel(mconfig, vae, conditioner, dit, None, path)
        return save_model_folder(model, out_dir, copy_text_encoder=copy_text_encoder)
    if stage == "vae":
        return export_vae_checkpoint(ckpt, out_dir, use_ema=use_ema)
    if stage == "clap":
        return export_clap_checkpoint(ckpt, out_dir, use_ema=use_ema)
    raise CheckpointError(f"{path}: unknown training stage {stage!r}")

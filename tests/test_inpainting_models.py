"""Models trained to inpaint: stable-audio-tools' diffusion_cond_inpaint layout, the
conversion of a plain model, the training masks and a short inpainting run."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import SAO1_TINY
from longplay.builders import with_inpainting_input
from longplay.checkpoints import CheckpointError, load_diffusion_model, save_model_folder
from longplay.config import ConfigError, DiTTrainConfig, model_preset
from longplay.pipelines import TextToMusicPipeline
from longplay.training.masks import random_inpaint_masks

FAST = dict(num_inference_steps=3, sampler="dpmpp-2m", guidance_scale=3.0)
IO = 8  # the tiny model's latent channels


def inpainting_folder(tmp_path: Path, order=("inpaint_mask", "inpaint_masked_input")) -> Path:
    """The tiny Stable Audio Open model as a stable-audio-tools inpainting model: its DiT
    input widened by a mask and masked latents (random weights for the new channels)."""
    folder = tmp_path / "inpaint_tiny"
    shutil.copytree(SAO1_TINY, folder)
    config = json.loads((folder / "model_config.json").read_text())
    config["model_type"] = "diffusion_cond_inpaint"
    config["model"]["diffusion"]["input_concat_ids"] = list(order)
    config["model"]["diffusion"]["config"]["input_concat_dim"] = 1 + IO
    (folder / "model_config.json").write_text(json.dumps(config))
    state = load_file(str(folder / "model.safetensors"))
    g = torch.Generator().manual_seed(0)
    conv = state["model.model.preprocess_conv.weight"]  # [8, 8, 1]
    wide = torch.randn(2 * IO + 1, 2 * IO + 1, 1, generator=g) * 0.05
    wide[:IO, :IO] = conv
    state["model.model.preprocess_conv.weight"] = wide
    project = state["model.model.transformer.project_in.weight"]  # [W, 8]
    state["model.model.transformer.project_in.weight"] = torch.cat(
        [project, torch.randn(project.shape[0], IO + 1, generator=g) * 0.05], dim=1)
    save_file(state, str(folder / "model.safetensors"))
    return folder


def test_an_inpainting_model_loads_and_is_fed_its_mask(tmp_path: Path) -> None:
    pipe = TextToMusicPipeline.from_pretrained(inpainting_folder(tmp_path))
    assert pipe.config.inpainting and pipe.config.dit.input_concat_dim == 1 + IO
    seen: list[torch.Tensor] = []
    handle = pipe.model.dit.pre_conv.register_forward_hook(
        lambda module, args, out: seen.append(args[0].detach().clone()))
    try:
        piece = pipe("a calm piano", duration_s=2.0, seed=1, **FAST)
        assert seen[0].shape[1] == 2 * IO + 1
        assert not seen[0][:, IO:].any()  # from scratch: nothing known, mask 0
        seen.clear()
        edit = pipe.inpaint(piece.audio[0], 0.5, 1.0, "fast drums", seed=2, **FAST)
    finally:
        handle.remove()
    mask = seen[0][0, IO, :44]  # the mask channel, frames of the 2 s piece
    first, last = int(0.5 * 44100 / 2048), -(-int(1.0 * 44100) // 2048)
    assert torch.equal(mask[first:last], torch.zeros(last - first))
    assert bool((mask[:first] == 1).all()) and bool((mask[last:44] == 1).all())
    assert torch.equal(edit.audio[0, :, :int(0.2 * 44100)], piece.audio[0, :, :int(0.2 * 44100)])


def test_the_mask_channels_follow_the_configured_order(tmp_path: Path) -> None:
    pipe = TextToMusicPipeline.from_pretrained(
        inpainting_folder(tmp_path, order=("inpaint_masked_input", "inpaint_mask")))
    seen: list[torch.Tensor] = []
    handle = pipe.model.dit.pre_conv.register_forward_hook(
        lambda module, args, out: seen.append(args[0].detach().clone()))
    try:
        piece = pipe("x", duration_s=2.0, seed=1, **FAST)
        seen.clear()
        pipe.inpaint(piece.audio[0], 0.5, 1.0, "x", seed=2, **FAST)
    finally:
        handle.remove()
    assert set(seen[0][0, 2 * IO, :44].unique().tolist()) == {0.0, 1.0}  # the mask is last


def test_export_writes_the_inpainting_layout_back(tmp_path: Path) -> None:
    model = load_diffusion_model(inpainting_folder(tmp_path))
    out = save_model_folder(model, tmp_path / "exported")
    config = json.loads((out / "model_config.json").read_text())
    assert config["model_type"] == "diffusion_cond_inpaint"
    assert config["model"]["diffusion"]["input_concat_ids"] == ["inpaint_mask",
                                                                 "inpaint_masked_input"]
    again = load_diffusion_model(out)
    assert again.config.dit == model.config.dit
    assert torch.equal(again.dit.project_in.weight, model.dit.project_in.weight)


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["model"]["diffusion"].update(input_concat_ids=["other"]), "input_concat_ids"),
    (lambda c: c.update(model_type="diffusion_cond"), "disagree"),
    (lambda c: c["model"]["diffusion"]["config"].update(input_concat_dim=3), "input_concat_dim"),
])
def test_inconsistent_inpainting_configs_are_refused(tmp_path: Path, edit, message) -> None:
    folder = inpainting_folder(tmp_path)
    config = json.loads((folder / "model_config.json").read_text())
    edit(config)
    (folder / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        load_diffusion_model(folder)


def test_a_plain_model_gains_the_inputs_without_changing_its_output() -> None:
    model = load_diffusion_model(SAO1_TINY)
    wide = with_inpainting_input(model)
    assert wide.config.inpainting and not model.config.inpainting
    assert with_inpainting_input(wide) is wide
    pipe, wide_pipe = TextToMusicPipeline(model), TextToMusicPipeline(wide)
    x = torch.randn(1, IO, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.4])
    with torch.inference_mode():
        cond = pipe.prepare_conditioning(pipe.encode_prompt(["a calm piano"]), 1, 0.0, 5.0)
        extra = torch.randn(1, IO + 1, 16, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(wide.dit(x, t, cond.with_input(extra)),
                                   model.dit(x, t, cond), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="extra input channels"):
        wide.dit(x, t, cond)
    a = pipe("a calm piano", duration_s=1.0, seed=3, **FAST)
    b = wide_pipe("a calm piano", duration_s=1.0, seed=3, **FAST)
    torch.testing.assert_close(a.audio, b.audio, rtol=0, atol=1e-5)


def test_training_masks_follow_the_distribution() -> None:
    g = torch.Generator().manual_seed(0)
    masks = random_inpaint_masks(2000, 40, torch.full((2000,), 30), g)
    assert masks.shape == (2000, 1, 40)
    full = (masks.sum(dim=(1, 2)) == 0).float().mean()
    assert 0.77 < float(full) < 0.83  # everything generated, 80 %
    partial = masks[masks.sum(dim=(1, 2)) > 0]
    assert bool((partial[..., 30:] == 1).all())  # padding stays known
    assert bool((partial[..., :30] == 0).any(dim=-1).float().mean() > 0.9)
    again = random_inpaint_masks(2000, 40, torch.full((2000,), 30),
                                 torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)
    prefix = random_inpaint_masks(200, 20, None, torch.Generator().manual_seed(1),
                                  probabilities=(0.0, 0.0, 1.0))
    kept = prefix[:, 0].sum(dim=1).long()
    assert all(torch.equal(row[0], (torch.arange(20) < k).float()) for row, k in zip(
        prefix, kept, strict=True))
    with pytest.raises(ConfigError, match="summing to 1"):
        DiTTrainConfig(preset="debug", inpaint_mask_probabilities=(0.5, 0.5, 0.5))


def test_inpaint_training_teaches_the_new_inputs(tmp_path: Path) -> None:
    from longplay.training import runner
    from test_training_dit import ToyLatents, collate
    from test_training_dit import config as toy_config

    runner_build = runner.build_dataset
    runner.build_dataset = lambda config, model_config: (ToyLatents(), collate)
    try:
        cfg = replace(toy_config(6), inpaint=True)
        last = runner.train_dit(cfg, tmp_path / "run", enable_progress_bar=False)
    finally:
        runner.build_dataset = runner_build
    from longplay.training.export import export_run

    folder = export_run(last, tmp_path / "model")
    model = load_diffusion_model(folder, text_encoder_path=SAO1_TINY / "text_encoder")
    assert model.config.inpainting
    assert model.dit.project_in.weight[:, IO:].abs().sum() > 0  # learned from zero
    assert model_preset("debug").dit.input_concat_dim == 0  # presets untouched

"""Config checks: every field's type and range, errors that name the file and the dotted
field, and relative paths in config files resolved against the file's folder."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import typing
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import longplay.config as config_module
from conftest import SAO1_TINY, SAO1_TINY_DIFFUSERS
from longplay.audio import save_audio
from longplay.checkpoints.diffusion import load_diffusion_model
from longplay.cli.main import main
from longplay.config import (
    MAX_LATENT_FRAMES,
    MAX_SAMPLE_SIZE,
    CLAPTrainConfig,
    ConfigError,
    DistillTrainConfig,
    DiTConfig,
    DiTTrainConfig,
    LoRATrainConfig,
    TrainerConfig,
    VAETrainConfig,
    check_config,
    load_config_file,
)
from longplay.config.fields import ConfigPath, OneOf, Range
from longplay.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]
SAT_CONFIG = json.loads((SAO1_TINY / "model_config.json").read_text())


def model_folder(tmp_path: Path, **changes) -> Path:
    """The tiny SAO 1.0 fixture with ``changes`` to its model_config.json: dotted paths
    ("model.diffusion.config.num_heads") -> values."""
    config = json.loads(json.dumps(SAT_CONFIG))
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        section = config
        for name in parents:
            section = section[name]
        section[key] = value
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_config.json").write_text(json.dumps(config))
    for name in ("model.safetensors", "text_encoder"):
        (folder / name).symlink_to(SAO1_TINY / name)
    return folder


RATE = r"must be an integer from 8000 to 192000 \(Hz"
MODEL_CONFIG_ERRORS = [
    ({"sample_rate": True}, "sample_rate " + RATE + r".*got True"),
    ({"sample_rate": None}, "sample_rate " + RATE + r".*got None"),
    ({"sample_rate": "abc"}, "sample_rate " + RATE + r".*got 'abc'"),
    ({"sample_rate": 44100.9}, "sample_rate " + RATE + r".*got 44100.9"),
    ({"sample_rate": 100}, "sample_rate " + RATE + r".*got 100"),
    ({"model.diffusion.config.num_heads": 0},
     "model.diffusion.config.num_heads must be a positive integer, got 0"),
    ({"model.diffusion.config.num_heads": 3},
     r"model.diffusion.config.num_heads must divide the DiT's width 128"),
    ({"model.diffusion.config.embed_dim": 10**9},
     r"model.diffusion.config.embed_dim must be a positive integer no larger than 65536 "
     r"\(MAX_WIDTH\)"),
    ({"sample_size": -5}, "sample_size must be a positive integer no larger than "
                          f"{MAX_SAMPLE_SIZE} \\(MAX_SAMPLE_SIZE.*got -5"),
    ({"sample_size": 10**12}, r"sample_size must be a positive integer .*MAX_SAMPLE_SIZE"),
    ({"sample_size": 1000}, "sample_size must be a multiple of the VAE's 2048"),
    ({"audio_channels": 1}, "audio_channels must match the VAE's 2 audio channels"),
    ({"audio_channels": 9},
     r"audio_channels must be a positive integer no larger than 8 \(mono to 7.1\), got 9"),
    ({"model.pretransform.config.encoder.config.c_mults": [1, 2, 0, 2, 4]},
     r"model.pretransform.config.encoder.config.c_mults\[2\] must be a positive integer"),
    ({"model.conditioning.cond_dim": "64"},
     "model.conditioning.cond_dim must be a positive integer no larger than 65536"),
    ({"model.diffusion.config.project_cond_tokens": 1},
     "model.diffusion.config.project_cond_tokens must be true or false, got 1"),
    ({"inference": {"steps": 0}}, "inference.steps must be a positive integer, got 0"),
    ({"inference": {"guidance_scale": -2}}, r"inference.guidance_scale must be a number > 0"),
    ({"inference": {"guidance_interval": [0.1, "x"]}},
     r"inference.guidance_interval\[1\] must be a number >= 0, got 'x'"),
    ({"inference": {"window": "half"}}, "inference.window must be one of 'full', 'fit'"),
    ({"inference": {"sigma_min": 0}}, "inference.sigma_min must be a number > 0, got 0"),
    ({"inference": {"sigma_max": "high"}}, "inference.sigma_max must be a number > 0"),
]


@pytest.mark.parametrize(("changes", "message"), MODEL_CONFIG_ERRORS)
def test_model_config_json_fields_are_type_and_range_checked(tmp_path: Path, changes,
                                                             message: str) -> None:
    folder = model_folder(tmp_path, **changes)
    with pytest.raises(CheckpointError, match=f"model_config.json: {message}"):
        load_diffusion_model(folder, load_text_encoder=False)


def test_a_model_with_a_bad_sample_rate_writes_nothing(tmp_path: Path, capsys) -> None:
    folder = model_folder(tmp_path, sample_rate=True)
    out = tmp_path / "song.wav"
    assert main(["generate", "a song", "--model", str(folder), "--duration", "1", "--steps", "2",
                 "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "sample_rate must be an integer from 8000 to 192000" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [folder]


def test_weights_of_another_channel_count_name_the_field(tmp_path: Path) -> None:
    vae = "model.pretransform.config"
    folder = model_folder(tmp_path, audio_channels=1, **{
        f"{vae}.encoder.config.in_channels": 1, f"{vae}.decoder.config.out_channels": 1,
        f"{vae}.io_channels": 1})
    with pytest.raises(CheckpointError, match=r"model.safetensors: the VAE .* shape mismatches"
                                              r".*weights are of a VAE with audio_channels 2 "
                                              r"\(the config says 1\)"):
        load_diffusion_model(folder, load_text_encoder=False)


def test_a_diffusers_folder_is_checked_too(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(SAO1_TINY_DIFFUSERS, tmp_path / "diffusers"))
    dit = folder / "transformer" / "config.json"
    dit.write_text(json.dumps({**json.loads(dit.read_text()), "num_layers": 0}))
    with pytest.raises(CheckpointError, match=r"transformer/config.json: num_layers must be a "
                                              r"positive integer no larger than 1024"):
        load_diffusion_model(folder, load_text_encoder=False)


TRAINING_ERRORS = [
    (DiTTrainConfig, "trainer: {checkpoint_every_n_steps: -2}",
     "trainer.checkpoint_every_n_steps must be a positive integer, got -2"),
    (DiTTrainConfig, "trainer: {max_steps: 0}", "trainer.max_steps must be a positive integer"),
    (DiTTrainConfig, "trainer: {batch_size: true}",
     "trainer.batch_size must be a positive integer, got True"),
    (DiTTrainConfig, "trainer: {devices: 1.5}", "trainer.devices must be a positive integer"),
    (DiTTrainConfig, "trainer: {seed: -1}", "trainer.seed must be an integer from 0 to"),
    (DiTTrainConfig, "trainer: {precision: fp8}",
     "trainer.precision must be one of '32-true', .*'bf16-mixed'.*, got 'fp8'"),
    (DiTTrainConfig, "trainer: {strategy: deepspeed}",
     "trainer.strategy must be one of 'auto', 'ddp', 'fsdp', got 'deepspeed'"),
    (DiTTrainConfig, "trainer: {gradient_clip_val: 0}",
     "trainer.gradient_clip_val must be a number > 0, got 0"),
    (DiTTrainConfig, "optimizer: {lr: 0}", "optimizer.lr must be a number > 0, got 0"),
    (DiTTrainConfig, "optimizer: {lr: fast}", "optimizer.lr must be a number > 0, got 'fast'"),
    (DiTTrainConfig, "optimizer: {lr: .nan}", "optimizer.lr must be a number > 0, got nan"),
    (DiTTrainConfig, "optimizer: {betas: [0.9, 1.5]}",
     r"optimizer.betas\[1\] must be a number in \[0, 1\), got 1.5"),
    (DiTTrainConfig, "optimizer: {betas: [0.9]}",
     r"optimizer.betas must be a list of 2 values, each a number in \[0, 1\)"),
    (DiTTrainConfig, "ema: {max_decay: 1.0}", r"ema.max_decay must be a number in \[0, 1\)"),
    (DiTTrainConfig, "cfg_dropout: 1", r"cfg_dropout must be a number in \[0, 1\), got 1"),
    (DiTTrainConfig, "window_frames: 100000",
     f"window_frames must be a positive integer no larger than {MAX_LATENT_FRAMES} "
     r"\(MAX_LATENT_FRAMES"),
    (DiTTrainConfig, "inpaint_mask_probabilities: [0.5, 0.5, 0.5]",
     "inpaint_mask_probabilities must be 3 non-negative numbers summing to 1"),
    (DiTTrainConfig, "inpaint_mask_probabilities: [1.5, -0.5, 0]",
     r"inpaint_mask_probabilities\[0\] must be a number in \[0, 1\]"),
    (DiTTrainConfig, "preset: huge", "preset must be one of .*'debug'.*, got 'huge'"),
    (DiTTrainConfig, "data: {kind: tar}",
     "data.kind must be one of 'audio', 'latents', 'shards', got 'tar'"),
    (DiTTrainConfig, "data: {num_workers: -1}",
     "data.num_workers must be a non-negative integer, got -1"),
    (DiTTrainConfig, "demo: {guidance_scales: [1.0, 0]}",
     r"demo.guidance_scales\[1\] must be a number > 0, got 0"),
    (VAETrainConfig, "window_samples: 1.0e12",
     "window_samples must be a positive integer no larger than"),
    (VAETrainConfig, "loss_weights: [1, 0.1, -5, 0]",
     r"loss_weights\[2\] must be a number >= 0, got -5"),
    (VAETrainConfig, "init: xavier",
     "init must be one of 'variance_preserving', 'pytorch', 'pca', got 'xavier'"),
    (CLAPTrainConfig, "{text_encoder_path: t, sample_rate: 44100.9}",
     "sample_rate must be an integer from 8000 to 192000"),
    (CLAPTrainConfig, "{text_encoder_path: t, audio_widths: [8, 0]}",
     r"audio_widths\[1\] must be a positive integer"),
    (DistillTrainConfig, "teacher_steps: 1", "teacher_steps must be an integer >= 2, got 1"),
    (DistillTrainConfig, "{sigma_min: 5, sigma_max: 1}",
     "sigma_max must be above sigma_min 5.0, got 1.0"),
    (LoRATrainConfig, "rank: 0", "rank must be a positive integer no larger than 65536"),
    (LoRATrainConfig, "targets: 5", "targets must be a string or a list, each entry a string"),
]


@pytest.mark.parametrize(("cls", "text", "message"), TRAINING_ERRORS)
def test_training_config_fields_are_type_and_range_checked(tmp_path: Path, cls, text: str,
                                                           message: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=f"^{path}: {message}"):
        load_config_file(path, cls)


def test_integers_are_fine_numbers_and_lists_become_tuples(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("optimizer: {lr: 1, betas: [0, 0.5]}\ndemo: {guidance_scales: [2, 3]}\n")
    config = load_config_file(path, DiTTrainConfig)
    assert isinstance(config.optimizer.lr, float) and config.optimizer.lr == 1.0
    assert config.optimizer.betas == (0.0, 0.5) and config.demo.guidance_scales == (2.0, 3.0)
    assert hash(config)  # frozen all the way down


def test_replace_is_checked_and_check_config_names_the_nested_field() -> None:
    with pytest.raises(ConfigError, match="max_steps must be a positive integer, got 0"):
        replace(TrainerConfig(), max_steps=0)
    with pytest.raises(ConfigError, match="num_heads must be a positive integer, got 0"):
        replace(DiTConfig(), num_heads=0)
    with pytest.raises(ConfigError, match="devices must be a positive integer, got True"):
        DiTTrainConfig(trainer=TrainerConfig(devices=True))
    config = DiTTrainConfig(trainer=TrainerConfig())  # its own trainer, not the default's
    assert check_config(config) is config
    object.__setattr__(config.trainer, "max_steps", -1)  # what the checks would have refused
    with pytest.raises(ConfigError, match=r"^run.yaml.trainer.max_steps must be a positive "
                                          r"integer, got -1$"):
        check_config(config, "run.yaml")


def _config_classes() -> list[type]:
    exported = [getattr(config_module, name) for name in config_module.__all__]
    return [c for c in exported if isinstance(c, type) and dataclasses.is_dataclass(c)]


UNBOUNDED = {("TextConditionerConfig", "layer"), ("CLAPConfig", "text_layer"),
             ("CLAPConfig", "format_version"), ("CLAPTrainConfig", "text_layer"),
             ("DiTTrainConfig", "text_layer")}
"""Integer fields that are rightly any integer: layer indices count from the end when
negative; the format version has its own check."""


def _scalars(annotation):
    """The scalar annotations inside ``annotation`` (through unions and tuples)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, type(int | None)) or origin is tuple:
        for arg in typing.get_args(annotation):
            if arg is not Ellipsis:
                yield from _scalars(arg)
    else:
        yield annotation


PATH_FIELDS = {("DataConfig", "path"), ("DiTTrainConfig", "init_from"),
               ("DiTTrainConfig", "vae_path"), ("DiTTrainConfig", "text_encoder_path"),
               ("VAETrainConfig", "init_from"), ("CLAPTrainConfig", "text_encoder_path"),
               ("DistillTrainConfig", "teacher"), ("DistillTrainConfig", "text_encoder_path"),
               ("DistillTrainConfig", "init_from"),
               ("LoRATrainConfig", "base"), ("LoRATrainConfig", "text_encoder_path")}
"""The fields a config file gives relative to its folder (a model config's text encoder
``model_path`` is relative to the model folder instead)."""


def _marks(annotation) -> list:
    return [m for s in _scalars(annotation) if typing.get_origin(s) is typing.Annotated
            for m in typing.get_args(s)[1:]]


def test_every_number_declares_its_range_and_every_path_is_declared() -> None:
    """The rule: a number in a config has a declared range (a new field without one
    fails here), and the path fields are the ones declared as paths."""
    classes = _config_classes()
    assert len(classes) >= 17
    paths = set()
    for cls in classes:
        for name, annotation in typing.get_type_hints(cls, include_extras=True).items():
            for scalar in _scalars(annotation):
                if scalar in (int, float):
                    assert (cls.__name__, name) in UNBOUNDED, f"{cls.__name__}.{name}"
            assert all(isinstance(m, Range | OneOf | ConfigPath) for m in _marks(annotation))
            if any(isinstance(m, ConfigPath) for m in _marks(annotation)):
                paths.add((cls.__name__, name))
    assert paths == PATH_FIELDS


# -- paths in config files -----------------------------------------------------------------

SHIPPED = {"debug/vae.yaml": VAETrainConfig, "debug/clap.yaml": CLAPTrainConfig,
           "debug/dit.yaml": DiTTrainConfig, "demo/vae.yaml": VAETrainConfig,
           "demo/clap.yaml": CLAPTrainConfig, "demo/dit-pretrain.yaml": DiTTrainConfig,
           "demo/dit-finetune.yaml": DiTTrainConfig,
           "demo/dit-finetune-varlen.yaml": DiTTrainConfig, "demo/dit-inpaint.yaml": DiTTrainConfig,
           "demo/distill.yaml": DistillTrainConfig,
           "demo/distill-phased.yaml": DistillTrainConfig,
           "demo/distill-dmd.yaml": DistillTrainConfig,
           "demo/dit-real.yaml": DiTTrainConfig,
           "demo/distill-dmd-real.yaml": DistillTrainConfig,
           "demo/lora-piano.yaml": LoRATrainConfig,
           "demo/vae-adversarial.yaml": VAETrainConfig,
           "finetune-sao1.yaml": DiTTrainConfig}
NAMES = {"demo", "all-MiniLM-L6-v2"}  # a bundled model, a packaged text encoder
PRODUCED = ("models", "data")
"""Where the documented recipes write what later configs read (models/demo-vae...)."""


def _path_values(config, prefix: str = ""):
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            yield from _path_values(value, f"{prefix}{f.name}.")
        elif value is not None and (type(config).__name__, f.name) in PATH_FIELDS:
            yield f"{prefix}{f.name}", value


def test_every_shipped_config_is_listed() -> None:
    shipped = {p.relative_to(REPO / "configs").as_posix()
               for p in (REPO / "configs").rglob("*.yaml")}
    assert shipped == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_work_from_any_folder(name: str, tmp_path: Path, monkeypatch) -> None:
    path = REPO / "configs" / name
    monkeypatch.chdir(REPO)  # as docs/training.md runs them
    from_root = load_config_file(Path("configs") / name, SHIPPED[name])
    monkeypatch.chdir(tmp_path)
    elsewhere = load_config_file(path, SHIPPED[name])
    assert elsewhere == from_root
    paths = dict(_path_values(elsewhere))
    for field, value in paths.items():
        if value in NAMES:
            continue
        resolved = Path(value)
        assert resolved.is_absolute(), (field, value)
        assert resolved.exists() or resolved.relative_to(REPO).parts[0] in PRODUCED, \
            (field, value)
    if name.startswith("debug/") and "text_encoder_path" in paths:
        assert (Path(paths["text_encoder_path"]) / "config.json").is_file()


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "configs"
    (folder / "demo").mkdir(parents=True)  # a folder named like the bundled model
    (folder / "encoder").mkdir()
    (folder / "run.yaml").write_text(
        "preset: null\ninit_from: ../models/base\nvae_path: ~/vae\n"
        "text_encoder_path: all-MiniLM-L6-v2\n"
        "data: {kind: shards, path: 's3://bucket/a.tar, shards/b.tar,/abs/c.tar'}\n")
    monkeypatch.chdir(tmp_path.parent)
    config = load_config_file(folder / "run.yaml", DiTTrainConfig)
    assert config.init_from == str(tmp_path / "models" / "base")
    assert config.vae_path == str(Path.home() / "vae")
    assert config.text_encoder_path == "all-MiniLM-L6-v2"
    assert config.data.path == f"s3://bucket/a.tar,{folder / 'shards' / 'b.tar'},/abs/c.tar"
    (folder / "lora.yaml").write_text("base: demo\ntext_encoder_path: encoder\n")
    lora = load_config_file(folder / "lora.yaml", LoRATrainConfig)
    assert lora.base == str(folder / "demo")  # the folder next to the config wins
    assert lora.text_encoder_path == str(folder / "encoder")
    (folder / "demo").rmdir()
    assert load_config_file(folder / "lora.yaml", LoRATrainConfig).base == "demo"


def test_train_a_debug_config_from_another_folder(tmp_path: Path, monkeypatch) -> None:
    audio = tmp_path / "d"
    audio.mkdir()
    t = torch.arange(20000) / 44100
    for i in range(4):
        save_audio(audio / f"tone{i}.wav",
                   torch.stack([torch.sin(2 * math.pi * 220 * (i + 1) * t)] * 2), 44100)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "clap", str(REPO / "configs" / "debug" / "clap.yaml"), "--data", "d",
                 "-o", "r", "--max-steps", "1", "--no-progress"]) == 0
    assert (tmp_path / "r" / "checkpoints" / "last.ckpt").is_file()
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert Path(saved["text_encoder_path"]) == (SAO1_TINY / "text_encoder").resolve()
    # Paths on the command line stay relative to the working folder.
    assert Path(saved["data"]["path"]).resolve() == audio.resolve()

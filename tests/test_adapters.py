"""LoRA adapters (``longplay.adapters``, ``longplay train lora``): a fresh adapter and
scale 0 change nothing, merged equals applied, stacked adapters add up, the base is never
touched, the files are peft's and know their base, training lowers the loss and resumes
exactly, and the command line trains, exports, merges and generates with them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from peft import PeftModel

from conftest import SAO1_TINY, SAO1_TINY_DIFFUSERS, SAOS_TINY
from longplay.adapters import (
    ADAPTER_WEIGHTS,
    TARGET_PRESETS,
    adapter_state,
    adapters_applied,
    base_identity,
    load_adapter,
    lora_config,
    merge_adapters,
    parse_adapter_argument,
    save_adapter,
)
from longplay.checkpoints import load_diffusion_model
from longplay.cli.main import main
from longplay.conditioning import Conditioning
from longplay.config import (
    ConfigError,
    DataConfig,
    EMAConfig,
    LoRATrainConfig,
    OptimizerConfig,
    TrainerConfig,
    dataclass_to_dict,
)
from longplay.errors import AdapterError, CheckpointError
from longplay.pipelines import TextToMusicPipeline
from longplay.training import lora as lora_training
from longplay.training.export import export_run
from test_training_dit import ToyLatents, collate, losses

TOL = {"rtol": 1e-5, "atol": 1e-5}
"""fp32: merged weights and applied layers differ by rounding only."""


def _identity(model):
    return base_identity(model.dit, dataclass_to_dict(model.config.dit), "sao1_tiny")


def random_adapter(folder: Path, seed: int, *, rank: int = 2, targets="all",
                   dora: bool = False, zero_b: bool = False) -> Path:
    """An adapter of the tiny model with random A and B (or the fresh, zero-B one)."""
    model = load_diffusion_model(SAO1_TINY)
    identity = _identity(model)
    config = lora_config(rank=rank, alpha=2.0 * rank, targets=targets, dora=dora)
    peft_model = PeftModel(model.dit, config, adapter_name="default")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.dit.named_parameters():
            if ".lora_" in name and not (zero_b and "lora_B" in name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
            if "lora_magnitude_vector" in name:
                p.mul_(1.0 + 0.1 * torch.rand(p.shape, generator=g))
    return save_adapter(folder, config, adapter_state(peft_model), identity)


def dit_inputs(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    x = torch.randn(2, c.vae.latent_dim, 24, generator=g)
    t = torch.rand(2, generator=g)
    width = c.conditioning.cond_dim
    cond = Conditioning(torch.randn(2, 5, width, generator=g), torch.ones(2, 5, dtype=torch.bool),
                        torch.randn(2, c.dit.global_cond_dim, generator=g))
    return x, t, cond


def out_with(model, adapters):
    x, t, cond = dit_inputs(model)
    with adapters_applied(model.dit, adapters), torch.no_grad():
        return model.dit(x, t, cond)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {"a": random_adapter(root / "a", 1), "b": random_adapter(root / "b", 2, rank=4),
            "dora": random_adapter(root / "dora", 3, dora=True, targets="attention"),
            "fresh": random_adapter(root / "fresh", 4, zero_b=True)}


def test_a_fresh_adapter_and_scale_zero_change_nothing(adapters) -> None:
    model = load_diffusion_model(SAO1_TINY)
    base = out_with(model, [])
    assert torch.equal(out_with(model, [(load_adapter(adapters["fresh"]), 1.0)]), base)
    for name in ("a", "dora"):
        adapter = load_adapter(adapters[name])
        assert not torch.allclose(out_with(model, [(adapter, 1.0)]), base, **TOL)
        assert torch.equal(out_with(model, [(adapter, 0.0)]), base)
    assert torch.equal(out_with(model, []), base)  # removed after each block


def test_the_base_is_left_as_it_was(adapters) -> None:
    model = load_diffusion_model(SAO1_TINY)
    model.dit.train()
    before = {k: v.clone() for k, v in model.dit.state_dict().items()}
    modules = {n: type(m) for n, m in model.dit.named_modules()}
    flags = {n: p.requires_grad for n, p in model.dit.named_parameters()}
    with adapters_applied(model.dit, [(load_adapter(adapters["a"]), 0.5),
                                      (load_adapter(adapters["dora"]), 1.0)]):
        assert any(".lora_" in k for k in model.dit.state_dict())
    after = model.dit.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert {n: type(m) for n, m in model.dit.named_modules()} == modules
    assert {n: p.requires_grad for n, p in model.dit.named_parameters()} == flags
    assert model.dit.training


@pytest.mark.parametrize("name", ["a", "dora"])
def test_merged_equals_applied(adapters, name: str) -> None:
    adapter = load_adapter(adapters[name])
    model = load_diffusion_model(SAO1_TINY)
    applied = out_with(model, [(adapter, 0.7)])
    merged = merge_adapters(load_diffusion_model(SAO1_TINY).dit, [(adapter, 0.7)])
    x, t, cond = dit_inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(merged(x, t, cond), applied, **TOL)
    assert all(".lora_" not in k for k in merged.state_dict())  # a plain DiT again


def test_stacked_adapters_add_their_scaled_updates(adapters) -> None:
    a, b = load_adapter(adapters["a"]), load_adapter(adapters["b"])
    base = load_diffusion_model(SAO1_TINY).dit.state_dict()

    def delta(pairs) -> dict[str, torch.Tensor]:
        merged = merge_adapters(load_diffusion_model(SAO1_TINY).dit, pairs).state_dict()
        return {k: merged[k] - base[k] for k in base}

    da, db, both = delta([(a, 1.0)]), delta([(b, 1.0)]), delta([(a, 0.6), (b, -1.5)])
    changed = [k for k in base if da[k].abs().max() > 0]
    assert changed and all("blocks." in k for k in changed)
    for key in base:
        torch.testing.assert_close(both[key], 0.6 * da[key] - 1.5 * db[key], **TOL)
    # and applying both at once is what merging both gives
    stacked = out_with(load_diffusion_model(SAO1_TINY), [(a, 0.6), (b, -1.5)])
    merged = merge_adapters(load_diffusion_model(SAO1_TINY).dit, [(a, 0.6), (b, -1.5)])
    x, t, cond = dit_inputs(load_diffusion_model(SAO1_TINY))
    with torch.no_grad():
        torch.testing.assert_close(merged(x, t, cond), stacked, **TOL)


def test_the_files_are_peft_s_and_their_size_is_what_the_rank_implies(adapters) -> None:
    model = load_diffusion_model(SAO1_TINY)
    adapter = load_adapter(adapters["b"])  # rank 4, all targets
    linears = {n: m for n, m in model.dit.named_modules() if isinstance(m, torch.nn.Linear)}
    targeted = [m for n, m in linears.items()
                if n.startswith("blocks.") and n.split(".", 2)[2] in TARGET_PRESETS["all"]]
    expected = sum(4 * (m.in_features + m.out_features) for m in targeted)
    assert adapter.num_parameters == expected
    size = (adapters["b"] / ADAPTER_WEIGHTS).stat().st_size
    assert 4 * expected <= size <= 4 * expected + 16384  # fp32 weights and a header
    config = json.loads((adapters["b"] / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8.0)
    # peft itself loads it onto the DiT and computes what longplay applies
    ours = out_with(load_diffusion_model(SAO1_TINY), [(adapter, 1.0)])
    other = load_diffusion_model(SAO1_TINY)
    peft_model = PeftModel.from_pretrained(other.dit, str(adapters["b"]))
    x, t, cond = dit_inputs(other)
    with torch.no_grad():
        torch.testing.assert_close(peft_model(x, t, cond), ours, rtol=0, atol=0)


def test_an_adapter_for_another_base_is_refused(adapters, tmp_path: Path) -> None:
    pipe = TextToMusicPipeline.from_pretrained(SAOS_TINY)
    with pytest.raises(AdapterError, match=r"another architecture|does not have"):
        pipe.load_lora_weights(adapters["a"])
    changed = load_diffusion_model(SAO1_TINY)
    with torch.no_grad():
        changed.dit.blocks[0].self_attn.qkv.weight.add_(1e-2)
    with pytest.raises(AdapterError, match="trained on other weights"):
        TextToMusicPipeline(changed).load_lora_weights(adapters["a"])
    # the same weights in bf16 are the same base
    TextToMusicPipeline.from_pretrained(SAO1_TINY, precision="bf16").load_lora_weights(
        adapters["a"])
    with pytest.raises(AdapterError, match="not an adapter folder"):
        load_adapter(tmp_path)
    with pytest.raises(AdapterError, match="int8"):
        TextToMusicPipeline.from_pretrained(SAO1_TINY, precision="int8").load_lora_weights(
            adapters["a"])
    assert parse_adapter_argument("x/y:0.5") == ("x/y", 0.5)
    assert parse_adapter_argument("x/y") == ("x/y", 1.0)


def test_an_adapter_applies_to_the_same_weights_in_the_diffusers_layout(adapters) -> None:
    """The base is identified by its DiT's weights, not by the folder's layout."""
    TextToMusicPipeline.from_pretrained(SAO1_TINY_DIFFUSERS).load_lora_weights(adapters["a"])
    adapter = [(load_adapter(adapters["a"]), 1.0)]
    ours = out_with(load_diffusion_model(SAO1_TINY), adapter)
    theirs = out_with(load_diffusion_model(SAO1_TINY_DIFFUSERS), adapter)
    torch.testing.assert_close(theirs, ours, **TOL)


def test_the_pipeline_applies_adapters_per_call_and_by_name(adapters) -> None:
    pipe = TextToMusicPipeline.from_pretrained(SAO1_TINY)
    kw = {"duration_s": 1.0, "seed": 0, "num_inference_steps": 3}
    base = pipe("a song", **kw)
    with_a = pipe("a song", adapters=[(adapters["a"], 1.0)], **kw)
    assert not torch.allclose(with_a.audio, base.audio)
    assert with_a.adapters[0]["scale"] == 1.0 and with_a.adapters[0]["rank"] == 2
    assert torch.equal(pipe("a song", **kw).audio, base.audio)  # nothing left behind
    name = pipe.load_lora_weights(adapters["a"])
    assert torch.equal(pipe("a song", **kw).audio, with_a.audio)
    pipe.set_adapters([name], [0.0])
    assert torch.equal(pipe("a song", **kw).audio, base.audio)
    pipe.unload_lora_weights()
    assert pipe.active_adapters == () and torch.equal(pipe("a song", **kw).audio, base.audio)
    with pytest.raises(AdapterError, match="not loaded"):
        pipe.set_adapters(["nope"])


# -- training ---------------------------------------------------------------------------------

@pytest.fixture
def toy_data(monkeypatch) -> None:
    monkeypatch.setattr(lora_training, "build_dataset",
                        lambda config, model_config: (ToyLatents(), collate))


def train_config(steps: int, **kwargs) -> LoRATrainConfig:
    kwargs.setdefault("targets", "all")
    kwargs.setdefault("data", DataConfig(kind="latents", path="unused"))
    return LoRATrainConfig(
        base=str(SAO1_TINY), rank=4, alpha=8.0,
        optimizer=OptimizerConfig(lr=1e-2, inv_gamma=1e4, warmup=0.0),
        trainer=TrainerConfig(max_steps=steps, batch_size=4, checkpoint_every_n_steps=3,
                              log_every_n_steps=1), **kwargs)


def test_training_lowers_the_loss_and_keeps_the_base_bit_identical(toy_data,
                                                                   tmp_path: Path) -> None:
    files = {p: p.read_bytes() for p in SAO1_TINY.glob("*.safetensors")}
    before = load_diffusion_model(SAO1_TINY)
    run = tmp_path / "run"
    lora_training.train_lora(train_config(30), run, enable_progress_bar=False)
    values = losses(run)
    assert len(values) == 30 and all(torch.isfinite(torch.tensor(values)))
    assert sum(values[-8:]) / 8 < 0.8 * sum(values[:8]) / 8
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["longplay"]["stage"] == "lora"
    assert ckpt["state_dict"] and all(".lora_" in k for k in ckpt["state_dict"])
    optimised = sum(len(g["params"]) for g in ckpt["optimizer_states"][0]["param_groups"])
    assert optimised == len(ckpt["state_dict"])  # only the adapter is optimised
    assert files == {p: p.read_bytes() for p in SAO1_TINY.glob("*.safetensors")}
    # the exported adapter's base is the untouched model, bit for bit
    adapter = lora_training.adapter_from_checkpoint(run, ckpt)
    adapter.check_base(_identity(before))
    assert adapter.rank == 4


def test_resumed_run_equals_uninterrupted_run(toy_data, tmp_path: Path) -> None:
    ema = EMAConfig(enabled=True, max_decay=0.9)
    lora_training.train_lora(train_config(6, ema=ema), tmp_path / "a", enable_progress_bar=False)
    lora_training.train_lora(train_config(3, ema=ema), tmp_path / "b", enable_progress_bar=False)
    lora_training.train_lora(train_config(6, ema=ema), tmp_path / "b", resume=True,
                             enable_progress_bar=False)
    a = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert any(k.startswith("ema.") for k in a["state_dict"])
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert losses(tmp_path / "a")[3:] == losses(tmp_path / "b")[3:]


def test_options_are_checked_before_the_base_loads(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="targets"):
        lora_training.train_lora(train_config(1, targets=("self_attn.qkvz",)), tmp_path / "r")
    with pytest.raises(ConfigError, match="--model"):
        lora_training.train_lora(LoRATrainConfig(), tmp_path / "r")
    with pytest.raises(ConfigError, match="rank"):
        LoRATrainConfig(rank=0)
    assert not (tmp_path / "r").exists()


def test_train_export_merge_and_generate_through_the_cli(toy_data, tmp_path: Path) -> None:
    cfg = tmp_path / "lora.yaml"
    cfg.write_text("""
rank: 4
alpha: 8
targets: all
optimizer: {lr: 0.01, inv_gamma: 10000.0, warmup: 0.0}
data: {kind: latents, path: unused}
trainer: {max_steps: 3, batch_size: 2, checkpoint_every_n_steps: 3, log_every_n_steps: 1}
""")
    run, adapter, merged = tmp_path / "run", tmp_path / "adapter", tmp_path / "merged"
    assert main(["train", "lora", str(cfg), "--model", str(SAO1_TINY), "-o", str(run),
                 "--no-progress"]) == 0
    assert main(["export", str(run), "-o", str(adapter)]) == 0
    assert load_adapter(adapter).num_parameters > 0
    assert main(["export", str(run), "-o", str(merged), "--merge-lora"]) == 0
    common = ["--duration", "1", "--steps", "3", "--seed", "0", "--precision", "fp32",
              "--no-progress"]
    outs = {}
    for name, extra in (("merged", ["--model", str(merged)]),
                        ("applied", ["--model", str(SAO1_TINY), "--lora", f"{adapter}:1"]),
                        ("base", ["--model", str(SAO1_TINY)])):
        path = tmp_path / f"{name}.wav"
        assert main(["generate", "song number 1", "-o", str(path), *extra, *common]) == 0
        outs[name] = path
    sidecar = json.loads(outs["applied"].with_suffix(".json").read_text())
    assert sidecar["adapters"] == [{"name": "adapter", "path": str(adapter), "scale": 1.0,
                                    "rank": 4}]
    audio = {k: soundfile.read(v, dtype="float32")[0] for k, v in outs.items()}
    assert abs(audio["merged"] - audio["applied"]).max() < 2e-3  # 16-bit files, merged fp32
    assert abs(audio["base"] - audio["applied"]).max() > 1e-2


def test_bad_adapter_arguments_fail_before_the_model_loads(tmp_path: Path, capsys,
                                                           monkeypatch) -> None:
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(TextToMusicPipeline, "from_pretrained", no_loading)
    out = tmp_path / "x.wav"
    assert main(["generate", "x", "--model", str(SAO1_TINY), "--lora", str(tmp_path / "none"),
                 "-o", str(out)]) == 2
    assert "no adapter at" in capsys.readouterr().err
    assert not out.exists()


def test_merging_an_adapter_folder_needs_its_base(adapters, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="--model"):
        export_run(adapters["a"], tmp_path / "m", merge_lora=True)
    assert main(["export", str(adapters["a"]), "-o", str(tmp_path / "m"), "--merge-lora",
                 "--model", str(SAO1_TINY), "--lora", f"{adapters['b']}:0.5"]) == 0
    merged = load_diffusion_model(tmp_path / "m")
    expected = merge_adapters(load_diffusion_model(SAO1_TINY).dit,
                              [(load_adapter(adapters["a"]), 1.0),
                               (load_adapter(adapters["b"]), 0.5)])
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(merged.dit.state_dict()[key], value, **TOL)


def test_training_from_an_audio_folder(tmp_path: Path) -> None:
    """Without pre-encoded latents: the base's VAE encodes the audio on the fly."""
    music = tmp_path / "music"
    music.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        soundfile.write(str(music / f"{i}.wav"),
                        (0.3 * rng.standard_normal((44100, 2))).astype(np.float32), 44100)
        (music / f"{i}.txt").write_text(f"song number {i}")
    config = train_config(2, window_frames=8,
                          data=DataConfig(kind="audio", path=str(music)))
    run = tmp_path / "run"
    lora_training.train_lora(config, run, enable_progress_bar=False)
    assert len(losses(run)) == 2
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and all(".lora_" in k for k in ckpt["state_dict"])


def test_a_drafted_generation_applies_adapters_to_the_refinement_only(adapters) -> None:
    """DraftedPipeline: the draft model runs as it is; the adapters apply to the model's
    refinement of the draft, per call, and the output records them."""
    from longplay.pipelines.drafts import DRAFT_REFINEMENT, REFINE_SEED_OFFSET, DraftedPipeline

    pipe = TextToMusicPipeline.from_pretrained(SAO1_TINY)
    drafted = DraftedPipeline(pipe, TextToMusicPipeline.from_pretrained(SAO1_TINY))
    kw = {"duration_s": 1.0, "seed": 0}
    out = drafted("a song", adapters=[(adapters["a"], 1.0)], **kw)
    assert out.settings.draft is not None and out.adapters[0]["scale"] == 1.0
    draft = pipe("a song", output_type="latent",
                 num_inference_steps=DRAFT_REFINEMENT.draft_steps, **kw)
    expected = pipe("a song", duration_s=1.0, seed=REFINE_SEED_OFFSET,
                    init_latents=draft.latents, adapters=[(adapters["a"], 1.0)],
                    **DRAFT_REFINEMENT.as_kwargs())
    torch.testing.assert_close(out.audio, expected.audio, rtol=0, atol=1e-6)
    assert not torch.allclose(out.audio, drafted("a song", **kw).audio)

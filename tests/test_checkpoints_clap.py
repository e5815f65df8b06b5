"""The CLAP model folder (longplay.checkpoints.clap): round trip, strict config and
weights, the text tower as the DiT's conditioner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from longplay.checkpoints import clap_text_encoder_for_conditioning, load_clap, save_clap
from test_clap import CAPTIONS, SAMPLE_RATE, noise, tiny_clap


@pytest.mark.parametrize("train_text", [False, True])
def test_save_load_round_trip(tiny_bert: Path, tmp_path: Path, train_text: bool) -> None:
    model = tiny_clap(tiny_bert, seed=2, train_text=train_text, text_layer=-3)
    with torch.no_grad():
        model.logit_scale.fill_(3.0)  # a value no fresh model has
    folder = save_clap(model, tmp_path / "clap")
    assert (folder / "clap_config.json").is_file()
    assert (folder / "text_encoder" / "config.json").is_file()
    assert (folder / "text_encoder" / "tokenizer.json").is_file()
    stored = load_file(str(folder / "model.safetensors"))
    assert not any(k.startswith("text_model.") for k in stored)
    assert "logit_scale" in stored and "audio_proj.weight" in stored
    config = json.loads((folder / "clap_config.json").read_text())
    assert config["text_layer"] == -3 and config["sample_rate"] == SAMPLE_RATE
    assert config["audio_encoder"]["widths"] == [8, 16, 16, 16]

    rng_state = torch.random.get_rng_state()
    loaded = load_clap(folder, train_text=train_text)
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    assert not loaded.training and loaded.train_text == train_text
    model.eval()
    audio, tokens = noise(3), model.tokenize(CAPTIONS[:3])
    with torch.no_grad():
        expected, got = model(audio, tokens), loaded(audio, loaded.tokenize(CAPTIONS[:3]))
    assert torch.equal(got.audio_embeds, expected.audio_embeds)
    assert torch.equal(got.text_embeds, expected.text_embeds)
    assert torch.equal(got.logit_scale, expected.logit_scale)


@pytest.fixture
def saved_clap(tiny_bert: Path, tmp_path: Path) -> Path:
    return save_clap(tiny_clap(tiny_bert), tmp_path / "clap")


def test_load_rejects_an_unknown_config_field(saved_clap: Path) -> None:
    path = saved_clap / "clap_config.json"
    config = json.loads(path.read_text())
    config["dropout"] = 0.1
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"unknown field\(s\) in .*clap_config.json: dropout"):
        load_clap(saved_clap)
    del config["dropout"]
    config["audio_encoder"]["kernel_size"] = 5
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"audio_encoder.*kernel_size"):
        load_clap(saved_clap)
    del config["audio_encoder"]["kernel_size"], config["text_layer"]
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"missing field\(s\) in .*: text_layer"):
        load_clap(saved_clap)


def test_load_rejects_missing_and_unexpected_weights(saved_clap: Path) -> None:
    path = saved_clap / "model.safetensors"
    state = load_file(str(path))
    del state["audio_proj.bias"]
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"missing weight\(s\): audio_proj\.bias"):
        load_clap(saved_clap)
    state["audio_proj.bias"] = torch.zeros(24)
    state["temperature"] = torch.zeros(())
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"unexpected weight\(s\): temperature"):
        load_clap(saved_clap)
    del state["temperature"]
    state["text_proj.weight"] = torch.zeros(24, 16)
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"text_proj\.weight has shape \(24, 16\)"):
        load_clap(saved_clap)


def test_load_names_a_missing_folder_or_config(tmp_path: Path, saved_clap: Path) -> None:
    with pytest.raises(ValueError, match=r"CLAP model folder .*nowhere does not exist"):
        load_clap(tmp_path / "nowhere")
    (saved_clap / "clap_config.json").unlink()
    with pytest.raises(ValueError, match=r"clap_config\.json is missing"):
        load_clap(saved_clap)


def test_text_encoder_for_conditioning_gives_the_chosen_layer(tiny_bert: Path,
                                                               tmp_path: Path) -> None:
    model = tiny_clap(tiny_bert, text_layer=-3).eval()
    folder = save_clap(model, tmp_path / "clap")
    encoder = clap_text_encoder_for_conditioning(folder, 12)
    assert encoder.layer == -3 and encoder.max_length == 12 and encoder.output_dim == 32
    assert clap_text_encoder_for_conditioning(folder).max_length == 16  # the CLAP's own
    tokens = encoder.tokenize(["a calm piano", "fast drums and a loud bass line"])
    features = encoder.encode(tokens)
    with torch.no_grad():
        hidden = model.text_model(input_ids=tokens.input_ids,
                                  attention_mask=tokens.attention_mask,
                                  output_hidden_states=True).hidden_states[-3]
        embeds = model.embed_text(tokens)
    torch.testing.assert_close(features.tokens, hidden * tokens.attention_mask[..., None])
    # The conditioning features are exactly what the CLAP's text embedding pools.
    mask = features.mask[..., None].float()
    pooled = features.tokens.sum(1) / mask.sum(1)
    with torch.no_grad():
        torch.testing.assert_close(
            torch.nn.functional.normalize(model.text_proj(pooled), dim=-1), embeds)

"""Text encoders other than T5: any Hugging Face encoder, hidden states of a chosen layer,
an optional learned projection, and clear errors for missing weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from longplay.conditioning import Conditioner, HFTextEncoder, TextEncoderError, clap_text_encoder


def test_hidden_states_of_a_chosen_layer(tiny_bert: Path) -> None:
    last = HFTextEncoder(tiny_bert, max_length=16, layer=-1)
    penultimate = clap_text_encoder(tiny_bert, max_length=16)  # layer -2 by default
    tokens = last.tokenize(["a calm piano", "fast drums and a loud bass line"])
    assert tokens.input_ids.shape == (2, 16)
    a, b = last.encode(tokens), penultimate.encode(tokens)
    assert a.tokens.shape == b.tokens.shape == (2, 16, 32)
    assert not torch.allclose(a.tokens, b.tokens)
    out = last.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                     output_hidden_states=True)
    mask = tokens.attention_mask[..., None]
    assert torch.allclose(b.tokens, out.hidden_states[-2] * mask)
    assert (a.tokens[~tokens.attention_mask] == 0).all()  # padding zeroed


def test_projection_to_the_conditioning_width(tiny_bert: Path) -> None:
    encoder = HFTextEncoder(tiny_bert, max_length=8, layer=-2)
    conditioner = Conditioner(cond_dim=24, text_dim=encoder.output_dim, text_projection=True,
                              timing={"seconds_total": (0, 256)},
                              cross_attention_ids=("text", "seconds_total"),
                              global_ids=("seconds_total",))
    with torch.inference_mode():
        cond = conditioner(encoder.encode(encoder.tokenize(["x", "y z"])),
                           {"seconds_total": torch.tensor([3.0, 9.0])})
    assert cond.cross_attn.shape == (2, 9, 24) and cond.global_cond.shape == (2, 24)
    # The projection's bias does not leak into padding positions.
    assert (cond.cross_attn[:, :8][~cond.cross_attn_mask[:, :8]] == 0).all()


def test_width_mismatch_without_projection_is_refused() -> None:
    with pytest.raises(ValueError, match="need a projection"):
        Conditioner(cond_dim=24, text_dim=32, text_projection=False, timing={},
                    cross_attention_ids=("text",), global_ids=())


def test_missing_weights_name_the_path_and_the_option(tmp_path: Path) -> None:
    with pytest.raises(TextEncoderError, match=r"--text-encoder PATH") as err:
        HFTextEncoder(tmp_path / "clap", max_length=77)
    assert str(tmp_path / "clap") in str(err.value)


def test_conditioner_rejects_unknown_and_missing_timing() -> None:
    conditioner = Conditioner(cond_dim=8, text_dim=None, text_projection=False,
                              timing={"seconds_start": (0, 512), "seconds_total": (0, 512)},
                              cross_attention_ids=("seconds_start", "seconds_total"),
                              global_ids=("seconds_start", "seconds_total"))
    with pytest.raises(ValueError, match="missing timing value"):
        conditioner(None, {"seconds_start": torch.zeros(1)})
    with pytest.raises(ValueError, match="no timing conditioner bpm"):
        conditioner(None, {"seconds_start": torch.zeros(1), "seconds_total": torch.ones(1),
                           "bpm": torch.ones(1)})
    with pytest.raises(ValueError, match="has no conditioner"):
        Conditioner(cond_dim=8, text_dim=None, text_projection=False, timing={},
                    cross_attention_ids=("text",), global_ids=())

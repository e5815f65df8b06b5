"""The CLAP model of stage 2: audio and text towers, the contrastive loss, the frozen or
trained text tower, and the CLAP model folder (round trip, strict loading, the text
tower as the DiT's conditioner)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from longplay.conditioning import (
    CLAPAudioEncoder,
    CLAPModel,
    CLAPOutput,
    HFTextEncoder,
    clap_contrastive_loss,
)

SAMPLE_RATE = 16000
NUM_SAMPLES = 8192  # 17 STFT frames: enough for 4 halving blocks
CAPTIONS = ["a low hum", "a warm middle tone", "a bright high whistle", "a piercing beep"]


def tiny_audio_encoder() -> CLAPAudioEncoder:
    return CLAPAudioEncoder(sample_rate=SAMPLE_RATE, widths=(8, 16, 16, 16), norm_groups=4,
                            embed_dim=20)


def tiny_clap(text_folder: Path, *, seed: int = 0, train_text: bool = False,
              text_layer: int = -2) -> CLAPModel:
    text = HFTextEncoder(text_folder, max_length=16)
    torch.manual_seed(seed)
    return CLAPModel(tiny_audio_encoder(), text.model, text.tokenizer, embed_dim=24,
                     text_layer=text_layer, max_length=16, train_text=train_text)


def sines(frequencies: list[float], channels: int = 2) -> torch.Tensor:
    """One sine per frequency, [B, channels, NUM_SAMPLES]."""
    t = torch.arange(NUM_SAMPLES) / SAMPLE_RATE
    waves = torch.stack([0.5 * torch.sin(2 * math.pi * f * t) for f in frequencies])
    return waves[:, None].repeat(1, channels, 1)


def noise(batch: int, seed: int = 1) -> torch.Tensor:
    return 0.1 * torch.randn(batch, 2, NUM_SAMPLES, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_unit_norms(tiny_bert: Path) -> None:
    model = tiny_clap(tiny_bert).eval()
    audio = noise(3)
    with torch.no_grad():
        out = model(audio, model.tokenize(CAPTIONS[:3]))
        features = model.audio_encoder(audio)
    assert model.audio_encoder.log_mel(audio).shape == (3, 64, NUM_SAMPLES // 512 + 1)
    assert features.shape == (3, 20)
    assert out.audio_embeds.shape == out.text_embeds.shape == (3, 24)
    ones = torch.ones(3)
    torch.testing.assert_close(out.audio_embeds.norm(dim=-1), ones)
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), ones)
    torch.testing.assert_close(out.logit_scale, torch.tensor(1 / 0.07))
    assert out.logits_per_audio.shape == (3, 3)


def test_audio_is_mixed_to_mono(tiny_bert: Path) -> None:
    model = tiny_clap(tiny_bert).eval()
    left, right = noise(2, seed=3), noise(2, seed=4)
    stereo = torch.cat([left[:, :1], right[:, :1]], dim=1)
    mono = 0.5 * (left[:, :1] + right[:, :1])
    with torch.no_grad():
        torch.testing.assert_close(model.embed_audio(stereo), model.embed_audio(mono))


def test_embeddings_are_deterministic_and_independent_of_the_batch(tiny_bert: Path) -> None:
    a, b = tiny_clap(tiny_bert, seed=5).eval(), tiny_clap(tiny_bert, seed=5).eval()
    audio, tokens = noise(4), a.tokenize(CAPTIONS)
    with torch.no_grad():
        first, again, other = a(audio, tokens), a(audio, tokens), b(audio, tokens)
        alone = a.embed_audio(audio[2:3])
    assert torch.equal(first.audio_embeds, again.audio_embeds)
    assert torch.equal(first.text_embeds, again.text_embeds)
    assert torch.equal(first.audio_embeds, other.audio_embeds)
    assert torch.equal(first.text_embeds, other.text_embeds)
    # GroupNorm, not BatchNorm: an embedding does not depend on the rest of the batch.
    torch.testing.assert_close(alone, first.audio_embeds[2:3])


def test_text_embedding_is_the_masked_mean_of_the_chosen_layer(tiny_bert: Path) -> None:
    model = tiny_clap(tiny_bert, text_layer=-3).eval()
    tokens = model.tokenize(["one", "two words and more words"])
    with torch.no_grad():
        hidden = model.text_model(input_ids=tokens.input_ids,
                                  attention_mask=tokens.attention_mask,
                                  output_hidden_states=True).hidden_states[-3]
        mask = tokens.attention_mask[..., None].float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        expected = torch.nn.functional.normalize(model.text_proj(pooled), dim=-1)
        torch.testing.assert_close(model.embed_text(tokens), expected)


def test_logit_scale_is_capped_at_100(tiny_bert: Path) -> None:
    model = tiny_clap(tiny_bert)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
        out = model(noise(2), model.tokenize(CAPTIONS[:2]))
    torch.testing.assert_close(out.logit_scale, torch.tensor(100.0))


def test_contrastive_loss_follows_its_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(5, 8, generator=gen), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(5, 8, generator=gen), dim=-1)
    out = CLAPOutput(audio.double(), text.double(), torch.tensor(7.0, dtype=torch.float64))
    z = 7.0 * audio.double() @ text.double().T
    rows = -torch.diagonal(z.log_softmax(dim=1)).mean()  # audio -> text
    cols = -torch.diagonal(z.log_softmax(dim=0)).mean()  # text -> audio
    torch.testing.assert_close(clap_contrastive_loss(out), (rows + cols) / 2)
    # Perfectly matched pairs at a large scale cost nearly nothing; swapped ones a lot.
    eye = torch.eye(4)
    scale = torch.tensor(100.0)
    assert clap_contrastive_loss(CLAPOutput(eye, eye, scale)) < 1e-6
    assert clap_contrastive_loss(CLAPOutput(eye, eye.flip(0), scale)) > 50
    with pytest.raises(ValueError, match="pairs"):
        clap_contrastive_loss(CLAPOutput(eye, eye[:3], scale))


def test_training_pulls_matching_pairs_together(tiny_bert: Path) -> None:
    model = tiny_clap(tiny_bert, seed=1)
    text_before = {k: v.clone() for k, v in model.text_model.state_dict().items()}
    audio, tokens = sines([110.0, 440.0, 1760.0, 5000.0]), model.tokenize(CAPTIONS)
    initial = clap_contrastive_loss(model(audio, tokens)).item()
    assert abs(initial - math.log(4)) < 0.3  # unrelated embeddings: about log(B)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = clap_contrastive_loss(model(audio, tokens))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(audio, tokens)
    assert clap_contrastive_loss(out).item() < 0.5 * initial
    similarity = out.audio_embeds @ out.text_embeds.T  # [4, 4]
    off_diagonal = similarity.masked_fill(torch.eye(4, dtype=torch.bool), -2.0)
    assert (similarity.diagonal() > off_diagonal.amax(dim=1)).all()
    assert (similarity.diagonal() > off_diagonal.amax(dim=0)).all()
    for name, tensor in model.text_model.state_dict().items():  # the frozen tower
        assert torch.equal(tensor, text_before[name]), name


def test_frozen_text_tower_is_outside_the_state_dict_and_gets_no_gradient(
        tiny_bert: Path) -> None:
    model = tiny_clap(tiny_bert)
    assert not any(k.startswith("text_model.") for k in model.state_dict())
    text_params = list(model.text_model.parameters())
    own = {id(p) for p in model.parameters()}
    assert text_params and not any(id(p) in own for p in text_params)
    model.train()
    assert not model.text_model.training  # stays in eval mode (no dropout)
    clap_contrastive_loss(model(noise(2), model.tokenize(CAPTIONS[:2]))).backward()
    assert all(p.grad is None and not p.requires_grad for p in text_params)
    assert model.text_proj.weight.grad is not None
    assert model.audio_encoder.blocks[0].conv.weight.grad is not None


def test_moving_the_model_moves_the_frozen_text_tower(tiny_bert: Path) -> None:
    model = tiny_clap(tiny_bert).eval()
    audio, tokens = noise(2), model.tokenize(CAPTIONS[:2])
    with torch.no_grad():
        expected = model(audio, tokens)
        model.to(torch.float64)
        assert all(p.dtype == torch.float64 for p in model.text_model.parameters())
        got = model(audio.double(), tokens)
    assert got.text_embeds.dtype == torch.float64
    torch.testing.assert_close(got.text_embeds.float(), expected.text_embeds)
    torch.testing.assert_close(got.audio_embeds.float(), expected.audio_embeds)


def test_train_text_makes_the_text_tower_a_submodule(tiny_bert: Path) -> None:
    model = tiny_clap(tiny_bert, train_text=True)
    keys = model.state_dict().keys()
    assert any(k.startswith("text_model.") for k in keys)
    assert any(k.startswith("audio_encoder.") for k in keys)
    clap_contrastive_loss(model(noise(2), model.tokenize(CAPTIONS[:2]))).backward()
    grads = [p.grad for p in model.text_model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_invalid_arguments_are_refused(tiny_bert: Path) -> None:
    encoder = tiny_audio_encoder()
    with pytest.raises(ValueError, match=f"at least {encoder.min_num_samples} samples"):
        encoder(torch.zeros(1, 2, 4096))
    with pytest.raises(ValueError, match=r"\[B, C, S\]"):
        encoder(torch.zeros(2, 8192))
    with pytest.raises(ValueError, match="multiple of norm_groups"):
        CLAPAudioEncoder(widths=(8, 12), norm_groups=8)
    with pytest.raises(ValueError, match="n_mels >= 16"):
        CLAPAudioEncoder(n_mels=8, widths=(8, 8, 8, 8))
    with pytest.raises(ValueError, match="text_layer=-5"):
        tiny_clap(tiny_bert, text_layer=-5)
    model = tiny_clap(tiny_bert)
    with pytest.raises(ValueError, match="3 audio clips but 2 captions"):
        model(noise(3), model.tokenize(CAPTIONS[:2]))
